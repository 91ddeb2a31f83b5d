package pgstore

// MaxBatchCalls, MaxBatchBytes, LanesPerKind and PruneBatchSize let the
// tests build batches at the bounds.
const (
	MaxBatchCalls  = maxBatchCalls
	MaxBatchBytes  = maxBatchBytes
	LanesPerKind   = lanesPerKind
	PruneBatchSize = pruneBatchSize
)

// Queued returns how many calls of every kind wait for a batch.
func (s *Storage) Queued() int {
	n := 0
	for _, b := range []*batcher{s.gets, s.sets, s.deletes, s.touches} {
		b.mu.Lock()
		n += len(b.queue)
		b.mu.Unlock()
	}
	return n
}

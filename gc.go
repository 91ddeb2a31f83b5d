package pgstore

import (
	"context"
	"time"
)

// pruneBatchSize bounds the rows one prune statement deletes, so that no
// statement holds locks on a large part of the table.
const pruneBatchSize = 1000

// Prune deletes the expired keys now and returns how many it deleted. It
// deletes in batches of bounded size and stops early, returning what it had
// deleted and the error, when ctx is done or the store is closed. The next
// automatic prune comes one delay after Prune returns. Prunes of one store
// never overlap: a call waits for the one in flight.
func (s *Storage) Prune(ctx context.Context) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, s.wrap("prune", err)
	}
	defer s.ops.Done()

	n, err := s.prune(ctx)
	s.pruner.restart()
	if err != nil {
		return n, s.wrap("prune", err)
	}
	return n, nil
}

// prune deletes expired rows batch by batch until a batch comes back short.
// Close cancels it.
func (s *Storage) prune(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	select {
	case s.pruning <- struct{}{}:
		defer func() { <-s.pruning }()
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}

	var total int64
	for {
		tag, err := s.pool.Exec(ctx, s.sql.prune, pruneBatchSize)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatchSize {
			return total, nil
		}
	}
}

// pruner runs the automatic prunes: the first one delay after Open, each
// next one delay after the previous prune, automatic or manual, ended.
type pruner struct {
	store    *Storage
	interval time.Duration
	delay    func(time.Duration) time.Duration

	restarts chan struct{} // a manual prune ended: wait a full delay again
	quit     chan struct{}
	done     chan struct{}
}

// newPruner starts the pruner's goroutine, or returns a pruner that does
// nothing when cfg.DisablePrune is set.
func newPruner(s *Storage, cfg Config) *pruner {
	p := &pruner{
		store:    s,
		interval: cfg.PruneInterval,
		delay:    cfg.PruneDelay,
		restarts: make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.DisablePrune {
		close(p.done)
		return p
	}
	go p.run()
	return p
}

func (p *pruner) run() {
	defer close(p.done)

	timer := time.NewTimer(p.next())
	defer timer.Stop()

	for {
		select {
		case <-p.quit:
			return
		case <-p.restarts:
			timer.Reset(p.next())
		case <-timer.C:
			p.pruneOnce()
			timer.Reset(p.next())
		}
	}
}

// pruneOnce runs one automatic prune and logs its failure, unless the
// failure is Close cancelling it.
func (p *pruner) pruneOnce() {
	s := p.store
	start := time.Now()
	n, err := s.prune(s.closing)
	if err != nil && s.closing.Err() == nil {
		s.logger.Error("pgstore: prune failed",
			"table", s.table, "deleted", n, "elapsed", time.Since(start), "error", err)
	}
}

// next returns the wait before the next automatic prune.
func (p *pruner) next() time.Duration {
	if d := p.delay(p.interval); d > 0 {
		return d
	}
	return p.interval
}

// restart makes the pruner wait a full delay from now.
func (p *pruner) restart() {
	select {
	case p.restarts <- struct{}{}:
	default:
	}
}

// stop ends the pruner's goroutine and waits for it.
func (p *pruner) stop() {
	select {
	case <-p.done:
	default:
		close(p.quit)
		<-p.done
	}
}

package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pruneBatchSize bounds the rows one prune statement deletes, so that no
// statement holds locks on a large part of the table.
const pruneBatchSize = 500

// A prune rests pruneRestFactor times as long as its last batch took, and
// at least pruneMinRest, before the next batch: a million expired rows
// take a minute or two to prune, and Get latency stays near its usual.
const (
	pruneRestFactor = 4
	pruneMinRest    = 40 * time.Millisecond
)

// Prune deletes the expired keys now and returns how many it deleted. It
// deletes in batches of bounded size and stops early, returning what it had
// deleted and the error, when ctx is done or the store is closed. Prunes of
// one table never overlap, within a process or across processes: Prune
// waits for one in flight. The next automatic prune comes one delay after
// Prune returns.
func (s *Storage) Prune(ctx context.Context) (int64, error) {
	if err := s.begin(ctx); err != nil {
		return 0, s.wrap("prune", err)
	}
	defer s.ops.Done()

	n, err := s.prune(ctx, true)
	s.pruner.restart()
	if err != nil {
		return n, s.wrap("prune", err)
	}
	return n, nil
}

// prune deletes expired rows batch by batch until a batch comes back short.
// It holds the table's prune lock, a session advisory lock, for the whole
// prune, so that the processes sharing a table prune one at a time; when
// wait is false and another process holds the lock, it prunes nothing.
// Close cancels it.
func (s *Storage) prune(ctx context.Context, wait bool) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	select {
	case s.pruning <- struct{}{}:
		defer func() { <-s.pruning }()
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()

	lock := `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`
	if wait {
		lock = `SELECT true FROM pg_advisory_lock(hashtextextended($1, 0))`
	}
	var locked bool
	if err := conn.QueryRow(ctx, lock, s.pruneLock).Scan(&locked); err != nil || !locked {
		return 0, err
	}
	defer s.unlockPrune(conn)

	var (
		total, deleted int64
		from           = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	)
	for {
		start := time.Now()
		err := conn.QueryRow(ctx, s.sql.prune, pruneBatchSize, from).Scan(&deleted, &from)
		if err != nil {
			return total, err
		}
		total += deleted
		if deleted < pruneBatchSize {
			return total, nil
		}

		// Rest between batches, so that a long prune leaves the server's
		// time and its buffer cache to the operations around it: every
		// batch dirties pages that the background writer must write out
		// before their buffers serve other reads.
		pause := time.NewTimer(max(pruneRestFactor*time.Since(start), pruneMinRest))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return total, context.Cause(ctx)
		}
	}
}

// unlockPrune releases the prune lock that conn holds. When that fails, it
// closes the connection, which releases the lock with the session.
func (s *Storage) unlockPrune(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, s.pruneLock)
	if err != nil {
		_ = conn.Hijack().Close(ctx)
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
	n, err := s.prune(s.closing, false)
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

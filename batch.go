package pgstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit. Each kind of operation (get, set, delete, touch) has a
// batcher with a few lanes. An operation that finds a lane free takes it and
// runs its own statement at once, so a lightly loaded store adds no latency.
// One that finds every lane busy joins the kind's queue; when a lane's
// statement ends, the lane takes the whole queue, up to a bound, into one
// statement. Under load a Set thus pays one round trip and one WAL flush
// shared with the Sets that queued with it.

const (
	// lanesPerKind is how many statements of one kind may be in flight.
	// Two keep a store with two callers as fast as without batching. One
	// lane measured slower for Gets at 8 callers and for Sets at 32; three
	// slower for both at 32, their batches being smaller while a statement
	// costs far more than a call in it.
	lanesPerKind = 2

	// maxBatchCalls bounds the operations in one statement.
	maxBatchCalls = 256

	// maxBatchBytes bounds the bytes of keys and values in one statement;
	// a larger call still goes, alone.
	maxBatchBytes = 1 << 20
)

// call states: a queued call may still be abandoned by its caller; a taken
// one belongs to a statement.
const (
	callQueued int32 = iota
	callTaken
	callAbandoned
)

// call is one operation: its arguments, its outcome, and its place in a
// batcher's queue when it has to wait for a batch.
type call struct {
	name string            // the key as the caller gave it
	key  []byte            // the same bytes, as pgx sends bytea
	hash [sha256.Size]byte // of key, as key_hash holds it
	sum  []byte            // hash[:]

	// argv holds the arguments of a single statement: the hash first,
	// boxed once for the life of the call, since sum always points into
	// the same call.
	argv  [4]any
	value []byte // set only
	exp   int64  // set and touch only

	result []byte // get only
	err    error

	// replacedBy is the later call to the same key that replaced this
	// one in its batch, if any.
	replacedBy *call

	state atomic.Int32
	done  chan struct{} // receives one token once result and err are set, or lead is

	canLead bool    // its caller's context cannot end
	lead    []*call // a batch, c's among them, for c's caller to run
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// batcher groups the operations of one kind.
type batcher struct {
	store *Storage
	// single runs one call in a statement of its own, with the caller's
	// context; many runs calls, taken in arrival order, in one statement.
	single func(ctx context.Context, c *call) error
	many   func(ctx context.Context, calls []*call) error

	maxLanes int // statements of this kind that may be in flight

	mu    sync.Mutex
	lanes int // statements in flight, or about to be
	queue []*call
}

// do runs c, alone or in a batch, and returns its error; the result of a get
// is left in c.result. When ctx ends while c waits in the queue, do returns
// at once with the context's error, and c is never run.
func (b *batcher) do(ctx context.Context, c *call) error {
	b.mu.Lock()
	if b.lanes < b.maxLanes {
		b.lanes++
		b.mu.Unlock()

		err := b.store.withConn(ctx, func() error { return b.single(ctx, c) })
		b.release(1)
		return err
	}
	c.state.Store(callQueued)
	c.canLead = ctx.Done() == nil
	b.queue = append(b.queue, c)
	b.mu.Unlock()

	select {
	case <-c.done:
		if c.lead != nil {
			b.run(c.lead, c)
			n := len(c.lead)
			c.lead = nil
			b.release(n)
		}
		return c.err
	case <-ctx.Done():
		// Abandoned while queued, c is never run, and leaves the queue
		// now rather than when a lane reaches it. A call that can lead has
		// a context that never ends, so it never comes here.
		if c.state.CompareAndSwap(callQueued, callAbandoned) {
			b.mu.Lock()
			if i := slices.Index(b.queue, c); i >= 0 {
				b.queue = slices.Delete(b.queue, i, i+1)
			}
			b.mu.Unlock()
			return ctx.Err()
		}
		// Taken already, c's statement is in flight and may still apply.
		// Returning now would let it apply after the caller's next call,
		// undoing that call; so c waits for its statement and reports what
		// it did.
		<-c.done
		return c.err
	}
}

// release hands a lane whose statement of ran calls ended to the next
// batch, or frees it. The batch runs on the goroutine of one of its callers
// whose context cannot end, which then waits for nothing else; when it has
// no such caller, on a goroutine of its own.
func (b *batcher) release(ran int) {
	// The callers of a batch were just told their outcome, and under load
	// many come straight back with their next call. Letting them run first
	// puts them in this lane's next batch, instead of the next batch leaving
	// with a few and the rest waiting a whole statement for a lane: at 32
	// callers, batches grow by a third and each Set costs a sixth less.
	if ran > 1 {
		runtime.Gosched()
	}
	b.mu.Lock()
	batch := b.take()
	if len(batch) == 0 {
		b.lanes--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()

	for _, c := range batch {
		if c.canLead {
			c.lead = batch
			c.done <- struct{}{}
			return
		}
	}

	// The caller releasing the lane is an operation in flight, so the
	// count cannot be zero here and Close is still waiting.
	b.store.ops.Add(1)
	go func() {
		defer b.store.ops.Done()
		b.run(batch, nil)
		b.release(len(batch))
	}()
}

// take removes from the queue the calls of the next batch, skipping those
// their callers abandoned. b.mu must be held.
func (b *batcher) take() []*call {
	if len(b.queue) == 0 {
		return nil
	}
	batch := make([]*call, 0, min(len(b.queue), maxBatchCalls))
	bytes := 0
	n := 0
	for n < len(b.queue) && len(batch) < maxBatchCalls {
		c := b.queue[n]
		size := len(c.key) + len(c.value)
		if len(batch) > 0 && bytes+size > maxBatchBytes {
			break
		}
		n++
		if !c.state.CompareAndSwap(callQueued, callTaken) {
			continue
		}
		batch = append(batch, c)
		bytes += size
	}
	// What is left moves to the front, so that the queue keeps its array.
	left := copy(b.queue, b.queue[n:])
	clear(b.queue[left:])
	b.queue = b.queue[:left]
	return batch
}

// run executes one batch and tells every caller but leader its outcome. A
// batch of one runs as a single statement.
//
// When the batch statement fails for a reason that may be one call's, each
// call runs again alone, in arrival order, so that every caller gets its own
// error and one bad call does not fail the others. When it applied all but
// some calls (errBatchIncomplete), only the last call to each key runs
// again, and a call that a later one to its key replaced shares that one's
// outcome, so that no key goes back to an older value. When it failed for a
// reason that is the whole statement's (a timeout, a lost connection), every
// call gets that error at once: running them one by one would only fail
// them one by one, each after its own timeout.
func (b *batcher) run(batch []*call, leader *call) {
	ctx := context.Background()
	single := func(c *call) error {
		return b.store.withConn(ctx, func() error { return b.single(ctx, c) })
	}
	if len(batch) == 1 {
		batch[0].err = single(batch[0])
	} else if err := b.store.withConn(ctx, func() error { return b.many(ctx, batch) }); err != nil {
		switch {
		case errors.Is(err, errBatchIncomplete):
			for _, c := range batch {
				if c.replacedBy == nil {
					c.err = single(c)
				}
			}
			for _, c := range batch {
				if c.replacedBy != nil {
					c.err = c.replacedBy.err
				}
			}
		case statementWide(err):
			for _, c := range batch {
				c.err = err
			}
		default:
			for _, c := range batch {
				c.err = single(c)
			}
		}
	}
	for _, c := range batch {
		if c != leader {
			c.done <- struct{}{}
		}
	}
}

// statementWide reports whether err failed a batch statement as a whole,
// so that no call of it would fare better alone: a statement or lock
// timeout, a cancelled statement, a connection lost or refused, a server
// shutting down or out of resources, or an error that is not the server's.
func statementWide(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	for _, class := range []string{"08", "53", "57"} {
		if strings.HasPrefix(pgErr.Code, class) {
			return true
		}
	}
	return pgErr.Code == "55P03"
}

// withConn runs f while holding one of the connections the store may use
// for its statements, so that a shared pool keeps some for its owner.
func (s *Storage) withConn(ctx context.Context, f func() error) error {
	if s.conns == nil {
		return f()
	}
	select {
	case s.conns <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.conns }()
	return f()
}

// newCall returns a call from the pool for key.
func newCall(key string, value []byte, exp int64) *call {
	c := callPool.Get().(*call)
	// The key's bytes are shared with the string, not copied: pgx only
	// reads a []byte argument, to copy it into its message, and nothing
	// here writes to c.key.
	c.key = unsafe.Slice(unsafe.StringData(key), len(key))
	c.name = key
	c.hash = sha256.Sum256(c.key)
	c.sum = c.hash[:]
	c.value, c.exp = value, exp
	return c
}

// args returns the arguments of a single statement that finds c's key:
// its hash, then rest.
func (c *call) args(rest ...any) []any {
	if c.argv[0] == nil {
		c.argv[0] = c.sum
	}
	n := copy(c.argv[1:], rest)
	return c.argv[:1+n]
}

// free returns c to the pool; no queue or statement holds it any more.
func (c *call) free() {
	*c = call{done: c.done, argv: [4]any{c.argv[0]}}
	callPool.Put(c)
}

// startBatchers makes the store's batchers. With batching disabled every
// call runs alone, on as many connections as the pool gives.
func (s *Storage) startBatchers(disabled bool) {
	lanes := lanesPerKind
	if disabled {
		lanes = math.MaxInt
	}

	// A pool the store made is all its own, and the pool itself bounds
	// the connections; on a caller's pool the store leaves a quarter of the
	// connections, at least one, to the caller.
	if !s.ownPool {
		limit := int(s.pool.Config().MaxConns)
		s.conns = make(chan struct{}, max(1, limit-max(1, limit/4)))
	}

	newBatcher := func(single func(context.Context, *call) error, many func(context.Context, []*call) error) *batcher {
		return &batcher{store: s, maxLanes: lanes, single: single, many: many}
	}
	s.gets = newBatcher(s.getOne, s.getMany)
	s.sets = newBatcher(s.setOne, s.setMany)
	s.deletes = newBatcher(s.deleteOne, s.deleteMany)
	s.touches = newBatcher(s.touchOne, s.touchMany)
}

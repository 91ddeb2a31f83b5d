package pgstore_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstore/pgstore"
)

func TestPruneDeletesExpiredRowsOnly(t *testing.T) {
	t.Parallel()
	table := uniqueName("prune")
	store := quietStore(t, pgstore.Config{TableName: table})

	insertExpired(t, "", table, 2500)
	if err := store.Set("live", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := store.Set("forever", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}

	n, err := store.Prune(testContext(t))
	if err != nil || n != 2500 {
		t.Fatalf("Prune = %d, %v; want 2500, nil", n, err)
	}
	if got := countRows(t, "", table); got != 2 {
		t.Fatalf("rows after Prune = %d, want the 2 live ones", got)
	}
	n, err = store.Prune(testContext(t))
	if err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0, nil", n, err)
	}
}

// pruneTracer counts the rows of a table before each prune statement, and
// once more when asked, so that the differences are what each deleted.
type pruneTracer struct {
	table  string
	mu     sync.Mutex
	counts []int64
}

func (p *pruneTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "SKIP LOCKED") {
		p.count()
	}
	return ctx
}

func (p *pruneTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (p *pruneTracer) count() {
	var n int64
	err := adminPool.QueryRow(context.Background(), "SELECT count(*) FROM "+tableName("", p.table)).Scan(&n)
	if err != nil {
		n = -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = append(p.counts, n)
}

func TestPruneDeletesInBoundedBatches(t *testing.T) {
	t.Parallel()
	table := uniqueName("batches")
	tracer := &pruneTracer{table: table}
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: tracedPoolConfig(t, tracer)})

	insertExpired(t, "", table, 4321)
	n, err := store.Prune(testContext(t))
	if err != nil || n != 4321 {
		t.Fatalf("Prune = %d, %v; want 4321, nil", n, err)
	}
	tracer.count()

	tracer.mu.Lock()
	defer tracer.mu.Unlock()
	counts := tracer.counts
	if want := 4321/pgstore.PruneBatchSize + 1; len(counts) < want+1 || counts[0] != 4321 || counts[len(counts)-1] != 0 {
		t.Fatalf("rows before each prune statement and after: %v; want 4321 first, 0 last, at least %d statements",
			counts, want)
	}
	for i := 1; i < len(counts); i++ {
		if deleted := counts[i-1] - counts[i]; deleted > pgstore.PruneBatchSize || deleted < 0 {
			t.Fatalf("one prune statement deleted %d rows (counts %v), want at most %d",
				deleted, counts, pgstore.PruneBatchSize)
		}
	}
}

func TestAutomaticPruneWaitsOneDelayThenRuns(t *testing.T) {
	t.Parallel()
	table := uniqueName("auto_prune")
	quietStore(t, pgstore.Config{TableName: table}) // creates the table
	insertExpired(t, "", table, 10)

	newStore(t, pgstore.Config{
		TableName:     table,
		PruneInterval: time.Second,
		PruneDelay:    pgstore.ExactDelay,
	})
	time.Sleep(300 * time.Millisecond)
	if n := countRows(t, "", table); n != 10 {
		t.Fatalf("rows 300ms after Open = %d, want 10: pruned before one delay had passed", n)
	}
	waitFor(t, 5*time.Second, "automatic prune", func() bool { return countRows(t, "", table) == 0 })
}

func TestDisablePruneLeavesExpiredRowsForPrune(t *testing.T) {
	t.Parallel()
	table := uniqueName("no_prune")
	store := newStore(t, pgstore.Config{
		TableName:     table,
		PruneInterval: 20 * time.Millisecond,
		PruneDelay:    pgstore.ExactDelay,
		DisablePrune:  true,
	})

	insertExpired(t, "", table, 10)
	time.Sleep(300 * time.Millisecond)
	if n := countRows(t, "", table); n != 10 {
		t.Fatalf("rows with DisablePrune = %d, want 10", n)
	}
	if n, err := store.Prune(testContext(t)); err != nil || n != 10 {
		t.Fatalf("Prune = %d, %v; want 10, nil", n, err)
	}
}

func TestManualPruneRestartsTheSchedule(t *testing.T) {
	t.Parallel()
	delays := make(chan time.Duration, 10)
	store := newStore(t, pgstore.Config{
		PruneInterval: time.Hour,
		PruneDelay: func(d time.Duration) time.Duration {
			delays <- d
			return d
		},
	})

	select {
	case d := <-delays:
		if d != time.Hour {
			t.Fatalf("first delay computed from %v, want PruneInterval 1h", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delay computed after Open")
	}

	if _, err := store.Prune(testContext(t)); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	select {
	case <-delays:
	case <-time.After(5 * time.Second):
		t.Fatal("Prune did not restart the automatic schedule")
	}
}

// recordingHandler is a slog.Handler that keeps the messages it receives.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

func (h *recordingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.records)
}

func TestFailingPruneIsLoggedAndScheduleGoesOn(t *testing.T) {
	t.Parallel()
	table := uniqueName("prune_fails")
	handler := &recordingHandler{}
	newStore(t, pgstore.Config{
		TableName:     table,
		PruneInterval: 30 * time.Millisecond,
		PruneDelay:    pgstore.ExactDelay,
		Logger:        slog.New(handler),
	})

	if _, err := adminPool.Exec(testContext(t), "DROP TABLE "+tableName("", table)); err != nil {
		t.Fatalf("drop table: %v", err)
	}
	waitFor(t, 5*time.Second, "two logged prune failures", func() bool { return handler.count() >= 2 })

	handler.mu.Lock()
	defer handler.mu.Unlock()
	r := handler.records[0]
	var attrs []string
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a.Key+"="+a.Value.String())
		return true
	})
	text := r.Message + " " + strings.Join(attrs, " ")
	if r.Level != slog.LevelError || !strings.Contains(text, table) || !strings.Contains(text, "does not exist") {
		t.Fatalf("logged %v %q, want an error naming the table and the cause", r.Level, text)
	}
}

func TestRandomDelayStaysWithinHalfAndOneAndAHalf(t *testing.T) {
	t.Parallel()
	const d = time.Minute
	low, high := time.Duration(1<<63-1), time.Duration(0)
	for range 10000 {
		got := pgstore.RandomDelay(d)
		if got < d/2 || got > d*3/2 {
			t.Fatalf("RandomDelay(%v) = %v, want within [%v, %v]", d, got, d/2, d*3/2)
		}
		low, high = min(low, got), max(high, got)
	}
	if low > d*6/10 || high < d*14/10 {
		t.Fatalf("10000 draws spanned only [%v, %v] of [%v, %v]", low, high, d/2, d*3/2)
	}
	if got := pgstore.ExactDelay(d); got != d {
		t.Fatalf("ExactDelay(%v) = %v", d, got)
	}
	for _, huge := range []time.Duration{1<<63 - 1, 1<<62 + 1} {
		if got := pgstore.RandomDelay(huge); got < huge/4 {
			t.Fatalf("RandomDelay(%v) = %v, want a delay as long as they come", huge, got)
		}
	}
}

func TestCloseCancelsAndWaitsForPruneInFlight(t *testing.T) {
	t.Parallel()
	table := uniqueName("close_prune")
	store, err := pgstore.Open(testContext(t), pgstore.Config{
		ConnString:           databaseURL,
		TableName:            table,
		CreateTableIfMissing: true,
		DisablePrune:         true,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dropTable(t, "", table)
	insertExpired(t, "", table, 10)

	// A lock on the table makes the prune wait inside the database.
	lockTable(t, table)

	pruned := make(chan error, 1)
	go func() {
		_, err := store.Prune(context.Background())
		pruned <- err
	}()
	waitFor(t, 5*time.Second, "the prune to wait on the lock", func() bool { return waitingOn(t, table) >= 1 })

	closed := make(chan error, 1)
	go func() { closed <- store.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a prune waited on a lock")
	}
	select {
	case err := <-pruned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Prune cut short by Close returned %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Close returned before the prune in flight had")
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPrunesOfOneTableTakeTurnsAcrossStores(t *testing.T) {
	t.Parallel()
	table := uniqueName("turns")
	first := quietStore(t, pgstore.Config{TableName: table})
	second := quietStore(t, pgstore.Config{TableName: table})
	insertExpired(t, "", table, 10)

	// The first store's prune takes the table's prune lock, then waits on
	// a table lock.
	unlock := lockTable(t, table)
	firstDone := make(chan error, 1)
	go func() {
		_, err := first.Prune(context.Background())
		firstDone <- err
	}()
	waitFor(t, 5*time.Second, "the first prune to wait on the table", func() bool { return waitingOn(t, table) == 1 })

	// The second store's Prune waits for the first instead of pruning
	// alongside it.
	ctx, cancel := context.WithTimeout(testContext(t), 500*time.Millisecond)
	defer cancel()
	secondDone := make(chan error, 1)
	go func() {
		_, err := second.Prune(ctx)
		secondDone <- err
	}()
	time.Sleep(250 * time.Millisecond)
	if n := waitingOn(t, table); n != 1 {
		t.Fatalf("%d prune statements wait on the table, want only the first store's", n)
	}
	if err := <-secondDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Prune while the first runs: %v; want it to wait until its deadline", err)
	}

	unlock()
	if err := <-firstDone; err != nil {
		t.Fatalf("first Prune: %v", err)
	}
	if n, err := second.Prune(testContext(t)); err != nil || n != 0 {
		t.Fatalf("second Prune after the first = %d, %v; want 0, nil", n, err)
	}
	if n := countRows(t, "", table); n != 0 {
		t.Fatalf("rows after the prunes = %d, want 0", n)
	}
}

func TestAutomaticPruneSkipsWhileAnotherStorePrunes(t *testing.T) {
	t.Parallel()
	table := uniqueName("skip")
	manual := quietStore(t, pgstore.Config{TableName: table})
	handler := &recordingHandler{}
	newStore(t, pgstore.Config{
		TableName:     table,
		PruneInterval: 20 * time.Millisecond,
		PruneDelay:    pgstore.ExactDelay,
		Logger:        slog.New(handler),
	})

	unlock := lockTable(t, table)
	manualDone := make(chan error, 1)
	go func() {
		_, err := manual.Prune(context.Background())
		manualDone <- err
	}()

	// Whichever prune came first holds the prune lock; from then on exactly
	// one prune statement waits on the table, however often the automatic
	// pruner wakes.
	waitFor(t, 5*time.Second, "a prune to wait on the table", func() bool { return waitingOn(t, table) >= 1 })
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		if n := waitingOn(t, table); n != 1 {
			t.Fatalf("%d prunes of one table wait on it at once, want 1", n)
		}
	}
	unlock()
	if err := <-manualDone; err != nil {
		t.Fatalf("manual Prune: %v", err)
	}
	if n := handler.count(); n != 0 {
		t.Fatalf("automatic prunes logged %d failures while skipping, want none", n)
	}
}

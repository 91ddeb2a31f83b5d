package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
)

// lockedTable holds an ACCESS EXCLUSIVE lock on a store's table, so that
// every statement on it waits in the database, and keeps the lanes of one
// kind of operation busy with statements that wait.
type lockedTable struct {
	t           *testing.T
	unlockTable func()
	occupied    sync.WaitGroup
	errs        chan error
}

// lockAndFillLanes locks table and runs pgstore.LanesPerKind calls of occupy,
// returning once they all wait on the lock.
func lockAndFillLanes(t *testing.T, table string, occupy func(i int) error) *lockedTable {
	t.Helper()
	l := &lockedTable{t: t, unlockTable: lockTable(t, table), errs: make(chan error, pgstore.LanesPerKind)}
	for i := range pgstore.LanesPerKind {
		l.occupied.Go(func() { l.errs <- occupy(i) })
	}
	waitFor(t, 5*time.Second, "the lanes to wait on the lock", func() bool {
		return waitingOn(t, table) >= pgstore.LanesPerKind
	})
	return l
}

// unlock releases the lock and waits for the calls that held the lanes.
func (l *lockedTable) unlock() {
	l.t.Helper()
	l.unlockTable()
	l.occupied.Wait()
	close(l.errs)
	for err := range l.errs {
		if err != nil {
			l.t.Fatalf("call holding a lane: %v", err)
		}
	}
}

// queue starts do in a goroutine and returns once the store has queued it.
func queue(t *testing.T, store *pgstore.Storage, do func() error) <-chan error {
	t.Helper()
	before := store.Queued()
	result := make(chan error, 1)
	go func() { result <- do() }()
	waitFor(t, 5*time.Second, "the call to queue", func() bool { return store.Queued() > before })
	return result
}

func TestBatchGivesEachCallerItsOwnError(t *testing.T) {
	t.Parallel()
	// A batch runs on the goroutine of a caller whose context cannot end,
	// or, when it has none, on a goroutine of its own: both must hold.
	cancellable, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for name, callerCtx := range map[string]context.Context{
		"led by a caller":      context.Background(),
		"on its own goroutine": cancellable,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testBatchGivesEachCallerItsOwnError(t, callerCtx)
		})
	}
}

func testBatchGivesEachCallerItsOwnError(t *testing.T, callerCtx context.Context) {
	ctx := testContext(t)
	table := uniqueName("own_error")
	store := quietStore(t, pgstore.Config{TableName: table})

	// A trigger refuses one value, as PostgreSQL refuses a value past its
	// limits, so that one call of the batch fails.
	fn := uniqueName("refuse_bad")
	_, err := adminPool.Exec(ctx, `CREATE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.value = 'bad' THEN RAISE EXCEPTION 'value refused by trigger'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON `+tableName("", table)+`
			FOR EACH ROW EXECUTE FUNCTION `+fn+`()`)
	if err != nil {
		t.Fatalf("create trigger: %v", err)
	}
	t.Cleanup(func() { _, _ = adminPool.Exec(context.Background(), "DROP FUNCTION "+fn+" CASCADE") })

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	results := map[string]<-chan error{}
	for _, key := range []string{"a", "bad", "c"} {
		results[key] = queue(t, store, func() error { return store.SetWithContext(callerCtx, key, []byte(key), 0) })
	}
	lanes.unlock()

	for key, want := range map[string]string{"a": "", "bad": "value refused by trigger", "c": ""} {
		err := <-results[key]
		switch {
		case want == "" && err != nil:
			t.Errorf("Set %q in a batch with a bad call: %v, want nil", key, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("Set %q: error %v, want one containing %q", key, err, want)
		}
	}
	for key, want := range map[string]string{"a": "a", "bad": "", "c": "c"} {
		got, err := store.Get(key)
		if err != nil || string(got) != want {
			t.Errorf("Get %q = %q, %v; want %q", key, got, err, want)
		}
	}
}

// queryExecModes are pgx's ways to run a statement; pgstore passes a batch's
// arrays differently depending on them (see args.go), so the batch tests run
// under each.
var queryExecModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeSimpleProtocol,
}

// forEachQueryExecMode runs test in a parallel subtest for every mode, with
// a pool config for the test database whose connections run in that mode,
// and checks that at least one batch statement of several calls succeeded
// in each: a batch statement that fails gets its calls run one by one, which
// would hide a mode that batches cannot run in.
func forEachQueryExecMode(t *testing.T, test func(t *testing.T, poolConfig *pgxpool.Config)) {
	for _, mode := range queryExecModes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			tracer := &batchTracer{}
			poolConfig := tracedPoolConfig(t, tracer)
			poolConfig.ConnConfig.DefaultQueryExecMode = mode
			test(t, poolConfig)
			if tracer.batched() == 0 {
				t.Errorf("no batch statement of several calls succeeded in mode %s", mode)
			}
		})
	}
}

func TestBatchLastSetToAKeyWins(t *testing.T) {
	t.Parallel()
	forEachQueryExecMode(t, testBatchLastSetToAKeyWins)
}

func testBatchLastSetToAKeyWins(t *testing.T, poolConfig *pgxpool.Config) {
	table := uniqueName("last_wins")
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: poolConfig})

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	var results []<-chan error
	for i := range 5 {
		value := fmt.Sprint("value-", i)
		results = append(results, queue(t, store, func() error { return store.Set("k", []byte(value), time.Hour) }))
		results = append(results, queue(t, store, func() error { return store.Set(value, []byte(value), 0) }))
	}
	lanes.unlock()

	for i, result := range results {
		if err := <-result; err != nil {
			t.Fatalf("queued Set %d: %v", i, err)
		}
	}
	if got, err := store.Get("k"); err != nil || string(got) != "value-4" {
		t.Fatalf("Get after a batch of Sets to one key = %q, %v; want the last, %q", got, err, "value-4")
	}
	for i := range 5 {
		key := fmt.Sprint("value-", i)
		if got, err := store.Get(key); err != nil || string(got) != key {
			t.Fatalf("Get %q = %q, %v; want %q", key, got, err, key)
		}
	}
}

func TestBatchedGetsDeletesAndTouchesGiveEachCallerItsResult(t *testing.T) {
	t.Parallel()
	forEachQueryExecMode(t, testBatchedGetsDeletesAndTouchesGiveEachCallerItsResult)
}

func testBatchedGetsDeletesAndTouchesGiveEachCallerItsResult(t *testing.T, poolConfig *pgxpool.Config) {
	table := uniqueName("batched_kinds")
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: poolConfig})
	for _, key := range []string{"a", "b", "c", "d"} {
		if err := store.Set(key, []byte("value of "+key), time.Minute); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}

	lanes := lockAndFillLanes(t, table, func(i int) error {
		_, err := store.Get("a")
		return err
	})
	got := map[string][]byte{}
	var mu sync.Mutex
	var results []<-chan error
	for _, key := range []string{"a", "missing", "b", "a", "c"} {
		results = append(results, queue(t, store, func() error {
			value, err := store.Get(key)
			mu.Lock()
			defer mu.Unlock()
			if prev, seen := got[key]; seen && string(prev) != string(value) {
				return fmt.Errorf("two Gets of %q in one batch read %q and %q", key, prev, value)
			}
			got[key] = value
			return err
		}))
	}
	lanes.unlock()
	for _, result := range results {
		if err := <-result; err != nil {
			t.Fatalf("queued Get: %v", err)
		}
	}
	for key, want := range map[string]string{"a": "value of a", "b": "value of b", "c": "value of c"} {
		if string(got[key]) != want {
			t.Errorf("batched Get %q = %q, want %q", key, got[key], want)
		}
	}
	if got["missing"] != nil {
		t.Errorf("batched Get of missing key = %q, want nil", got["missing"])
	}

	lanes = lockAndFillLanes(t, table, func(i int) error { return store.Delete("lane") })
	deleted := queue(t, store, func() error { return store.Delete("a") })
	deletedToo := queue(t, store, func() error { return store.Delete("b") })
	lanes.unlock()
	lanes = lockAndFillLanes(t, table, func(i int) error { return store.Touch("lane", time.Hour) })
	touched := queue(t, store, func() error { return store.Touch("c", 2*time.Hour) })
	touchedAgain := queue(t, store, func() error { return store.Touch("c", 3*time.Hour) })
	touchedToo := queue(t, store, func() error { return store.Touch("d", 0) })
	lanes.unlock()
	for _, result := range []<-chan error{deleted, deletedToo, touched, touchedAgain, touchedToo} {
		if err := <-result; err != nil {
			t.Fatalf("queued call: %v", err)
		}
	}

	for key, want := range map[string]string{"a": "", "b": "", "c": "value of c", "d": "value of d"} {
		if got, err := store.Get(key); err != nil || string(got) != want {
			t.Errorf("Get %q after batched Deletes = %q, %v; want %q", key, got, err, want)
		}
	}
	within(t, "last Touch of a batch", expiresAt(t, "", table, "c"), 3*time.Hour-time.Minute, 3*time.Hour)
	if got := expiresAt(t, "", table, "d"); got != nil {
		t.Errorf("Touch with exp 0 and no TTL: expires in %v, want never", *got)
	}
}

func TestQueuedCallerWhoseContextEndsReturnsAtOnceAndChangesNothing(t *testing.T) {
	t.Parallel()
	table := uniqueName("abandon")
	store := quietStore(t, pgstore.Config{TableName: table})

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	ctx, cancel := context.WithCancel(context.Background())
	result := queue(t, store, func() error { return store.SetWithContext(ctx, "abandoned", []byte("v"), 0) })
	kept := queue(t, store, func() error { return store.Set("kept", []byte("v"), 0) })

	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("queued Set after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("queued Set did not return within a second of its context's end")
	}
	// It leaves the queue with its caller, values and all, rather than
	// when a lane comes to it.
	if n := store.Queued(); n != 1 {
		t.Fatalf("%d calls queued after one of two left, want 1", n)
	}
	lanes.unlock()

	if err := <-kept; err != nil {
		t.Fatalf("Set queued with the abandoned one: %v", err)
	}
	if got, err := store.Get("abandoned"); err != nil || got != nil {
		t.Fatalf("Get of the abandoned Set's key = %q, %v; want nil: it must never run", got, err)
	}
}

func TestSetIsCommittedWhenItReturns(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := range 40 {
				key := fmt.Sprintf("g%d-%d", g, i)
				if err := store.Set(key, []byte(key), time.Minute); err != nil {
					errs <- err
					return
				}
				if got, err := store.Get(key); err != nil || string(got) != key {
					errs <- fmt.Errorf("Get %q right after Set = %q, %v", key, got, err)
					return
				}
				if err := store.Delete(key); err != nil {
					errs <- err
					return
				}
				if got, err := store.Get(key); err != nil || got != nil {
					errs <- fmt.Errorf("Get %q right after Delete = %q, %v; want nil", key, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// batchTracer records the number of keys of every batch statement that
// succeeds: a statement whose first argument is an array, a slice or, as
// pgstore passes them when pgx knows the parameters' types, an array pgx
// reads element by element. A batch statement that fails leaves its calls to
// run one by one, so it is not counted.
type batchTracer struct {
	mu    sync.Mutex
	sizes []int
}

type batchSizeKey struct{}

func (b *batchTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if len(data.Args) == 0 {
		return ctx
	}
	switch keys := data.Args[0].(type) {
	case [][]byte:
		return context.WithValue(ctx, batchSizeKey{}, len(keys))
	case pgtype.ArrayGetter:
		return context.WithValue(ctx, batchSizeKey{}, int(keys.Dimensions()[0].Length))
	}
	return ctx
}

func (b *batchTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if size, ok := ctx.Value(batchSizeKey{}).(int); ok && data.Err == nil {
		b.mu.Lock()
		b.sizes = append(b.sizes, size)
		b.mu.Unlock()
	}
}

// batched returns how many batch statements of more than one key succeeded.
func (b *batchTracer) batched() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, size := range b.sizes {
		if size > 1 {
			n++
		}
	}
	return n
}

func TestBatchesHaveASizeBound(t *testing.T) {
	t.Parallel()
	table := uniqueName("bound")
	tracer := &batchTracer{}
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: tracedPoolConfig(t, tracer)})

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	calls := pgstore.MaxBatchCalls + 50
	var results []<-chan error
	for i := range calls {
		key := fmt.Sprint("key-", i)
		results = append(results, queue(t, store, func() error { return store.Set(key, []byte("v"), 0) }))
	}
	lanes.unlock()
	for _, result := range results {
		if err := <-result; err != nil {
			t.Fatalf("queued Set: %v", err)
		}
	}

	tracer.mu.Lock()
	defer tracer.mu.Unlock()
	total := 0
	for _, size := range tracer.sizes {
		if size > pgstore.MaxBatchCalls {
			t.Fatalf("a batch statement carried %d keys, over the bound of %d", size, pgstore.MaxBatchCalls)
		}
		total += size
	}
	if len(tracer.sizes) < 2 || total != calls {
		t.Fatalf("batch statements carried %v keys, want %d in all, in at least 2 statements", tracer.sizes, calls)
	}
	if got := countRows(t, "", table); got != int64(calls+pgstore.LanesPerKind) {
		t.Fatalf("rows = %d, want %d", got, calls+pgstore.LanesPerKind)
	}
}

// The byte bound counts keys too: Gets of long keys carry no value, and
// would otherwise put any number of them in one statement.
func TestBatchBytesCountKeys(t *testing.T) {
	t.Parallel()
	table := uniqueName("bound_bytes")
	tracer := &batchTracer{}
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: tracedPoolConfig(t, tracer)})

	lanes := lockAndFillLanes(t, table, func(i int) error {
		_, err := store.Get(fmt.Sprint("lane-", i))
		return err
	})
	// Three keys fit in the bound, a fourth does not.
	const perBatch = 3
	keySize := pgstore.MaxBatchBytes/perBatch - 2
	var results []<-chan error
	for i := range 2 * perBatch {
		key := fmt.Sprint(i, strings.Repeat("k", keySize))
		results = append(results, queue(t, store, func() error {
			_, err := store.Get(key)
			return err
		}))
	}
	lanes.unlock()
	for _, result := range results {
		if err := <-result; err != nil {
			t.Fatalf("queued Get: %v", err)
		}
	}
	tracer.mu.Lock()
	sizes := slices.Clone(tracer.sizes)
	tracer.mu.Unlock()
	for _, size := range sizes {
		if size > perBatch {
			t.Fatalf("a batch statement carried %d keys of %d bytes, over %d bytes in all", size, keySize+1, pgstore.MaxBatchBytes)
		}
	}
	if tracer.batched() == 0 {
		t.Fatal("no batch statement of several keys ran")
	}
}

func TestStoreLeavesConnectionsOfASharedPool(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	poolConfig.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	defer pool.Close()
	store := quietStore(t, pgstore.Config{Pool: pool})

	stop := make(chan struct{})
	var load sync.WaitGroup
	for g := range 64 {
		load.Go(func() {
			key := fmt.Sprint("k", g%8)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = store.Set(key, []byte("v"), time.Minute)
				_, _ = store.Get(key)
				_ = store.Touch(key, time.Minute)
				_ = store.Delete(key)
			}
		})
	}

	maxHeld := int32(0)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		maxHeld = max(maxHeld, pool.Stat().AcquiredConns())
		time.Sleep(time.Millisecond)
	}
	for range 20 {
		queryCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var one int
		err := pool.QueryRow(queryCtx, "SELECT 1").Scan(&one)
		cancel()
		if err != nil {
			t.Fatalf("caller's own query on the shared pool under load: %v", err)
		}
	}
	close(stop)
	load.Wait()

	if maxHeld > 3 {
		t.Fatalf("store held %d of the pool's 4 connections, want at most 3", maxHeld)
	}
	if maxHeld == 0 {
		t.Fatal("saw no connection in use: the load did not run")
	}
}

func TestCloseDrainsQueuedCalls(t *testing.T) {
	t.Parallel()
	table := uniqueName("drain")
	store, err := pgstore.Open(testContext(t), pgstore.Config{
		ConnString: databaseURL, TableName: table, CreateTableIfMissing: true, DisablePrune: true,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dropTable(t, "", table)

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	var results []<-chan error
	for i := range 5 {
		key := fmt.Sprint("queued-", i)
		results = append(results, queue(t, store, func() error { return store.Set(key, []byte("v"), 0) }))
	}
	closed := make(chan error, 1)
	go func() { closed <- store.Close() }()
	time.Sleep(100 * time.Millisecond)
	lanes.unlock()

	for i, result := range results {
		if err := <-result; err != nil {
			t.Errorf("Set queued at Close %d: %v, want it drained", i, err)
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with calls queued")
	}
	if got := countRows(t, "", table); got != 5+pgstore.LanesPerKind {
		t.Fatalf("rows = %d, want %d", got, 5+pgstore.LanesPerKind)
	}
}

func TestDisableBatchingRunsEveryCallAlone(t *testing.T) {
	t.Parallel()
	table := uniqueName("no_batch")
	store := quietStore(t, pgstore.Config{TableName: table, DisableBatching: true})

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	extra := make(chan error, 1)
	go func() { extra <- store.Set("extra", []byte("v"), 0) }()
	waitFor(t, 5*time.Second, "a third statement of its own", func() bool {
		return waitingOn(t, table) == pgstore.LanesPerKind+1
	})
	if n := store.Queued(); n != 0 {
		t.Fatalf("%d calls queued with DisableBatching, want 0", n)
	}
	lanes.unlock()
	if err := <-extra; err != nil {
		t.Fatalf("Set: %v", err)
	}
}

// createTrigger runs body, the body of a PL/pgSQL function, before every
// insert and update of a row of table.
func createTrigger(t *testing.T, table, body string) {
	t.Helper()
	fn := uniqueName("trigger")
	_, err := adminPool.Exec(testContext(t), `CREATE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN `+body+` END $$;
		CREATE TRIGGER t BEFORE INSERT OR UPDATE ON `+tableName("", table)+`
			FOR EACH ROW EXECUTE FUNCTION `+fn+`()`)
	if err != nil {
		t.Fatalf("create trigger: %v", err)
	}
	t.Cleanup(func() { _, _ = adminPool.Exec(context.Background(), "DROP FUNCTION "+fn+" CASCADE") })
}

// A caller that gives up while its call is in a batch statement must not
// return before that statement ends: the statement could then apply after
// the caller's next call and undo it.
func TestCallInAStatementIsNotOvertakenByItsCallersNextCall(t *testing.T) {
	t.Parallel()
	table := uniqueName("overtake")
	store := quietStore(t, pgstore.Config{TableName: table})
	createTrigger(t, table, `IF NEW.value = 'slow' THEN PERFORM pg_sleep(0.5); END IF; RETURN NEW;`)

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	slow := queue(t, store, func() error { return store.Set("slow", []byte("slow"), 0) })
	old := queue(t, store, func() error { return store.SetWithContext(ctx, "k", []byte("old"), 0) })
	lanes.unlock()
	waitFor(t, 5*time.Second, "the batch to run", func() bool {
		var n int
		err := adminPool.QueryRow(testContext(t), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event = 'PgSleep'`).Scan(&n)
		return err == nil && n > 0
	})
	cancel()

	// The Set of "old" was in the statement when its context ended: it
	// reports what the statement did, and only once it has.
	if err := <-old; err != nil {
		t.Fatalf("Set cancelled inside a statement that then succeeded: %v, want nil", err)
	}
	if err := store.Set("k", []byte("new"), 0); err != nil {
		t.Fatalf("next Set: %v", err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("slow Set: %v", err)
	}
	if got, err := store.Get("k"); err != nil || string(got) != "new" {
		t.Fatalf("Get = %q, %v; want the later value, %q", got, err, "new")
	}
}

// A batch statement that fails for a reason of its own as a whole, here a
// statement timeout, fails each of its calls at once instead of running them
// again one by one, each until it times out too.
func TestBatchThatTimesOutIsNotRunAgainCallByCall(t *testing.T) {
	t.Parallel()
	table := uniqueName("timeout")
	tracer := &statementCounter{}
	poolConfig := tracedPoolConfig(t, tracer)
	poolConfig.ConnConfig.RuntimeParams["statement_timeout"] = "500"
	store := quietStore(t, pgstore.Config{TableName: table, PoolConfig: poolConfig})
	setUp := tracer.count()
	unlock := lockTable(t, table)
	defer unlock()

	var lanes []<-chan error
	for i := range pgstore.LanesPerKind {
		result := make(chan error, 1)
		go func() { result <- store.Set(fmt.Sprint("lane-", i), []byte("v"), 0) }()
		lanes = append(lanes, result)
	}
	waitFor(t, 5*time.Second, "the lanes to wait on the lock", func() bool {
		return waitingOn(t, table) >= pgstore.LanesPerKind
	})
	const queued = 10
	var results []<-chan error
	for i := range queued {
		results = append(results, queue(t, store, func() error { return store.Set(fmt.Sprint("key-", i), []byte("v"), 0) }))
	}
	for _, result := range append(lanes, results...) {
		var pgErr *pgconn.PgError
		if err := <-result; !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("Set on a locked table: %v, want a statement timeout (57014)", err)
		}
	}
	if n := tracer.count() - setUp; n != pgstore.LanesPerKind+1 {
		t.Fatalf("%d statements ran, want %d: one per lane, then one batch of %d", n, pgstore.LanesPerKind+1, queued)
	}
}

// statementCounter counts the statements that start.
type statementCounter struct {
	mu sync.Mutex
	n  int
}

func (s *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return ctx
}

func (s *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statementCounter) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// When a batch of Sets applies all but one call, here one whose key shares
// its hash with a planted row, the calls run again; a key the batch set
// twice must not go back to its first value on the way.
func TestBatchThatFallsShortDoesNotReplayReplacedSets(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	table := uniqueName("replay")
	store := quietStore(t, pgstore.Config{TableName: table})
	written := uniqueName("written")
	if _, err := adminPool.Exec(ctx, `CREATE TABLE `+written+` (n serial, value bytea);
		INSERT INTO `+tableName("", table)+` (key_hash, key, value)
		VALUES (sha256('intruder'), 'owner', 'owned')`); err != nil {
		t.Fatalf("set up: %v", err)
	}
	t.Cleanup(func() { _, _ = adminPool.Exec(context.Background(), "DROP TABLE "+written) })
	createTrigger(t, table, `IF NEW.key = 'k' THEN INSERT INTO `+written+` (value) VALUES (NEW.value); END IF; RETURN NEW;`)

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	first := queue(t, store, func() error { return store.Set("k", []byte("1"), 0) })
	second := queue(t, store, func() error { return store.Set("k", []byte("2"), 0) })
	intruder := queue(t, store, func() error { return store.Set("intruder", []byte("x"), 0) })
	lanes.unlock()
	for name, result := range map[string]<-chan error{"k=1": first, "k=2": second} {
		if err := <-result; err != nil {
			t.Fatalf("Set %s: %v", name, err)
		}
	}
	if err := <-intruder; err == nil {
		t.Fatal("Set of a key whose hash another key's row holds: nil error")
	}

	rows, err := adminPool.Query(ctx, `SELECT convert_from(value, 'UTF8') FROM `+written+` ORDER BY n`)
	if err != nil {
		t.Fatalf("read the writes: %v", err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read the writes: %v", err)
	}
	if len(values) == 0 || slices.Contains(values, "1") {
		t.Fatalf("values written to k: %v; want only the last, 2", values)
	}
	if got, err := store.Get("k"); err != nil || string(got) != "2" {
		t.Fatalf("Get k = %q, %v; want 2", got, err)
	}
}

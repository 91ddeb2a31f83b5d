package pgstore_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
)

func TestEveryOperationReturnsErrClosedAfterClose(t *testing.T) {
	t.Parallel()
	store := newStore(t, pgstore.Config{})
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	ctx := context.Background()
	_, getErr := store.Get("k")
	_, getCtxErr := store.GetWithContext(ctx, "k")
	_, pruneErr := store.Prune(ctx)
	errs := map[string]error{
		"Get":               getErr,
		"GetWithContext":    getCtxErr,
		"Set":               store.Set("k", []byte("v"), 0),
		"SetWithContext":    store.SetWithContext(ctx, "k", []byte("v"), 0),
		"Delete":            store.Delete("k"),
		"DeleteWithContext": store.DeleteWithContext(ctx, "k"),
		"Touch":             store.Touch("k", time.Hour),
		"TouchWithContext":  store.TouchWithContext(ctx, "k", time.Hour),
		"Reset":             store.Reset(),
		"ResetWithContext":  store.ResetWithContext(ctx),
		"Prune":             pruneErr,
		"Get of empty key":  func() error { _, err := store.Get(""); return err }(),
	}
	for op, err := range errs {
		if !errors.Is(err, pgstore.ErrClosed) {
			t.Errorf("%s after Close: error %v, want ErrClosed", op, err)
		}
	}
	if err := store.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseFromManyGoroutinesReturnsOnceShutDown(t *testing.T) {
	t.Parallel()
	table := uniqueName("many_close")
	store, err := pgstore.Open(testContext(t), pgstore.Config{
		ConnString:           databaseURL,
		TableName:            table,
		CreateTableIfMissing: true,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dropTable(t, "", table)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := store.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := store.Conn().Ping(context.Background()); err == nil {
				t.Error("Close returned before the store's own pool was closed")
			}
		})
	}
	wg.Wait()
}

func TestCloseWaitsForOperationsInFlight(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(testContext(t), databaseURL)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	defer pool.Close()
	table := uniqueName("close_waits")
	store := quietStore(t, pgstore.Config{Pool: pool, TableName: table})

	unlock := lockTable(t, table)

	set := make(chan error, 1)
	go func() { set <- store.Set("k", []byte("v"), 0) }()
	waitFor(t, 5*time.Second, "the Set to wait on the lock", func() bool { return waitingOn(t, table) >= 1 })

	closed := make(chan error, 1)
	go func() { closed <- store.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a Set was in flight")
	case <-time.After(300 * time.Millisecond):
	}

	unlock()
	if err := <-set; err != nil {
		t.Fatalf("Set in flight during Close: %v, want it to finish", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := countRows(t, "", table); n != 1 {
		t.Fatalf("rows = %d, want the 1 the Set in flight wrote", n)
	}
}

func TestCloseLeavesCallersPoolOpen(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(testContext(t), databaseURL)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	defer pool.Close()

	store := newStore(t, pgstore.Config{Pool: pool})
	if store.Conn() != pool {
		t.Fatal("Conn does not return the pool given in Config.Pool")
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := pool.Ping(testContext(t)); err != nil {
		t.Fatalf("caller's pool after Close: %v, want it open", err)
	}
}

func TestCloseStopsABlockedAutomaticPruneAndLeavesNoGoroutine(t *testing.T) {
	// Not parallel: it counts the goroutines of the whole test binary.
	table := uniqueName("close_auto")
	before := pgstoreGoroutines()

	store, err := pgstore.Open(testContext(t), pgstore.Config{
		ConnString:           databaseURL,
		TableName:            table,
		CreateTableIfMissing: true,
		PruneInterval:        20 * time.Millisecond,
		PruneDelay:           pgstore.ExactDelay,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dropTable(t, "", table)

	lockTable(t, table)
	waitFor(t, 5*time.Second, "an automatic prune to wait on the lock", func() bool { return waitingOn(t, table) >= 1 })
	if pgstoreGoroutines() <= before {
		t.Fatal("no pruner goroutine while the store is open")
	}

	start := time.Now()
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("Close took %v with a prune blocked on a lock", elapsed)
	}
	if after := pgstoreGoroutines(); after != before {
		t.Fatalf("goroutines running pgstore code: %d before Open, %d after Close", before, after)
	}
}

// pgstoreGoroutines counts the goroutines with pgstore's own functions on
// their stack, leaving out the tests'.
func pgstoreGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/pgstore/pgstore.(*") {
			n++
		}
	}
	return n
}

package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// goroutineCounts are the numbers of goroutines each workload runs on.
var goroutineCounts = []int{2, 8, 32}

// workload is one kind of operation mix. run runs b.N operations of it on
// g goroutines against s.
type workload struct {
	name string
	run  func(b *testing.B, s *openStore, g int)
}

var workloads = []workload{
	{"get-hit", benchGetHit},
	{"get-miss", benchGetMiss},
	{"set-overwrite", benchSetOverwrite},
	{"set-new", benchSetNew},
	{"delete", benchDelete},
	{"mix-9get-1set", benchMix},
	{"session", benchSession},
}

// BenchmarkStore runs every workload at every goroutine count on every
// store, named op=…/g=…/store=… so that `benchstat -col /store` puts the
// stores side by side.
//
// The stores run in turn, starting from a different one in each round that
// run.sh starts (PGSTORE_BENCH_ROUND), so that no store always runs first,
// right after the tables were loaded.
func BenchmarkStore(b *testing.B) {
	defer closeCurrentStore()
	warmUp(b)

	round, _ := strconv.Atoi(os.Getenv("PGSTORE_BENCH_ROUND"))
	kinds := rotate(storeKinds, round)
	for _, w := range workloads {
		b.Run("op="+w.name, func(b *testing.B) {
			for _, g := range goroutineCounts {
				b.Run("g="+strconv.Itoa(g), func(b *testing.B) {
					for _, kind := range kinds {
						b.Run("store="+kind.name, func(b *testing.B) {
							s := useStore(b, kind)
							b.ReportAllocs()
							w.run(b, s, g)
						})
					}
				})
			}
		})
	}
}

// rotate returns kinds starting from the one at n, modulo their number.
func rotate(kinds []storeKind, n int) []storeKind {
	n = (n%len(kinds) + len(kinds)) % len(kinds)
	return append(slices.Clone(kinds[n:]), kinds[:n]...)
}

// warmUpTime is how long each store reads before anything is measured.
const warmUpTime = time.Second

// warmUp opens every store, loading its table, and reads from it for
// warmUpTime on two goroutines, unmeasured. Without it the first benchmark
// of a process, always pgstore's get-hit at g=2, paid for the cold process,
// connections and server alone.
func warmUp(b *testing.B) {
	for _, kind := range storeKinds {
		useStore(b, kind)
	}
	// Loading the tables leaves dirty pages and WAL behind; a checkpoint
	// writes them now rather than during the first benchmarks. It needs a
	// superuser or pg_checkpoint; without, the run goes on.
	if _, err := adminPool.Exec(context.Background(), "CHECKPOINT"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: checkpoint after loading:", err)
	}
	for _, kind := range storeKinds {
		s := useStore(b, kind)
		deadline := time.Now().Add(warmUpTime)
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				for i := w; time.Now().Before(deadline); i += 2 {
					if _, err := s.storage.Get(liveKey(i)); err != nil {
						b.Errorf("warm up %s: %v", kind.name, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

// liveKey spreads consecutive operations over liveKeys in an order that is
// not the order they were loaded in; 7919 is prime, so the first keyCount
// operations touch every key once.
func liveKey(i int) string {
	return liveKeys[i*7919%keyCount]
}

func benchGetHit(b *testing.B, s *openStore, g int) {
	runOps(b, g, everyWorker(func(i int) error {
		v, err := s.storage.Get(liveKey(i))
		if err == nil && len(v) != valueSize {
			err = fmt.Errorf("get of a live key returned %d bytes, want %d", len(v), valueSize)
		}
		return err
	}))
}

func benchGetMiss(b *testing.B, s *openStore, g int) {
	runOps(b, g, everyWorker(func(i int) error {
		v, err := s.storage.Get(missingKeys[i*7919%keyCount])
		if err == nil && v != nil {
			err = fmt.Errorf("get of a missing key returned %d bytes, want nil", len(v))
		}
		return err
	}))
}

func benchSetOverwrite(b *testing.B, s *openStore, g int) {
	runOps(b, g, everyWorker(func(i int) error {
		return s.storage.Set(liveKey(i), value, 0)
	}))
}

// benchSetNew sets a key never stored before in every operation. The keys
// are made before the timer starts, checked and deleted after it stops.
func benchSetNew(b *testing.B, s *openStore, g int) {
	keys := randomKeys(b.N)

	runOps(b, g, everyWorker(func(i int) error {
		return s.storage.Set(keys[i], value, 0)
	}))

	checkCount(b, s, keys, len(keys))
	if err := s.remove(context.Background(), keys); err != nil {
		b.Fatalf("delete the new keys: %v", err)
	}
}

// benchDelete deletes a key that exists in every operation: b.N fresh keys
// are loaded before the timer starts, and checked gone after it stops.
func benchDelete(b *testing.B, s *openStore, g int) {
	keys := randomKeys(b.N)
	if err := s.load(context.Background(), keys); err != nil {
		b.Fatalf("load the keys to delete: %v", err)
	}

	runOps(b, g, everyWorker(func(i int) error {
		return s.storage.Delete(keys[i])
	}))

	checkCount(b, s, keys, 0)
}

// benchMix runs nine gets for one set, all on live keys.
func benchMix(b *testing.B, s *openStore, g int) {
	runOps(b, g, everyWorker(func(i int) error {
		if i%10 == 9 {
			return s.storage.Set(liveKey(i), value, 0)
		}
		v, err := s.storage.Get(liveKey(i))
		if err == nil && len(v) != valueSize {
			err = fmt.Errorf("get of a live key returned %d bytes, want %d", len(v), valueSize)
		}
		return err
	}))
}

// checkCount fails b unless the table holds want of keys.
func checkCount(b *testing.B, s *openStore, keys []string, want int) {
	b.Helper()
	got, err := s.count(context.Background(), keys)
	if err != nil {
		b.Fatalf("count keys: %v", err)
	}
	if got != want {
		b.Fatalf("table holds %d of the %d keys, want %d", got, len(keys), want)
	}
}

// everyWorker gives every goroutine the same operation.
func everyWorker(op func(i int) error) func(worker int) func(i int) error {
	return func(int) func(int) error { return op }
}

// runOps runs operations 0 to b.N-1 on g goroutines, which take the next
// operation from one shared counter, and times only that. newWorker is
// called for each goroutine before the timer starts and returns its
// operation. The first error stops every goroutine and fails b.
func runOps(b *testing.B, g int, newWorker func(worker int) func(i int) error) {
	b.Helper()
	ops := make([]func(int) error, g)
	for w := range ops {
		ops[w] = newWorker(w)
	}

	var (
		next     atomic.Int64
		firstErr error
		failOnce sync.Once
		wg       sync.WaitGroup
	)
	n := int64(b.N)

	b.ResetTimer()
	for _, op := range ops {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if err := op(int(i)); err != nil {
					failOnce.Do(func() { firstErr = err })
					next.Store(n)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()

	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstore/pgstore"
)

const (
	// expiredRows are loaded, already expired, for Prune to delete.
	expiredRows = 1_000_000

	// pruneLoadGoroutines run Gets and Sets on live keys throughout.
	pruneLoadGoroutines = 8

	// loadWarmup runs the load before anything is measured; idlePeriod is
	// how long Get latencies are measured without a prune.
	loadWarmup = time.Second
	idlePeriod = 15 * time.Second

	// liveExpiry is the expiry of the live keys, far beyond the run.
	liveExpiry = 24 * time.Hour

	// pruneTimeout bounds the whole prune benchmark.
	pruneTimeout = 30 * time.Minute
)

// Phases of the prune benchmark's load.
const (
	phaseWarmup int32 = iota
	phaseIdle
	phasePrune
	phaseDone
)

// BenchmarkPrune measures what a prune of expiredRows rows costs the
// traffic around it. It loads the rows, runs Gets (nine in ten operations)
// and Sets of live keys from pruneLoadGoroutines goroutines, measures the
// Get latencies for idlePeriod, then calls Prune while the load goes on.
//
// One iteration is the whole experiment, whatever b.N is: run it with
// -benchtime=1x. It reports rows pruned per second, the longest prune
// statement, and the Get latencies without and during the prune.
func BenchmarkPrune(b *testing.B) {
	closeCurrentStore()
	ctx, cancel := context.WithTimeout(context.Background(), pruneTimeout)
	defer cancel()

	tracer := &pruneTracer{}
	store, table := openPruneStore(b, ctx, tracer)
	defer store.Close()
	loadPruneTable(b, ctx, store, table)

	var phase atomic.Int32
	traffic := startTraffic(store, &phase)

	time.Sleep(loadWarmup)
	phase.Store(phaseIdle)
	time.Sleep(idlePeriod)

	b.ResetTimer()
	phase.Store(phasePrune)
	start := time.Now()
	pruned, pruneErr := store.Prune(ctx)
	elapsed := time.Since(start)
	phase.Store(phaseDone)
	b.StopTimer()

	idle, during, loadErr := traffic.wait()
	switch {
	case pruneErr != nil:
		b.Fatalf("prune: %v", pruneErr)
	case loadErr != nil:
		b.Fatalf("load: %v", loadErr)
	case pruned != expiredRows:
		b.Fatalf("prune deleted %d rows, want %d", pruned, expiredRows)
	case len(idle) == 0 || len(during) == 0:
		b.Fatalf("measured %d gets without prune and %d during it; want some of both",
			len(idle), len(during))
	}

	statements, longest, longestNth := tracer.result()
	idleP50, idleP99 := percentile(idle, 0.50), percentile(idle, 0.99)
	pruneP50, pruneP99 := percentile(during, 0.50), percentile(during, 0.99)
	ratio := float64(pruneP99) / float64(idleP99)
	rate := float64(pruned) / elapsed.Seconds()

	b.ReportMetric(0, "ns/op") // the experiment's time says nothing per op
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(ms(longest), "max-stmt-ms")
	b.ReportMetric(us(idleP50), "idle-p50-us")
	b.ReportMetric(us(idleP99), "idle-p99-us")
	b.ReportMetric(us(pruneP50), "prune-p50-us")
	b.ReportMetric(us(pruneP99), "prune-p99-us")
	b.ReportMetric(ratio, "p99-ratio")

	b.Logf("pruned %d rows in %v (%.0f rows/s) in %d statements, the longest %v (#%d); "+
		"Get p50/p99 %v/%v without prune, %v/%v during it: p99 ×%.2f",
		pruned, elapsed.Round(time.Millisecond), rate, statements,
		longest.Round(time.Microsecond), longestNth,
		idleP50.Round(time.Microsecond), idleP99.Round(time.Microsecond),
		pruneP50.Round(time.Microsecond), pruneP99.Round(time.Microsecond), ratio)
}

// openPruneStore opens pgstore on a table of its own, without automatic
// prunes, with tracer on its connections.
func openPruneStore(
	b *testing.B, ctx context.Context, tracer pgx.QueryTracer,
) (*pgstore.Storage, pgx.Identifier) {
	b.Helper()
	config, err := poolConfig()
	if err != nil {
		b.Fatal(err)
	}
	config.ConnConfig.Tracer = tracer

	table := benchTable("", "prune")
	store, err := pgstore.Open(ctx, pgstore.Config{
		PoolConfig:           config,
		TableName:            table[0],
		CreateTableIfMissing: true,
		DisablePrune:         true,
	})
	if err != nil {
		b.Fatal(err)
	}
	return store, table
}

// loadPruneTable loads the live keys, expiring in liveExpiry, and
// expiredRows rows expired an hour ago, then vacuums and analyzes the
// table as autovacuum would have done on a table whose rows expired long
// ago.
func loadPruneTable(
	b *testing.B, ctx context.Context, store *pgstore.Storage, table pgx.Identifier,
) {
	b.Helper()
	t := table.Sanitize()

	rows := make([][]any, len(liveKeys))
	for i, key := range liveKeys {
		hash := sha256.Sum256([]byte(key))
		rows[i] = []any{hash[:], []byte(key), value, time.Now().Add(liveExpiry)}
	}
	_, err := adminPool.CopyFrom(ctx, table, []string{"key_hash", "key", "value", "expires_at"},
		pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatalf("load live keys: %v", err)
	}

	_, err = adminPool.Exec(ctx, `INSERT INTO `+t+` (key_hash, key, value, expires_at)
		SELECT sha256(k), k, $1::bytea, now() - interval '1 hour'
		FROM generate_series(1, $2::int) AS i,
			convert_to(md5('expired ' || i), 'UTF8') AS k`, value, expiredRows)
	if err != nil {
		b.Fatalf("load expired rows: %v", err)
	}
	if _, err := adminPool.Exec(ctx, `VACUUM (ANALYZE) `+t); err != nil {
		b.Fatalf("vacuum: %v", err)
	}
	// Loading a million rows leaves hundreds of megabytes of WAL and dirty
	// pages; without a checkpoint now, the one they call for runs during the
	// prune and its writes are measured as the prune's.
	if _, err := adminPool.Exec(ctx, "CHECKPOINT"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: checkpoint after loading:", err)
	}
	if err := warm(ctx, store.Conn()); err != nil {
		b.Fatalf("connect: %v", err)
	}
}

// traffic is the load of the prune benchmark: the Get latencies of each
// phase and the first error.
type traffic struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	idle     []time.Duration
	during   []time.Duration
	firstErr error
}

// startTraffic starts pruneLoadGoroutines goroutines that run nine Gets for
// one Set on random live keys, and record the latency of each Get by the
// phase it started in, until the phase is phaseDone.
func startTraffic(store *pgstore.Storage, phase *atomic.Int32) *traffic {
	l := &traffic{}
	for range pruneLoadGoroutines {
		l.wg.Go(func() {
			var idle, during []time.Duration
			err := runTraffic(store, phase, &idle, &during)

			l.mu.Lock()
			defer l.mu.Unlock()
			l.idle = append(l.idle, idle...)
			l.during = append(l.during, during...)
			if l.firstErr == nil {
				l.firstErr = err
			}
		})
	}
	return l
}

func runTraffic(store *pgstore.Storage, phase *atomic.Int32, idle, during *[]time.Duration) error {
	for i := 0; ; i++ {
		p := phase.Load()
		if p == phaseDone {
			return nil
		}
		key := liveKeys[rand.IntN(len(liveKeys))]

		if i%10 == 9 {
			if err := store.Set(key, value, liveExpiry); err != nil {
				return err
			}
			continue
		}

		start := time.Now()
		v, err := store.Get(key)
		latency := time.Since(start)
		if err != nil {
			return err
		}
		if len(v) != valueSize {
			return fmt.Errorf("get of a live key returned %d bytes, want %d", len(v), valueSize)
		}
		switch p {
		case phaseIdle:
			*idle = append(*idle, latency)
		case phasePrune:
			*during = append(*during, latency)
		}
	}
}

// wait waits for the load to stop and returns its Get latencies, sorted.
func (l *traffic) wait() (idle, during []time.Duration, err error) {
	l.wg.Wait()
	slices.Sort(l.idle)
	slices.Sort(l.during)
	return l.idle, l.during, l.firstErr
}

// percentile returns the q quantile of sorted, by the nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// pruneTracer times the prune statements, those whose SQL holds
// "SKIP LOCKED", on the connections of a pool.
type pruneTracer struct {
	mu         sync.Mutex
	statements int
	longest    time.Duration
	longestNth int // which statement, counting from 1, was the longest
}

type pruneStartKey struct{}

func (t *pruneTracer) TraceQueryStart(
	ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData,
) context.Context {
	if !strings.Contains(data.SQL, "SKIP LOCKED") {
		return ctx
	}
	return context.WithValue(ctx, pruneStartKey{}, time.Now())
}

func (t *pruneTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	start, ok := ctx.Value(pruneStartKey{}).(time.Time)
	if !ok {
		return
	}
	elapsed := time.Since(start)

	t.mu.Lock()
	defer t.mu.Unlock()
	t.statements++
	if elapsed > t.longest {
		t.longest, t.longestNth = elapsed, t.statements
	}
}

// result returns the number of prune statements, the time of the longest
// one and its place in the order they ran, from 1.
func (t *pruneTracer) result() (statements int, longest time.Duration, longestNth int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statements, t.longest, t.longestNth
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

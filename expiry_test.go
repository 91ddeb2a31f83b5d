package pgstore_test

import (
	"testing"
	"time"

	"github.com/pgstore/pgstore"
)

// within fails the test unless got lies in [low, high].
func within(t *testing.T, what string, got *time.Duration, low, high time.Duration) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: expires_at is NULL, want between %v and %v from now", what, low, high)
	}
	if *got < low || *got > high {
		t.Fatalf("%s: expires %v from now, want between %v and %v", what, *got, low, high)
	}
}

func TestExpiryIsComputedByTheDatabaseWithSubSecondPrecision(t *testing.T) {
	t.Parallel()
	table := uniqueName("precision")
	store := quietStore(t, pgstore.Config{TableName: table})

	if err := store.Set("a", []byte("v"), 10*time.Second+250*time.Millisecond); err != nil {
		t.Fatalf("Set a: %v", err)
	}
	if err := store.Set("b", []byte("v"), 10*time.Second+750*time.Millisecond); err != nil {
		t.Fatalf("Set b: %v", err)
	}
	within(t, "Set with 10.25s", expiresAt(t, "", table, "a"), 9*time.Second, 10*time.Second+250*time.Millisecond)

	// Rounded to whole seconds, both would expire within a few milliseconds
	// of each other, or a whole second apart.
	var gap time.Duration
	err := adminPool.QueryRow(testContext(t), `
		SELECT (extract(epoch FROM b.expires_at - a.expires_at) * 1000000)::bigint * 1000
		FROM `+tableName("", table)+` a, `+tableName("", table)+` b
		WHERE a.key = 'a' AND b.key = 'b'`).Scan(&gap)
	if err != nil {
		t.Fatalf("read expiries: %v", err)
	}
	if gap < 500*time.Millisecond || gap > 700*time.Millisecond {
		t.Fatalf("b expires %v after a, want 500ms plus the time between the two Sets", gap)
	}
}

func TestKeyIsGoneAfterItsExpiryAndThereBefore(t *testing.T) {
	t.Parallel()
	table := uniqueName("expiry")
	store := quietStore(t, pgstore.Config{TableName: table})

	if err := store.Set("short", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got, err := store.Get("short"); err != nil || string(got) != "v" {
		t.Fatalf("Get before expiry = %q, %v; want %q", got, err, "v")
	}
	time.Sleep(400 * time.Millisecond)
	if got, err := store.Get("short"); err != nil || got != nil {
		t.Fatalf("Get after expiry = %q, %v; want nil, nil", got, err)
	}
	if n := countRows(t, "", table); n != 1 {
		t.Fatalf("rows = %d, want 1: reads must filter, not delete", n)
	}
}

func TestReadsFilterByTheDatabaseClock(t *testing.T) {
	t.Parallel()
	table := uniqueName("clock")
	store := quietStore(t, pgstore.Config{TableName: table})
	ctx := testContext(t)

	_, err := adminPool.Exec(ctx, `INSERT INTO `+tableName("", table)+` (key_hash, key, value, expires_at)
		SELECT sha256(k), k, v, e FROM (VALUES
			('past'::bytea, 'p'::bytea, now() - interval '1 millisecond'),
			('future', 'f', now() + interval '2 seconds'),
			('never', 'n', NULL)) AS r(k, v, e)`)
	if err != nil {
		t.Fatalf("insert rows: %v", err)
	}
	for key, want := range map[string]string{"past": "", "future": "f", "never": "n"} {
		got, err := store.Get(key)
		if err != nil || string(got) != want || (want == "") != (got == nil) {
			t.Errorf("Get %q = %q, %v; want %q", key, got, err, want)
		}
	}
}

func TestExpZeroOrNegativeMeansTTLElseNever(t *testing.T) {
	t.Parallel()
	never := uniqueName("never")
	withTTL := uniqueName("ttl")
	plain := quietStore(t, pgstore.Config{TableName: never})
	ttl := quietStore(t, pgstore.Config{TableName: withTTL, TTL: time.Hour})

	for _, exp := range []time.Duration{0, -time.Second} {
		if err := plain.Set("k", []byte("v"), exp); err != nil {
			t.Fatalf("Set exp %v: %v", exp, err)
		}
		if got := expiresAt(t, "", never, "k"); got != nil {
			t.Fatalf("Set exp %v without TTL: expires in %v, want never", exp, *got)
		}

		if err := ttl.Set("k", []byte("v"), exp); err != nil {
			t.Fatalf("Set exp %v: %v", exp, err)
		}
		within(t, "Set with TTL", expiresAt(t, "", withTTL, "k"), time.Hour-time.Minute, time.Hour)
	}

	if err := ttl.Set("explicit", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	within(t, "explicit exp beats TTL", expiresAt(t, "", withTTL, "explicit"), 50*time.Second, time.Minute)
}

func TestTouchMovesExpiryOfLiveKeyOnly(t *testing.T) {
	t.Parallel()
	table := uniqueName("touch")
	store := quietStore(t, pgstore.Config{TableName: table})

	if err := store.Set("live", []byte("value"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := store.Touch("live", time.Hour); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	within(t, "touched key", expiresAt(t, "", table, "live"), time.Hour-time.Minute, time.Hour)
	if got, err := store.Get("live"); err != nil || string(got) != "value" {
		t.Fatalf("Get after Touch = %q, %v; want the value unchanged", got, err)
	}

	if err := store.Touch("missing", time.Hour); err != nil {
		t.Fatalf("Touch of missing key: %v", err)
	}
	if n := countRows(t, "", table); n != 1 {
		t.Fatalf("rows after Touch of missing key = %d, want 1", n)
	}

	if err := store.Set("expired", []byte("old"), 100*time.Millisecond); err != nil {
		t.Fatalf("Set: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := store.Touch("expired", time.Hour); err != nil {
		t.Fatalf("Touch of expired key: %v", err)
	}
	if got, err := store.Get("expired"); err != nil || got != nil {
		t.Fatalf("Get after Touch of expired key = %q, %v; want nil: Touch brought it back", got, err)
	}
}

func TestTouchWithExpZeroUsesTTL(t *testing.T) {
	t.Parallel()
	table := uniqueName("touch_ttl")
	store := quietStore(t, pgstore.Config{TableName: table, TTL: 2 * time.Hour})

	if err := store.Set("k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := store.Touch("k", 0); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	within(t, "Touch exp 0", expiresAt(t, "", table, "k"), 2*time.Hour-time.Minute, 2*time.Hour)
}

func TestDisableTouchMakesTouchANoOp(t *testing.T) {
	t.Parallel()
	table := uniqueName("no_touch")
	store := quietStore(t, pgstore.Config{TableName: table, DisableTouch: true})

	if err := store.Set("k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := store.Touch("k", time.Hour); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	within(t, "Touch with DisableTouch", expiresAt(t, "", table, "k"), 50*time.Second, time.Minute)
}

package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgstore/pgstore"
)

func TestGetReturnsWhatSetStored(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	if err := store.Set("john", []byte("doe"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	got, err := store.Get("john")
	if err != nil || string(got) != "doe" {
		t.Fatalf("Get = %q, %v; want %q, nil", got, err, "doe")
	}

	if err := store.Set("john", []byte("smith"), 0); err != nil {
		t.Fatalf("Set again: %v", err)
	}
	got, err = store.Get("john")
	if err != nil || string(got) != "smith" {
		t.Fatalf("Get after overwrite = %q, %v; want %q, nil", got, err, "smith")
	}
}

func TestGetOfMissingKeyReturnsNil(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	got, err := store.Get("missing")
	if err != nil || got != nil {
		t.Fatalf("Get = %#v, %v; want nil, nil", got, err)
	}
}

func TestKeysOfAnyBytesRoundTrip(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	long := strings.Repeat("k", 64<<10)
	keys := []string{
		"plain",
		"nul\x00inside",
		"nul\x00",
		"nul",
		"\x00",
		"invalid \xff\xfe utf-8",
		"invalid \xff\xfd utf-8",
		"ünïcödé ✓",
		long,
		long[:len(long)-1] + "j",
		long + "\x00",
	}

	for i, key := range keys {
		if err := store.Set(key, []byte{byte(i)}, 0); err != nil {
			t.Fatalf("Set key %d (%d bytes): %v", i, len(key), err)
		}
	}
	for i, key := range keys {
		got, err := store.Get(key)
		if err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("Get key %d (%d bytes) = %v, %v; want %v", i, len(key), got, err, []byte{byte(i)})
		}
	}

	for i, key := range keys {
		if err := store.Delete(key); err != nil {
			t.Fatalf("Delete key %d: %v", i, err)
		}
		got, err := store.Get(key)
		if err != nil || got != nil {
			t.Fatalf("Get key %d after Delete = %v, %v; want nil, nil", i, got, err)
		}
		for j := i + 1; j < len(keys); j++ {
			got, err := store.Get(keys[j])
			if err != nil || !bytes.Equal(got, []byte{byte(j)}) {
				t.Fatalf("deleting key %d changed key %d: got %v, %v", i, j, got, err)
			}
		}
	}
}

func TestEmptyKeyIsIgnored(t *testing.T) {
	t.Parallel()
	table := uniqueName("empty_key")
	store := quietStore(t, pgstore.Config{TableName: table})
	ctx := testContext(t)

	if err := store.Set("", []byte("value"), 0); err != nil {
		t.Fatalf("Set empty key: %v", err)
	}
	if got := countRows(t, "", table); got != 0 {
		t.Fatalf("rows after Set of empty key = %d, want 0", got)
	}
	got, err := store.Get("")
	if err != nil || got != nil {
		t.Fatalf("Get empty key = %#v, %v; want nil, nil", got, err)
	}
	if err := store.Delete(""); err != nil {
		t.Fatalf("Delete empty key: %v", err)
	}
	if err := store.Touch("", time.Hour); err != nil {
		t.Fatalf("Touch empty key: %v", err)
	}
	if err := store.TouchWithContext(ctx, "", time.Hour); err != nil {
		t.Fatalf("TouchWithContext empty key: %v", err)
	}
}

func TestValuesOfAnyBytesRoundTrip(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 4<<20) // 16 MiB

	for name, value := range map[string][]byte{"binary": binary, "16 MiB": big} {
		if err := store.Set(name, value, 0); err != nil {
			t.Fatalf("Set %s: %v", name, err)
		}
		got, err := store.Get(name)
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("Get %s: %d bytes, %v; want %d bytes equal to those set", name, len(got), err, len(value))
		}
	}
}

func TestEmptyValueReadsBackAsEmptyNonNil(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	for name, value := range map[string][]byte{"empty": {}, "nil": nil} {
		if err := store.Set(name, value, 0); err != nil {
			t.Fatalf("Set %s value: %v", name, err)
		}
		got, err := store.Get(name)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("Get of %s value = %#v, %v; want []byte{}, nil", name, got, err)
		}
	}
}

func TestGetReturnsCopyTheCallerOwns(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	value := []byte("original")
	if err := store.Set("k", value, 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
	value[0] = 'X'
	first, _ := store.Get("k")
	first[0] = 'Y'
	second, err := store.Get("k")
	if err != nil || string(second) != "original" {
		t.Fatalf("Get = %q, %v; want %q", second, err, "original")
	}
}

func TestDeleteRemovesOnlyItsKey(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	for _, key := range []string{"a", "b"} {
		if err := store.Set(key, []byte(key), 0); err != nil {
			t.Fatalf("Set %s: %v", key, err)
		}
	}
	if err := store.Delete("a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := store.Delete("never set"); err != nil {
		t.Fatalf("Delete of missing key: %v", err)
	}
	if got, err := store.Get("a"); err != nil || got != nil {
		t.Fatalf("Get deleted key = %q, %v; want nil, nil", got, err)
	}
	if got, err := store.Get("b"); err != nil || string(got) != "b" {
		t.Fatalf("Get other key = %q, %v; want %q", got, err, "b")
	}
}

func TestResetEmptiesOnlyItsTable(t *testing.T) {
	t.Parallel()
	mine := uniqueName("reset_mine")
	other := uniqueName("reset_other")
	store := quietStore(t, pgstore.Config{TableName: mine})
	neighbour := quietStore(t, pgstore.Config{TableName: other})

	for _, s := range []*pgstore.Storage{store, neighbour} {
		for _, key := range []string{"a", "b", "c"} {
			if err := s.Set(key, []byte(key), 0); err != nil {
				t.Fatalf("Set: %v", err)
			}
		}
	}
	if err := store.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if got := countRows(t, "", mine); got != 0 {
		t.Fatalf("rows in reset table = %d, want 0", got)
	}
	if got := countRows(t, "", other); got != 3 {
		t.Fatalf("rows in other table = %d, want 3", got)
	}
}

func TestContextMethodsHonourCancellation(t *testing.T) {
	t.Parallel()
	table := uniqueName("cancel")
	store := quietStore(t, pgstore.Config{TableName: table})
	if err := store.Set("kept", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, getErr := store.GetWithContext(ctx, "kept")
	_, pruneErr := store.Prune(ctx)
	errs := map[string]error{
		"Get":    getErr,
		"Set":    store.SetWithContext(ctx, "new", []byte("v"), 0),
		"Delete": store.DeleteWithContext(ctx, "kept"),
		"Touch":  store.TouchWithContext(ctx, "kept", time.Second),
		"Reset":  store.ResetWithContext(ctx),
		"Prune":  pruneErr,
	}
	for op, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with cancelled context: error %v, want context.Canceled", op, err)
		}
	}

	if got, err := store.Get("kept"); err != nil || string(got) != "v" {
		t.Errorf("after cancelled Delete and Reset, Get = %q, %v; want %q", got, err, "v")
	}
	if got, err := store.Get("new"); err != nil || got != nil {
		t.Errorf("after cancelled Set, Get = %q, %v; want nil", got, err)
	}
	if got := expiresAt(t, "", table, "kept"); got != nil {
		t.Errorf("after cancelled Touch, expires_at = %v, want NULL", got)
	}
}

func TestErrorsNameOperationAndTable(t *testing.T) {
	t.Parallel()
	table := uniqueName("errs")
	store := quietStore(t, pgstore.Config{TableName: table})

	// Dropping the table under the store makes every statement fail.
	_, err := adminPool.Exec(testContext(t), "DROP TABLE "+tableName("", table))
	if err != nil {
		t.Fatalf("drop table: %v", err)
	}
	err = store.Set("k", []byte("v"), 0)
	want := `pgstore: set "` + table + `"`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Set on dropped table: error %v, want prefix %q", err, want)
	}
	_, err = store.Get("k")
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Get on dropped table: error %v, want the server's cause", err)
	}
}

func TestConcurrentOperationsDoNotInterfere(t *testing.T) {
	t.Parallel()
	store := quietStore(t, pgstore.Config{})

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			key := string(rune('a' + g))
			for i := range 20 {
				value := []byte{byte(g), byte(i)}
				if err := store.Set(key, value, time.Minute); err != nil {
					errs <- err
					return
				}
				got, err := store.Get(key)
				if err != nil || !bytes.Equal(got, value) {
					errs <- errors.New("key " + key + " read back another value")
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

// A key whose SHA-256 is another stored key's never reads, replaces or
// deletes that key's row, alone or in a batch. No two known keys share a
// SHA-256, so the test writes a row for "owner" under the hash of "intruder".
func TestKeysSharingAHashStayApart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	table := uniqueName("collision")
	store := quietStore(t, pgstore.Config{TableName: table})
	_, err := adminPool.Exec(ctx, `INSERT INTO `+tableName("", table)+` (key_hash, key, value)
		VALUES (sha256('intruder'), 'owner', 'owned')`)
	if err != nil {
		t.Fatalf("insert the colliding row: %v", err)
	}
	ownerIntact := func(when string) {
		t.Helper()
		var key, value string
		err := adminPool.QueryRow(ctx, `SELECT convert_from(key, 'UTF8'), convert_from(value, 'UTF8')
			FROM `+tableName("", table)+` WHERE key_hash = sha256('intruder')`).Scan(&key, &value)
		if err != nil || key != "owner" || value != "owned" {
			t.Fatalf("after %s the row under the shared hash is %q=%q, %v; want owner=owned", when, key, value, err)
		}
	}

	if got, err := store.Get("intruder"); err != nil || got != nil {
		t.Fatalf("Get of the intruder = %q, %v; want nil, nil", got, err)
	}
	if err := store.Set("intruder", []byte("x"), 0); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("Set of the intruder: %v, want an error about the shared SHA-256", err)
	}
	ownerIntact("a single Set")
	if err := store.Delete("intruder"); err != nil {
		t.Fatalf("Delete of the intruder: %v", err)
	}
	ownerIntact("a Delete")

	lanes := lockAndFillLanes(t, table, func(i int) error {
		return store.Set(fmt.Sprint("lane-", i), []byte("v"), 0)
	})
	intruder := queue(t, store, func() error { return store.Set("intruder", []byte("x"), 0) })
	other := queue(t, store, func() error { return store.Set("other", []byte("y"), 0) })
	lanes.unlock()
	if err := <-intruder; err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("batched Set of the intruder: %v, want an error about the shared SHA-256", err)
	}
	if err := <-other; err != nil {
		t.Fatalf("Set batched with the intruder: %v", err)
	}
	ownerIntact("a batched Set")
	if got, err := store.Get("other"); err != nil || string(got) != "y" {
		t.Fatalf("Get other = %q, %v; want y", got, err)
	}

	// A batch that names both keys must not pair one's hash with the
	// other's key.
	lanes = lockAndFillLanes(t, table, func(i int) error { return store.Touch("lane", time.Hour) })
	touches := []<-chan error{
		queue(t, store, func() error { return store.Touch("intruder", time.Hour) }),
		queue(t, store, func() error { return store.Touch("owner", time.Hour) }),
	}
	lanes.unlock()
	for _, result := range touches {
		if err := <-result; err != nil {
			t.Fatalf("batched Touch: %v", err)
		}
	}
	if got := expiresAt(t, "", table, "owner"); got != nil {
		t.Fatalf("a batch touching the intruder and the owner set the planted row's expiry to %v", *got)
	}
	lanes = lockAndFillLanes(t, table, func(i int) error { return store.Delete("lane") })
	deletes := []<-chan error{
		queue(t, store, func() error { return store.Delete("intruder") }),
		queue(t, store, func() error { return store.Delete("owner") }),
	}
	lanes.unlock()
	for _, result := range deletes {
		if err := <-result; err != nil {
			t.Fatalf("batched Delete: %v", err)
		}
	}
	ownerIntact("a batch deleting the intruder and the owner")
}

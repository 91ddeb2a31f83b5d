package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
	"github.com/pgstore/pgstore/internal/devdb"
)

// databaseURL is the database every test works in, each on its own table.
var databaseURL string

// adminPool is a pool the tests use to look at tables behind the store's back.
var adminPool *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(devdb.RunTests(m, func(url string, pool *pgxpool.Pool) {
		databaseURL, adminPool = url, pool
	}))
}

// testContext returns a context that ends with the test, at the latest after
// a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName returns a table name no other test uses.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// dropTable drops schema.table at the end of the test.
func dropTable(t *testing.T, schema, table string) {
	t.Helper()
	t.Cleanup(func() {
		name := pgx.Identifier{table}
		if schema != "" {
			name = pgx.Identifier{schema, table}
		}
		_, err := adminPool.Exec(context.Background(), "DROP TABLE IF EXISTS "+name.Sanitize())
		if err != nil {
			t.Errorf("drop table %s: %v", name.Sanitize(), err)
		}
	})
}

// newStore opens a store on a fresh table of its own, with pruning off unless
// cfg turns it on, and closes it at the end of the test. Fields of cfg that
// are set are kept.
func newStore(t *testing.T, cfg pgstore.Config) *pgstore.Storage {
	t.Helper()
	if cfg.TableName == "" {
		cfg.TableName = uniqueName("t")
	}
	if cfg.Pool == nil && cfg.ConnString == "" && cfg.PoolConfig == nil {
		cfg.ConnString = databaseURL
	}
	cfg.CreateTableIfMissing = true
	dropTable(t, cfg.SchemaName, cfg.TableName)

	store, err := pgstore.Open(testContext(t), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return store
}

// quietStore is newStore with automatic pruning off.
func quietStore(t *testing.T, cfg pgstore.Config) *pgstore.Storage {
	t.Helper()
	cfg.DisablePrune = true
	return newStore(t, cfg)
}

// tableName returns the quoted, qualified name of a store's table.
func tableName(schema, table string) string {
	if schema == "" {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}

// countRows returns the number of rows in schema.table, expired ones included.
func countRows(t *testing.T, schema, table string) int64 {
	t.Helper()
	var n int64
	err := adminPool.QueryRow(testContext(t), "SELECT count(*) FROM "+tableName(schema, table)).Scan(&n)
	if err != nil {
		t.Fatalf("count rows of %s: %v", tableName(schema, table), err)
	}
	return n
}

// expiresAt returns how long after the database's now() the row of key
// expires, or nil when it never does. It fails the test when there is no row.
func expiresAt(t *testing.T, schema, table, key string) *time.Duration {
	t.Helper()
	var micros *int64
	err := adminPool.QueryRow(testContext(t), `
		SELECT (extract(epoch FROM expires_at - now()) * 1000000)::bigint
		FROM `+tableName(schema, table)+` WHERE key = $1`, []byte(key)).Scan(&micros)
	if err != nil {
		t.Fatalf("read expires_at of %q: %v", key, err)
	}
	if micros == nil {
		return nil
	}
	d := time.Duration(*micros) * time.Microsecond
	return &d
}

// insertExpired adds n rows that expired a minute ago, straight into the table.
func insertExpired(t *testing.T, schema, table string, n int) {
	t.Helper()
	_, err := adminPool.Exec(testContext(t), `
		INSERT INTO `+tableName(schema, table)+` (key_hash, key, value, expires_at)
		SELECT sha256(k), k, '\x00', now() - interval '1 minute'
		FROM generate_series(1, $1) AS i, convert_to('expired-' || i, 'UTF8') AS k`, n)
	if err != nil {
		t.Fatalf("insert %d expired rows: %v", n, err)
	}
}

// tracedPoolConfig returns a pool config for the test database whose
// connections report their queries to tracer.
func tracedPoolConfig(t *testing.T, tracer pgx.QueryTracer) *pgxpool.Config {
	t.Helper()
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("parse the test database URL: %v", err)
	}
	poolConfig.ConnConfig.Tracer = tracer
	return poolConfig
}

// lockTable holds an ACCESS EXCLUSIVE lock on table, in a transaction of its
// own, so that every statement on it waits in the database. The returned
// function releases it; the end of the test releases it at the latest.
func lockTable(t *testing.T, table string) (unlock func()) {
	t.Helper()
	tx, err := adminPool.Begin(testContext(t))
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(testContext(t), "LOCK TABLE "+tableName("", table)+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatalf("lock %s: %v", tableName("", table), err)
	}
	return func() {
		t.Helper()
		if err := tx.Rollback(testContext(t)); err != nil {
			t.Fatalf("unlock %s: %v", tableName("", table), err)
		}
	}
}

// waitingOn counts the statements on table that wait for a lock on a table;
// a wait for an advisory lock whose name holds the table's does not count.
func waitingOn(t *testing.T, table string) int {
	t.Helper()
	var n int
	err := adminPool.QueryRow(testContext(t), `SELECT count(*) FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND wait_event = 'relation'
		AND query LIKE '%' || $1 || '%'`, table).Scan(&n)
	if err != nil {
		t.Fatalf("pg_stat_activity: %v", err)
	}
	return n
}

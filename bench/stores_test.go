package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/storage/postgres/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
)

const (
	// keyCount is the number of keys loaded before the benchmarks.
	keyCount = 10_000

	// valueSize is the size of every value stored.
	valueSize = 256

	// openTimeout bounds opening a store and loading its table.
	openTimeout = time.Minute
)

var (
	// liveKeys are loaded into every table; missingKeys are never stored.
	liveKeys    = randomKeys(keyCount)
	missingKeys = randomKeys(keyCount)

	// value is the value of every Set and of every row loaded.
	value = randomBytes(valueSize)
)

// storeKind is one store under test.
type storeKind struct {
	name string

	// schema is the schema its table is put in, "" for the search_path.
	schema string

	layout layout

	open opener
}

// opener opens a store on table with a pool of its own, of maxConns
// connections, and returns it with that pool.
type opener func(ctx context.Context, table pgx.Identifier) (fiber.Storage, *pgxpool.Pool, error)

// storeKinds are the stores of BenchmarkStore, in the order they run.
var storeKinds = []storeKind{
	{name: "pgstore", layout: pgstoreLayout, open: openPgstore(false)},
	{name: "pgstore-nobatch", layout: pgstoreLayout, open: openPgstore(true)},
	// Fiber's driver puts a table without a schema in "public".
	{name: "gofiber", schema: "public", layout: gofiberLayout, open: openGofiber},
	{name: "pgx", layout: pgstoreLayout, open: openPgx},
}

// openPgstore opens pgstore with its defaults, batching left on unless
// disableBatching is set, and without automatic prunes.
func openPgstore(disableBatching bool) opener {
	return func(ctx context.Context, table pgx.Identifier) (fiber.Storage, *pgxpool.Pool, error) {
		poolConfig, err := poolConfig()
		if err != nil {
			return nil, nil, err
		}
		store, err := pgstore.Open(ctx, pgstore.Config{
			PoolConfig:           poolConfig,
			TableName:            table[len(table)-1],
			CreateTableIfMissing: true,
			DisablePrune:         true,
			DisableBatching:      disableBatching,
		})
		if err != nil {
			return nil, nil, err
		}
		return store, store.Conn(), nil
	}
}

// openGofiber opens github.com/gofiber/storage/postgres/v3 on a pool made
// here. The driver's Close closes that pool, and its constructor panics on
// errors, which are turned back into an error here.
func openGofiber(ctx context.Context, table pgx.Identifier) (
	_ fiber.Storage, _ *pgxpool.Pool, err error,
) {
	pool, err := newPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			pool.Close()
			err = fmt.Errorf("gofiber postgres: %v", r)
		}
	}()

	store := postgres.NewWithContext(ctx, postgres.Config{DB: pool, Table: table[len(table)-1]})
	return store, pool, nil
}

// openPgx creates a table from pgstore's table.sql and opens the raw pgx
// baseline on it.
func openPgx(ctx context.Context, table pgx.Identifier) (fiber.Storage, *pgxpool.Pool, error) {
	if err := createPgstoreTable(ctx, table); err != nil {
		return nil, nil, err
	}
	pool, err := newPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	return newPgxStore(pool, table), pool, nil
}

// poolConfig returns the pool configuration every store uses.
func poolConfig() (*pgxpool.Config, error) {
	config, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse the database URL: %w", err)
	}
	config.MaxConns = maxConns
	return config, nil
}

func newPool(ctx context.Context) (*pgxpool.Pool, error) {
	config, err := poolConfig()
	if err != nil {
		return nil, err
	}
	return pgxpool.NewWithConfig(ctx, config)
}

// openStore is a store open for the benchmarks, with its table loaded.
type openStore struct {
	kind    storeKind
	table   pgx.Identifier
	storage fiber.Storage
	pool    *pgxpool.Pool
	app     *sessionApp // made by the first session benchmark
}

var (
	// currentStore is the one store open. The stores are opened one at a
	// time: four pools of 32 connections would pass PostgreSQL's default
	// max_connections of 100.
	currentStore *openStore

	// loadedTables holds the tables of each store kind, once created and
	// loaded with liveKeys. They stay, loaded, until the run ends.
	loadedTables = map[string]pgx.Identifier{}
)

// useStore returns the store of kind, opened and its table loaded with
// liveKeys, closing the store open before if it is another one.
func useStore(b *testing.B, kind storeKind) *openStore {
	b.Helper()
	if currentStore != nil && currentStore.kind.name == kind.name {
		return currentStore
	}
	closeCurrentStore()

	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()

	table, loaded := loadedTables[kind.name]
	if !loaded {
		table = benchTable(kind.schema, kind.name)
	}
	storage, pool, err := kind.open(ctx, table)
	if err != nil {
		b.Fatalf("open %s: %v", kind.name, err)
	}
	s := &openStore{kind: kind, table: table, storage: storage, pool: pool}
	currentStore = s

	if !loaded {
		if err := s.load(ctx, liveKeys); err != nil {
			b.Fatalf("load %s: %v", kind.name, err)
		}
		// So that no store's first reads pay for setting hint bits.
		if _, err := adminPool.Exec(ctx, `VACUUM (ANALYZE) `+table.Sanitize()); err != nil {
			b.Fatalf("vacuum %s: %v", kind.name, err)
		}
		loadedTables[kind.name] = table
	}
	if err := warm(ctx, pool); err != nil {
		b.Fatalf("connect %s: %v", kind.name, err)
	}
	return s
}

// closeCurrentStore closes the store open, if any, and its session app.
func closeCurrentStore() {
	s := currentStore
	if s == nil {
		return
	}
	currentStore = nil
	if s.app != nil {
		s.app.close()
	}
	s.storage.Close()
}

// warm opens every connection of pool before the timer starts.
func warm(ctx context.Context, pool *pgxpool.Pool) error {
	conns := make([]*pgxpool.Conn, 0, maxConns)
	defer func() {
		for _, conn := range conns {
			conn.Release()
		}
	}()
	for range maxConns {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, conn)
	}
	return nil
}

// load inserts keys, each with value and no expiry, with COPY.
func (s *openStore) load(ctx context.Context, keys []string) error {
	l := s.kind.layout
	rows := make([][]any, len(keys))
	for i, key := range keys {
		rows[i] = l.row(key)
	}
	n, err := adminPool.CopyFrom(ctx, s.table, l.columns, pgx.CopyFromRows(rows))
	if err != nil {
		return err
	}
	if n != int64(len(keys)) {
		return fmt.Errorf("copied %d rows, want %d", n, len(keys))
	}
	return nil
}

// count returns how many of keys the table holds.
func (s *openStore) count(ctx context.Context, keys []string) (int, error) {
	l := s.kind.layout
	var n int
	err := adminPool.QueryRow(ctx, `SELECT count(*) FROM `+s.table.Sanitize()+
		` WHERE `+l.keyColumn+` = ANY($1)`, l.keyArray(keys)).Scan(&n)
	return n, err
}

// remove deletes keys from the table.
func (s *openStore) remove(ctx context.Context, keys []string) error {
	l := s.kind.layout
	_, err := adminPool.Exec(ctx, `DELETE FROM `+s.table.Sanitize()+
		` WHERE `+l.keyColumn+` = ANY($1)`, l.keyArray(keys))
	return err
}

// layout is how the rows of a store's table are written, for loading and
// checking it around the timed part.
type layout struct {
	keyColumn string
	columns   []string
	row       func(key string) []any
	keyArray  func(keys []string) any
}

// pgstoreLayout is table.sql's: bytea key and value, NULL expiry for never.
var pgstoreLayout = layout{
	keyColumn: "key",
	columns:   []string{"key_hash", "key", "value"},
	row: func(key string) []any {
		hash := sha256.Sum256([]byte(key))
		return []any{hash[:], []byte(key), value}
	},
	keyArray: func(keys []string) any {
		array := make([][]byte, len(keys))
		for i, key := range keys {
			array[i] = []byte(key)
		}
		return array
	},
}

// gofiberLayout is Fiber's driver's: text key, bytea value, and an expiry
// in Unix seconds, 0 for never.
var gofiberLayout = layout{
	keyColumn: "k",
	columns:   []string{"k", "v", "e"},
	row:       func(key string) []any { return []any{key, value, int64(0)} },
	keyArray:  func(keys []string) any { return keys },
}

// randomKeys returns n random keys of 32 hex characters.
func randomKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = hex.EncodeToString(randomBytes(16))
	}
	return keys
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

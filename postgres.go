package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrClosed is returned by every operation of a Storage after Close.
var ErrClosed = errors.New("pgstore: storage is closed")

// errHashCollision is returned by a Set that changed no row: its key has the
// SHA-256 of another stored key, whose row the upsert leaves alone, or a
// trigger or rule on the table skipped the write.
var errHashCollision = errors.New("not stored: another stored key has the same SHA-256, " +
	"or a trigger or rule on the table skipped the write")

// Storage keeps keys and values with an expiry in one PostgreSQL table. It
// implements the Storage interfaces of Fiber v2 and v3. All methods are safe
// for concurrent use.
type Storage struct {
	pool    *pgxpool.Pool
	ownPool bool // the store made pool, so Close closes it
	table   string
	sql     statements
	// typedArgs: batches may pass their fields as callArrays (see args.go).
	typedArgs bool

	ttl          time.Duration
	disableTouch bool
	logger       *slog.Logger

	pruner    *pruner
	pruning   chan struct{} // holds a token while a prune runs
	pruneLock string        // names the advisory lock of the table's prunes

	// One batcher for each kind of operation, and a token for each
	// connection their statements may hold at once.
	gets, sets, deletes, touches *batcher
	conns                        chan struct{}

	// mu guards closed; ops counts the operations in flight, so that Close
	// can wait for them before it closes the pool.
	mu     sync.RWMutex
	closed bool
	ops    sync.WaitGroup

	// closing is cancelled by Close to stop prunes in flight.
	closing     context.Context
	stopClosing context.CancelFunc
	closeOnce   sync.Once
}

// New opens a Storage with Open and context.Background. Following Fiber's
// convention for storage drivers, it panics when the store cannot be set up:
// a bad Config, no database to reach, or a missing or unfit table.
func New(config ...Config) *Storage {
	store, err := Open(context.Background(), config...)
	if err != nil {
		panic(err)
	}
	return store
}

// Open connects to PostgreSQL as the Config says, checks the table (creating
// it when Config.CreateTableIfMissing is set) and starts the background
// pruner unless Config.DisablePrune is set. ctx bounds the setup only.
//
// Open fails when the Config is invalid, the database cannot be reached, the
// table is missing and may not be created, or the table's columns do not fit.
// On failure nothing is left running, and a pool the store made is closed.
func Open(ctx context.Context, config ...Config) (*Storage, error) {
	cfg, err := configDefault(config...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: invalid config: %w", err)
	}

	table := qualifiedName(cfg.SchemaName, cfg.TableName)
	pool, ownPool, err := connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open %s: %w", table, err)
	}

	s := &Storage{
		pool:         pool,
		ownPool:      ownPool,
		table:        table,
		sql:          newStatements(table),
		ttl:          cfg.TTL,
		disableTouch: cfg.DisableTouch,
		logger:       cfg.Logger,
		pruning:      make(chan struct{}, 1),
		pruneLock:    "pgstore prune " + table,
		typedArgs:    typedArgs(pool.Config().ConnConfig.DefaultQueryExecMode),
	}
	if err := prepareTable(ctx, pool, cfg, table); err != nil {
		if ownPool {
			pool.Close()
		}
		return nil, err
	}

	s.startBatchers(cfg.DisableBatching)
	s.closing, s.stopClosing = context.WithCancel(context.Background())
	s.pruner = newPruner(s, cfg)
	return s, nil
}

// connect returns the pool the Config names, the first one set winning:
// Pool, ConnString, PoolConfig, the DATABASE_URL environment variable, then
// pgx's defaults with the libpq PG* environment variables. ownPool reports
// whether the store made the pool.
func connect(ctx context.Context, cfg Config) (pool *pgxpool.Pool, ownPool bool, err error) {
	if cfg.Pool != nil {
		return cfg.Pool, false, nil
	}

	var poolConfig *pgxpool.Config
	switch {
	case cfg.ConnString != "":
		poolConfig, err = pgxpool.ParseConfig(cfg.ConnString)
		if err != nil {
			return nil, false, parseError("Config.ConnString", err)
		}
	case cfg.PoolConfig != nil:
		poolConfig = cfg.PoolConfig.Copy()
	default:
		poolConfig, err = pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
		if err != nil {
			return nil, false, parseError("DATABASE_URL", err)
		}
	}

	pool, err = pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, false, fmt.Errorf("create pool: %w", err)
	}
	return pool, true, nil
}

// parseError reports a connection string that pgx could not parse. pgx's
// message quotes the string, and may show a password it could not find to
// mask, so only pgx's error type survives, for errors.As, not its text.
func parseError(source string, err error) error {
	return fmt.Errorf("%s is not a valid connection string "+
		"(pgx's message is left out: it quotes the string, password and all): %w",
		source, opaqueError{err})
}

// opaqueError hides the text of the error it wraps but not the error itself.
type opaqueError struct{ err error }

func (e opaqueError) Error() string { return "invalid connection string" }
func (e opaqueError) Unwrap() error { return e.err }

// qualifiedName quotes schema and table as SQL identifiers, leaving the
// schema out when it is empty.
func qualifiedName(schema, table string) string {
	if schema == "" {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}

// Conn returns the pool the store uses, for the caller's own queries.
func (s *Storage) Conn() *pgxpool.Pool {
	return s.pool
}

// begin registers an operation, or returns ErrClosed after Close. Every
// begin that succeeds is paired with s.ops.Done.
func (s *Storage) begin(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()

	if s.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.ops.Add(1)
	return nil
}

// Get returns the value of key, or nil and no error when key is missing or
// expired. It uses context.Background.
func (s *Storage) Get(key string) ([]byte, error) {
	return s.GetWithContext(context.Background(), key)
}

// GetWithContext returns the value of key, or nil and no error when key is
// missing or expired. A stored empty value is returned as a non-nil empty
// slice. An empty key returns nil and no error.
func (s *Storage) GetWithContext(ctx context.Context, key string) ([]byte, error) {
	if err := s.begin(ctx); err != nil {
		return nil, s.wrap("get", err)
	}
	defer s.ops.Done()

	if key == "" {
		return nil, nil
	}
	c := newCall(key, nil, 0)
	if err := s.gets.do(ctx, c); err != nil {
		// A caller that left early must not read c: a batch may still
		// be writing to it.
		c.free()
		return nil, s.wrap("get", err)
	}
	value := c.result
	c.free()
	return value, nil
}

// Set stores value under key with expiry exp. It uses context.Background.
func (s *Storage) Set(key string, value []byte, exp time.Duration) error {
	return s.SetWithContext(context.Background(), key, value, exp)
}

// SetWithContext stores value under key, replacing any earlier value, to
// expire exp after the database's current time. An exp of 0 or less means
// Config.TTL, and when that is 0 too the key never expires. A nil or empty
// value is stored as an empty value. An empty key is ignored. SetWithContext
// returns once the row is committed.
func (s *Storage) SetWithContext(ctx context.Context, key string, value []byte, exp time.Duration) error {
	if err := s.begin(ctx); err != nil {
		return s.wrap("set", err)
	}
	defer s.ops.Done()

	if key == "" {
		return nil
	}
	if value == nil {
		value = []byte{}
	}
	c := newCall(key, value, s.expiry(exp))
	err := s.sets.do(ctx, c)
	c.free()
	if err != nil {
		return s.wrap("set", err)
	}
	return nil
}

// Delete removes key. It uses context.Background.
func (s *Storage) Delete(key string) error {
	return s.DeleteWithContext(context.Background(), key)
}

// DeleteWithContext removes key. A missing key or an empty key is not an
// error.
func (s *Storage) DeleteWithContext(ctx context.Context, key string) error {
	if err := s.begin(ctx); err != nil {
		return s.wrap("delete", err)
	}
	defer s.ops.Done()

	if key == "" {
		return nil
	}
	c := newCall(key, nil, 0)
	err := s.deletes.do(ctx, c)
	c.free()
	if err != nil {
		return s.wrap("delete", err)
	}
	return nil
}

// Touch moves the expiry of key. It uses context.Background.
func (s *Storage) Touch(key string, exp time.Duration) error {
	return s.TouchWithContext(context.Background(), key, exp)
}

// TouchWithContext sets the expiry of a live key to exp after the database's
// current time, without rewriting its value; exp is read as in
// SetWithContext. A missing or expired key is left as it is: Touch never
// brings an expired key back. It does nothing when Config.DisableTouch is set
// or key is empty.
func (s *Storage) TouchWithContext(ctx context.Context, key string, exp time.Duration) error {
	if err := s.begin(ctx); err != nil {
		return s.wrap("touch", err)
	}
	defer s.ops.Done()

	if key == "" || s.disableTouch {
		return nil
	}
	c := newCall(key, nil, s.expiry(exp))
	err := s.touches.do(ctx, c)
	c.free()
	if err != nil {
		return s.wrap("touch", err)
	}
	return nil
}

// Reset deletes every key of the store's table. It uses context.Background.
func (s *Storage) Reset() error {
	return s.ResetWithContext(context.Background())
}

// ResetWithContext deletes every row of the store's table, and nothing
// else. It uses DELETE, not TRUNCATE, so the DELETE privilege suffices.
func (s *Storage) ResetWithContext(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return s.wrap("reset", err)
	}
	defer s.ops.Done()

	if _, err := s.pool.Exec(ctx, s.sql.reset); err != nil {
		return s.wrap("reset", err)
	}
	return nil
}

// Close stops the background pruner, cancels a prune in flight and waits for
// it and for every other operation in flight, then closes the pool if the
// store made it. A pool given in Config.Pool stays open. Close may be called
// more than once and from many goroutines; every call returns once the store
// has shut down. After Close every operation returns ErrClosed.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()

		s.stopClosing()
		s.pruner.stop()
		s.ops.Wait()
		if s.ownPool {
			s.pool.Close()
		}
	})
	return nil
}

// never is the expiry, in microseconds, of a key that never expires.
const never = -1

// expiry turns the exp given to Set or Touch into the microseconds to add to
// the database's now(), or never.
func (s *Storage) expiry(exp time.Duration) int64 {
	if exp <= 0 {
		exp = s.ttl
	}
	if exp <= 0 {
		return never
	}
	// Round up, so that a positive exp never becomes an expiry of now.
	micros := int64(exp / time.Microsecond)
	if exp%time.Microsecond != 0 {
		micros++
	}
	return micros
}

// wrap names the operation and the table in err, keeping it testable with
// errors.Is and errors.As.
func (s *Storage) wrap(op string, err error) error {
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("pgstore: %s %s: %w", op, s.table, err)
}

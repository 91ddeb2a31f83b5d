package pgstore

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures a Storage. The zero value is usable: it connects through
// DATABASE_URL or the libpq PG* environment variables, uses the table
// "session" found through the connection's search_path, and prunes expired
// keys about once a minute. Field comments name the connect-pg-simple option
// each field stands for.
type Config struct {
	// Pool is an existing pool to use (connect-pg-simple: pool). The caller
	// owns it: Close leaves it open. When set, ConnString and PoolConfig are
	// ignored.
	//
	// Optional. Default is nil.
	Pool *pgxpool.Pool

	// ConnString is a PostgreSQL URL or key=value string to connect with
	// (connect-pg-simple: conString). Used when Pool is nil.
	//
	// Optional. Default is "".
	ConnString string

	// PoolConfig is a parsed pool configuration to connect with
	// (connect-pg-simple: conObject). Used when Pool is nil and ConnString is
	// empty. The store copies it; the caller may reuse it.
	//
	// Optional. Default is nil.
	PoolConfig *pgxpool.Config

	// SchemaName is the schema of the table (connect-pg-simple: schemaName).
	// It is a quoted identifier: case and every character are kept. When
	// empty, the connection's search_path decides.
	//
	// Optional. Default is "".
	SchemaName string

	// TableName is the table that holds the keys (connect-pg-simple:
	// tableName). It is a quoted identifier: case and every character are
	// kept. At most 63 bytes, PostgreSQL's limit for a name.
	//
	// Optional. Default is "session".
	TableName string

	// CreateTableIfMissing makes Open create the table and its index from
	// table.sql when the table does not exist (connect-pg-simple:
	// createTableIfMissing). It is safe when many processes start at once.
	// When false and the table is missing, Open fails.
	//
	// Optional. Default is false.
	CreateTableIfMissing bool

	// Unlogged makes CreateTableIfMissing create an UNLOGGED table. Writes
	// to it skip the write-ahead log, so Set is faster, but PostgreSQL
	// empties the table after a crash or an immediate shutdown, and the
	// table is not copied to replicas (its rows cannot be read there, and
	// a failover loses them). Choose it for data that may be lost: a cache,
	// rate-limit counters, sessions whose loss only logs users out. It has
	// no effect on a table that already exists.
	//
	// Optional. Default is false.
	Unlogged bool

	// DisableBatching makes every operation run as a statement of its own.
	// By default, operations of one kind that arrive while the store's
	// statements of that kind are all in flight are grouped into the next
	// statement (see the README's "Group commit").
	//
	// Optional. Default is false.
	DisableBatching bool

	// TTL is the expiry of a key that Set is given with exp 0 or less
	// (connect-pg-simple: ttl). When TTL is 0 too, such keys never expire.
	// It must not be negative.
	//
	// Optional. Default is 0.
	TTL time.Duration

	// DisableTouch makes Touch and TouchWithContext do nothing
	// (connect-pg-simple: disableTouch).
	//
	// Optional. Default is false.
	DisableTouch bool

	// PruneInterval is the base interval between automatic prunes
	// (connect-pg-simple: pruneSessionInterval). PruneDelay turns it into
	// the actual wait. Zero means the default; it must not be negative.
	//
	// Optional. Default is 60 seconds.
	PruneInterval time.Duration

	// DisablePrune turns automatic pruning off (connect-pg-simple:
	// pruneSessionInterval set to false). Expired keys are then never
	// returned but stay in the table until Prune is called.
	//
	// Optional. Default is false.
	DisablePrune bool

	// PruneDelay maps PruneInterval to the wait before each automatic prune
	// (connect-pg-simple: pruneSessionRandomizedInterval). RandomDelay
	// spreads the prunes of many processes; ExactDelay keeps the interval
	// as it is; any other function may be given. A result of zero or less
	// is treated as PruneInterval.
	//
	// Optional. Default is RandomDelay.
	PruneDelay func(interval time.Duration) time.Duration

	// Logger receives what cannot be returned to a caller, such as the
	// failure of an automatic prune (connect-pg-simple: errorLog).
	//
	// Optional. Default is slog.Default().
	Logger *slog.Logger
}

// ConfigDefault is the configuration New and Open start from. Fields of the
// given Config that are left at their zero value take the value here.
var ConfigDefault = Config{
	TableName:     "session",
	PruneInterval: 60 * time.Second,
	PruneDelay:    RandomDelay,
}

// RandomDelay returns a duration drawn uniformly from 50 % to 150 % of d, so
// that processes started together do not prune together. It is the default
// Config.PruneDelay.
func RandomDelay(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	// Beyond this, 150 % of d does not fit in a Duration; such a delay is
	// forever all the same.
	d = min(d, math.MaxInt64/2)
	return d/2 + rand.N(d+1)
}

// ExactDelay returns d unchanged. Set Config.PruneDelay to it to prune at
// exactly Config.PruneInterval.
func ExactDelay(d time.Duration) time.Duration {
	return d
}

// maxIdentifierLength is PostgreSQL's NAMEDATALEN - 1: longer names are
// silently truncated by the server.
const maxIdentifierLength = 63

// configDefault returns the first config, if any, with its zero fields set
// from ConfigDefault, or an error naming the first invalid field.
func configDefault(config ...Config) (Config, error) {
	cfg := ConfigDefault
	if len(config) > 0 {
		cfg = config[0]
	}

	if cfg.TableName == "" {
		cfg.TableName = ConfigDefault.TableName
	}
	if cfg.PruneInterval == 0 {
		cfg.PruneInterval = ConfigDefault.PruneInterval
	}
	if cfg.PruneDelay == nil {
		cfg.PruneDelay = ConfigDefault.PruneDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	if err := checkIdentifier("TableName", cfg.TableName); err != nil {
		return cfg, err
	}
	if cfg.SchemaName != "" {
		if err := checkIdentifier("SchemaName", cfg.SchemaName); err != nil {
			return cfg, err
		}
	}
	if cfg.TTL < 0 {
		return cfg, fmt.Errorf("TTL is %v; it must not be negative", cfg.TTL)
	}
	if cfg.PruneInterval < 0 {
		return cfg, fmt.Errorf("PruneInterval is %v; it must not be negative", cfg.PruneInterval)
	}
	return cfg, nil
}

// checkIdentifier refuses the names PostgreSQL would not keep exactly as
// given.
func checkIdentifier(field, name string) error {
	switch {
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte, which PostgreSQL names cannot hold", field, name)
	case len(name) > maxIdentifierLength:
		return fmt.Errorf("%s %q is %d bytes long; PostgreSQL keeps at most %d",
			field, name, len(name), maxIdentifierLength)
	}
	return nil
}

// Package bench compares pgstore with Fiber's own PostgreSQL driver and with
// raw pgx, on one database and with pools of one size. See README.md.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore/internal/devdb"
)

// databaseEnv names the environment variables that may give the database,
// first one set winning. With none set, devdb starts a throwaway server.
var databaseEnv = []string{
	"PGSTORE_BENCH_DATABASE_URL",
	"PGSTORE_TEST_DATABASE_URL",
	"DATABASE_URL",
}

// maxConns is the pool size of every store under test.
const maxConns = 32

// setupTimeout bounds finding the database and dropping the tables.
const setupTimeout = 2 * time.Minute

var (
	// databaseURL is where every store connects. It may hold a password, so
	// it is never printed.
	databaseURL string

	// adminPool creates, loads, checks and drops the tables; the stores
	// under test never share it.
	adminPool *pgxpool.Pool

	// tableSuffix keeps the tables of two runs on one database apart.
	tableSuffix = strconv.Itoa(os.Getpid())

	// madeTables lists the tables to drop when the run ends.
	madeTables []pgx.Identifier
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain finds the database, runs the benchmarks, and then closes the
// store left open and drops every table the run made.
func runMain(m *testing.M) int {
	// The package holds benchmarks only: without -bench there is nothing
	// to run, and no database to find or start.
	flag.Parse()
	if bench := flag.Lookup("test.bench"); bench == nil || bench.Value.String() == "" {
		return m.Run()
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	db, err := devdb.Find(ctx, databaseEnv...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer db.Close()

	if err := connectAdmin(ctx, db); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer adminPool.Close()

	code := m.Run()

	closeCurrentStore()
	if err := dropTables(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	return code
}

// connectAdmin opens adminPool on db and prints, as benchmark
// configuration lines that benchstat keeps, where the database came from
// and the server's version.
func connectAdmin(ctx context.Context, db *devdb.Database) error {
	databaseURL = db.URL

	config, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse the database URL from %s: %w", db.Source, err)
	}
	config.MaxConns = 4
	adminPool, err = pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	var version, fsync, syncCommit string
	err = adminPool.QueryRow(ctx, `SELECT current_setting('server_version'),
		current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&version, &fsync, &syncCommit)
	if err != nil {
		adminPool.Close()
		return fmt.Errorf("connect to the database from %s: %w", db.Source, err)
	}
	// A throwaway cluster runs with fsync off, which flatters every Set:
	// the lines below say so in the results, and the README asks for a
	// server with fsync and synchronous_commit on for published figures.
	fmt.Printf("database: %s\npostgres: %s\nfsync: %s\nsynchronous_commit: %s\nmaxconns: %d\n",
		db.Source, version, fsync, syncCommit, maxConns)
	return nil
}

// benchTable returns the name of a table of this run and records it to be
// dropped at the end.
func benchTable(schema, store string) pgx.Identifier {
	name := "pgstore_bench_" + store + "_" + tableSuffix
	table := pgx.Identifier{name}
	if schema != "" {
		table = pgx.Identifier{schema, name}
	}
	madeTables = append(madeTables, table)
	return table
}

// dropTables drops every table the run made.
func dropTables() error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	var errs []error
	for _, table := range madeTables {
		if _, err := adminPool.Exec(ctx, `DROP TABLE IF EXISTS `+table.Sanitize()); err != nil {
			errs = append(errs, fmt.Errorf("drop table %s: %w", table.Sanitize(), err))
		}
	}
	madeTables = nil
	return errors.Join(errs...)
}

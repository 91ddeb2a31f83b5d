package devdb

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// findTimeout bounds the search for a database, a container or cluster
// start included.
const findTimeout = 3 * time.Minute

// RunTests is the body of a TestMain whose tests need PostgreSQL. It finds a
// database as Find does, from PGSTORE_TEST_DATABASE_URL, then DATABASE_URL,
// then a container or a local cluster; connects a pool to it; hands both to
// use; runs the tests; and removes what it started. Without a database it
// reports why and fails, or, under -short, skips every test. It returns the
// exit code for os.Exit.
func RunTests(m *testing.M, use func(url string, pool *pgxpool.Pool)) int {
	// testing.Short needs the flags parsed, which m.Run would do later.
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), findTimeout)
	defer cancel()

	db, err := Find(ctx, "PGSTORE_TEST_DATABASE_URL", "DATABASE_URL")
	if err != nil {
		if testing.Short() {
			fmt.Fprintln(os.Stderr, "skipping the database tests under -short:", err)
			return 0
		}
		fmt.Fprintln(os.Stderr, "these tests need PostgreSQL:", err)
		return 1
	}
	defer db.Close()

	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "connect to the test database from %s: %v\n", db.Source, err)
		return 1
	}
	defer pool.Close()

	use(db.URL, pool)
	return m.Run()
}

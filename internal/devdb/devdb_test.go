package devdb_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgstore/pgstore/internal/devdb"
)

func TestFindReturnsFirstSetEnvironmentVariable(t *testing.T) {
	const want = "postgres://someone@127.0.0.1:1/first?sslmode=disable"
	t.Setenv("PGSTORE_TEST_DATABASE_URL", want)
	t.Setenv("DATABASE_URL", "postgres://someone@127.0.0.1:1/second")

	db := find(t, "PGSTORE_TEST_DATABASE_URL", "DATABASE_URL")

	if db.URL != want {
		t.Errorf("URL: got %q, want %q", db.URL, want)
	}
	if db.Source != "PGSTORE_TEST_DATABASE_URL" {
		t.Errorf("Source: got %q, want %q", db.Source, "PGSTORE_TEST_DATABASE_URL")
	}
}

func TestFindSkipsEmptyEnvironmentVariable(t *testing.T) {
	const want = "postgres://someone@127.0.0.1:1/second?sslmode=disable"
	t.Setenv("PGSTORE_TEST_DATABASE_URL", "")
	t.Setenv("DATABASE_URL", want)

	db := find(t, "PGSTORE_TEST_DATABASE_URL", "DATABASE_URL")

	if db.URL != want || db.Source != "DATABASE_URL" {
		t.Errorf("got %q from %s, want %q from DATABASE_URL", db.URL, db.Source, want)
	}
}

func TestCloseOfEnvironmentDatabaseDoesNothing(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://someone@127.0.0.1:1/db")
	db := find(t, "DATABASE_URL")

	for i := range 2 {
		if err := db.Close(); err != nil {
			t.Fatalf("Close %d: got %v, want nil", i+1, err)
		}
	}
}

func TestStartLocalClusterServesUntilClose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	started := time.Now()
	db, err := devdb.StartLocalCluster(ctx)
	if err != nil {
		t.Fatalf("StartLocalCluster: %v", err)
	}
	t.Logf("cluster started in %v", time.Since(started).Round(time.Millisecond))
	dir := devdb.Dir(db)
	t.Cleanup(func() { _ = db.Close() })

	if db.Source != devdb.SourceLocalCluster {
		t.Errorf("Source: got %q, want %q", db.Source, devdb.SourceLocalCluster)
	}
	if got := selectOne(ctx, t, db.URL); got != 1 {
		t.Errorf("SELECT 1: got %d, want 1", got)
	}

	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}

	for _, path := range []string{filepath.Join(dir, "data"), dir} {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %s after Close: got %v, want not exist", path, err)
		}
	}
	if conn, err := connect(ctx, db.URL); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("connect after Close: got nil error, want refused")
	}
}

func TestFindStartsServerWithoutEnvironmentVariables(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	db, err := devdb.Find(ctx)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	t.Logf("Find started a server from %s", db.Source)

	if got := selectOne(ctx, t, db.URL); got != 1 {
		t.Errorf("SELECT 1: got %d, want 1", got)
	}
}

// find calls devdb.Find and closes the database when the test ends.
func find(t *testing.T, envVars ...string) *devdb.Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	db, err := devdb.Find(ctx, envVars...)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// selectOne runs SELECT 1 on a new connection to url.
func selectOne(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	conn, err := connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()

	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("SELECT 1: %v", err)
	}
	return one
}

// connect opens a connection to url, giving up after five seconds.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgx.Connect(ctx, url)
}

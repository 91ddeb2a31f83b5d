package devdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Sources that [Database.Source] reports for servers that devdb starts.
// A database found through an environment variable reports that
// variable's name instead.
const (
	SourceDocker       = "docker"
	SourceLocalCluster = "local cluster"
)

// ErrNoServer is wrapped by the error of [Find] when no environment
// variable is set and neither a Docker container nor a local cluster could
// be started. Tests may check for it with [errors.Is] to skip.
var ErrNoServer = errors.New("devdb: no PostgreSQL server available")

// Database is a PostgreSQL server found or started for development and
// tests.
type Database struct {
	// URL connects to the database, for example
	// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	// It may hold a password when it came from an environment variable,
	// so it is never put into an error message.
	URL string

	// Source says where URL came from: the name of the environment
	// variable, SourceDocker or SourceLocalCluster.
	Source string

	// dir is the temporary directory of a local cluster, else empty.
	dir string

	stop      func() error
	closeOnce sync.Once
	closeErr  error
}

// Find returns the first database it can get, trying in order:
//
//  1. the environment variables named by envVars, in the order given;
//     the first one set to a non-empty value is used as is;
//  2. a PostgreSQL container, when a Docker daemon answers
//     (see [StartContainer]);
//  3. a throwaway local cluster, when initdb and pg_ctl are installed
//     (see [StartLocalCluster]).
//
// The pgstore tests pass "PGSTORE_TEST_DATABASE_URL", "DATABASE_URL";
// the example program passes "DATABASE_URL".
//
// When everything fails, the error wraps [ErrNoServer], names the ways to
// provide a server and says why each automatic way failed. The caller
// must call [Database.Close] on the returned database.
func Find(ctx context.Context, envVars ...string) (*Database, error) {
	for _, name := range envVars {
		if url := os.Getenv(name); url != "" {
			return &Database{URL: url, Source: name}, nil
		}
	}

	db, dockerErr := startContainer(ctx)
	if dockerErr == nil {
		return db, nil
	}

	db, clusterErr := startLocalCluster(ctx)
	if clusterErr == nil {
		return db, nil
	}

	return nil, fmt.Errorf("%w (%s): docker: %w; local cluster: %w",
		ErrNoServer, remedies(envVars), dockerErr, clusterErr)
}

// remedies lists what a user can do to give Find a server.
func remedies(envVars []string) string {
	const automatic = "run a Docker daemon, or install the PostgreSQL " +
		"server binaries (initdb, pg_ctl)"
	if len(envVars) == 0 {
		return automatic
	}
	return "set " + strings.Join(envVars, " or ") + ", " + automatic
}

// Close stops and removes the container or cluster that devdb started,
// with everything in it. For a database found through an environment
// variable it does nothing. Close is safe to call more than once and from
// several goroutines; later calls return the result of the first.
func (d *Database) Close() error {
	d.closeOnce.Do(func() {
		if d.stop != nil {
			d.closeErr = d.stop()
		}
	})
	return d.closeErr
}

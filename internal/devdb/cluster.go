package devdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// clusterUser is the superuser that initdb creates and, when devdb
	// runs as root, the OS user that runs the server.
	clusterUser = "postgres"

	// serverBinGlob matches the binary directories of Debian and Ubuntu
	// PostgreSQL packages, one per major version.
	serverBinGlob = "/usr/lib/postgresql/*/bin"

	// stopTimeout bounds pg_ctl stop in Close.
	stopTimeout = 30 * time.Second

	// logTailBytes is how much of a log an error quotes at most.
	logTailBytes = 4 << 10
)

// StartLocalCluster creates a throwaway PostgreSQL cluster in a new
// temporary directory and returns once its server accepts connections.
//
// It uses the initdb and pg_ctl found on PATH, else those of the highest
// version under /usr/lib/postgresql/*/bin. The server listens on a free
// port of 127.0.0.1 only, puts its Unix socket in the temporary
// directory, trusts every connection and runs with fsync off. Its URL
// names user and database postgres. When the process runs as root, which
// initdb refuses, the binaries run as the OS user postgres through
// runuser, and the temporary directory is handed to that user.
//
// On failure nothing is left behind, and the error quotes the output of
// initdb or the server log. [Database.Close] stops the server
// (pg_ctl stop -m immediate) and removes the directory.
//
// TODO: a cluster whose Close never runs (a killed test binary) keeps
// running; there is no safety net as for containers.
func StartLocalCluster(ctx context.Context) (*Database, error) {
	db, err := startLocalCluster(ctx)
	if err != nil {
		return nil, fmt.Errorf("devdb: local cluster: %w", err)
	}
	return db, nil
}

func startLocalCluster(ctx context.Context) (*Database, error) {
	binDir, err := findServerBinaries()
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "pgstore-devdb-")
	if err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}

	c := &cluster{binDir: binDir, dir: dir}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.destroy())
	}

	db := &Database{
		URL:    c.url(),
		Source: SourceLocalCluster,
		dir:    dir,
		stop:   c.destroy,
	}
	return db, nil
}

// findServerBinaries returns the directory that holds both initdb and
// pg_ctl: that of initdb on PATH, else the highest version under
// serverBinGlob.
func findServerBinaries() (string, error) {
	var candidates []string
	if initdb, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(initdb))
	}
	candidates = append(candidates, versionDirsNewestFirst()...)

	for _, dir := range candidates {
		if isExecutable(dir, "initdb") && isExecutable(dir, "pg_ctl") {
			return dir, nil
		}
	}
	return "", fmt.Errorf("initdb and pg_ctl found neither on PATH nor in %s",
		serverBinGlob)
}

// versionDirsNewestFirst returns the matches of serverBinGlob, highest
// major version first.
func versionDirsNewestFirst() []string {
	dirs, _ := filepath.Glob(serverBinGlob) // The pattern is valid.

	version := func(dir string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	return dirs
}

// isExecutable reports whether dir holds an executable file name.
func isExecutable(dir, name string) bool {
	_, err := exec.LookPath(filepath.Join(dir, name))
	return err == nil
}

// cluster is a throwaway PostgreSQL cluster. Its directory holds the data
// directory, the server log and the Unix socket.
type cluster struct {
	binDir string
	dir    string
	port   int

	// runuser is the path of runuser when the binaries must run as
	// clusterUser, else empty.
	runuser string
}

func (c *cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *cluster) logFile() string { return filepath.Join(c.dir, "postgres.log") }

// url is the URL of the cluster's postgres database.
func (c *cluster) url() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(clusterUser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// start creates the cluster and starts its server.
func (c *cluster) start(ctx context.Context) error {
	if os.Geteuid() == 0 {
		if err := c.dropRoot(); err != nil {
			return err
		}
	}

	initdb := c.command(ctx, "initdb",
		"--pgdata="+c.dataDir(),
		"--username="+clusterUser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", commandError(ctx, err), tail(out))
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port

	if err := c.configure(); err != nil {
		return err
	}

	pgctl := c.command(ctx, "pg_ctl", "start",
		"--pgdata="+c.dataDir(),
		"--log="+c.logFile(),
		"--wait",
	)
	if out, err := pgctl.CombinedOutput(); err != nil {
		serverLog, _ := os.ReadFile(c.logFile())
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s",
			commandError(ctx, err), tail(out), tail(serverLog))
	}
	return nil
}

// dropRoot prepares the binaries to run as clusterUser, because initdb
// and postgres refuse to run as root.
func (c *cluster) dropRoot() error {
	runuser, err := exec.LookPath("runuser")
	if err != nil {
		return fmt.Errorf("running as root needs runuser: %w", err)
	}

	account, err := user.Lookup(clusterUser)
	if err != nil {
		return fmt.Errorf("running as root needs OS user %s: %w", clusterUser, err)
	}
	uid, _ := strconv.Atoi(account.Uid) // Numeric on Unix.
	gid, _ := strconv.Atoi(account.Gid)
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return fmt.Errorf("hand directory to %s: %w", clusterUser, err)
	}

	c.runuser = runuser
	return nil
}

// configure appends the server settings to postgresql.conf.
func (c *cluster) configure() error {
	settings := []string{
		"listen_addresses = " + quoteSetting("127.0.0.1"),
		"port = " + strconv.Itoa(c.port),
		"unix_socket_directories = " + quoteSetting(c.dir),
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
	}

	conf := filepath.Join(c.dataDir(), "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure server: %w", err)
	}
	_, err = io.WriteString(f, "\n"+strings.Join(settings, "\n")+"\n")
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("configure server: %w", err)
	}
	return nil
}

// destroy stops the server if it runs and removes the directory.
func (c *cluster) destroy() error {
	var stopErr error
	pidFile := filepath.Join(c.dataDir(), "postmaster.pid")
	if _, err := os.Stat(pidFile); err == nil {
		stopErr = c.stop()
	}

	if err := os.RemoveAll(c.dir); err != nil {
		return errors.Join(stopErr, fmt.Errorf("devdb: remove cluster: %w", err))
	}
	return stopErr
}

// stop stops the server without a shutdown checkpoint and waits until
// it has exited.
func (c *cluster) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()

	pgctl := c.command(ctx, "pg_ctl", "stop",
		"--pgdata="+c.dataDir(),
		"--mode=immediate",
		"--wait",
	)
	if out, err := pgctl.CombinedOutput(); err != nil {
		return fmt.Errorf("devdb: pg_ctl stop: %w\n%s", err, tail(out))
	}
	return nil
}

// command prepares the PostgreSQL binary name to run in the cluster's
// directory, as clusterUser when c.runuser is set. When ctx is done the
// command gets SIGTERM, which runuser passes on.
func (c *cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.binDir, name)
	if c.runuser != "" {
		args = append([]string{"-u", clusterUser, "--", path}, args...)
		path = c.runuser
	}

	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = c.dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// commandError returns the error of a command, which also matches
// ctx.Err() when the command was stopped because ctx is done.
func commandError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	return err
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
//
// TODO: another process may take the port before the server binds it;
// pg_ctl start then fails and the caller sees the server log.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// quoteSetting quotes s as a postgresql.conf string value.
func quoteSetting(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// tail returns the end of a command output or log, trimmed, at most
// logTailBytes long.
func tail(out []byte) string {
	out = bytes.TrimSpace(out)
	if len(out) > logTailBytes {
		out = append([]byte("..."), out[len(out)-logTailBytes:]...)
	}
	return string(out)
}

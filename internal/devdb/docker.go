package devdb

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// The container that StartContainer runs.
const (
	imageRepository = "postgres"
	imageTag        = "16-alpine"

	// containerLifetime is how long a container lives at most, so that
	// one whose Close never ran (a killed test binary) goes away anyway.
	containerLifetime = 10 * time.Minute

	// pingTimeout bounds the wait for the Docker daemon to answer.
	pingTimeout = 5 * time.Second

	// readyTimeout bounds the wait for the server in a started
	// container to accept connections, image pull excluded.
	readyTimeout = time.Minute
)

// StartContainer runs a throwaway PostgreSQL server (image
// postgres:16-alpine) in a Docker container and returns once it accepts
// connections. It uses the daemon that DOCKER_HOST names, else the local
// default socket, and pulls the image when it is missing.
//
// The server trusts every connection, publishes its port on 127.0.0.1
// only, and its URL names user and database postgres. The container
// removes itself when it stops, and the daemon stops it after ten minutes
// even if [Database.Close] never runs.
//
// It returns an error when the daemon does not answer or the server does
// not become ready within a minute or before ctx is done.
//
// TODO: a daemon on another machine (DOCKER_HOST=tcp://...) is not
// supported: the URL always points at 127.0.0.1.
func StartContainer(ctx context.Context) (*Database, error) {
	db, err := startContainer(ctx)
	if err != nil {
		return nil, fmt.Errorf("devdb: docker: %w", err)
	}
	return db, nil
}

func startContainer(ctx context.Context) (*Database, error) {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, fmt.Errorf("connect to daemon: %w", err)
	}

	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := pool.Client.PingWithContext(pingCtx); err != nil {
		return nil, fmt.Errorf("daemon does not answer: %w", err)
	}

	resource, err := pool.RunWithOptions(containerOptions(), removeOnStop)
	if err != nil {
		return nil, fmt.Errorf("run %s:%s: %w", imageRepository, imageTag, err)
	}

	// dockertest creates containers with stop signal SIGWINCH, which
	// PostgreSQL ignores, so this stop only kills once the timeout ends.
	if err := resource.Expire(uint(containerLifetime / time.Second)); err != nil {
		return nil, errors.Join(fmt.Errorf("set expiry: %w", err), purge(pool, resource))
	}

	dbURL := containerURL(resource.GetHostPort("5432/tcp"))
	if err := waitReady(ctx, pool, dbURL); err != nil {
		return nil, errors.Join(err, purge(pool, resource))
	}

	db := &Database{
		URL:    dbURL,
		Source: SourceDocker,
		stop:   func() error { return purge(pool, resource) },
	}
	return db, nil
}

// containerOptions describes the PostgreSQL container.
func containerOptions() *dockertest.RunOptions {
	return &dockertest.RunOptions{
		Repository: imageRepository,
		Tag:        imageTag,
		Env:        []string{"POSTGRES_HOST_AUTH_METHOD=trust"},
		Cmd: []string{
			"postgres",
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
		},
		PortBindings: map[docker.Port][]docker.PortBinding{
			"5432/tcp": {{HostIP: "127.0.0.1"}},
		},
	}
}

// removeOnStop makes the daemon remove the container once it stops.
func removeOnStop(config *docker.HostConfig) {
	config.AutoRemove = true
	config.RestartPolicy = docker.RestartPolicy{Name: "no"}
}

// containerURL is the URL of the server published at hostPort.
func containerURL(hostPort string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     hostPort,
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// waitReady returns once the server at dbURL accepts a connection, or an
// error after readyTimeout or when ctx is done.
func waitReady(ctx context.Context, pool *dockertest.Pool, dbURL string) error {
	pool.MaxWait = readyTimeout
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < readyTimeout {
		pool.MaxWait = time.Until(deadline)
	}

	err := pool.Retry(func() error {
		if err := ctx.Err(); err != nil {
			return backoff.Permanent(err)
		}
		return ping(ctx, dbURL)
	})
	if err != nil {
		return fmt.Errorf("wait for server: %w", err)
	}
	return nil
}

// ping opens one connection to dbURL and closes it again.
func ping(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// purge removes the container, which is not an error when it is gone
// already.
func purge(pool *dockertest.Pool, resource *dockertest.Resource) error {
	err := pool.Purge(resource)
	if _, gone := errors.AsType[*docker.NoSuchContainer](err); gone {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devdb: remove container %.12s: %w",
			resource.Container.ID, err)
	}
	return nil
}

// Command example is a Fiber v3 app that keeps its sessions in PostgreSQL
// with pgstore. Its page counts the visits of each browser; its log-out
// button destroys the session, which deletes the session's row.
//
// It uses the database that DATABASE_URL names. When DATABASE_URL is not
// set, it starts a throwaway PostgreSQL (a Docker container or a local
// cluster, see internal/devdb) and removes it again on SIGINT or SIGTERM.
// It listens on ADDR, 127.0.0.1:3000 by default:
//
//	go run ./example
//	ADDR=127.0.0.1:8080 DATABASE_URL=postgres://localhost/mydb go run ./example
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v3"
	recoverer "github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/gofiber/fiber/v3/middleware/session"

	"github.com/pgstore/pgstore"
	"github.com/pgstore/pgstore/internal/devdb"
)

// defaultAddr is where the app listens when ADDR is not set.
const defaultAddr = "127.0.0.1:3000"

// shutdownTimeout bounds the wait for requests in flight on shutdown.
const shutdownTimeout = 5 * time.Second

// visitsKey is the session value that counts a browser's visits.
const visitsKey = "visits"

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>pgstore example</title></head>
<body>
<p>Visits from this browser: <strong id="visits">{{.}}</strong></p>
<form method="post" action="/logout"><button>Log out</button></form>
</body>
</html>
`))

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// After the first signal, a second one ends the program at once.
	context.AfterFunc(ctx, stop)

	if err := start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// start finds the database, serves the app until ctx is done and then
// removes the database if it started one.
func start(ctx context.Context) (err error) {
	db, err := devdb.Find(ctx, "DATABASE_URL")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()

	// db.URL is not printed: it may hold a password.
	fmt.Println("sessions are kept in PostgreSQL from", db.Source)

	addr := cmp.Or(os.Getenv("ADDR"), defaultAddr)
	config := pgstore.Config{ConnString: db.URL, CreateTableIfMissing: true}
	return run(ctx, addr, config, func(url string) {
		fmt.Printf("open %s in a browser\n", url)
	})
}

// run opens a store with config, serves the app on addr and calls ready
// with the app's URL once it listens. When ctx is done, it shuts the app
// down, waiting for requests in flight, closes the store and returns.
func run(
	ctx context.Context, addr string, config pgstore.Config, ready func(url string),
) (err error) {
	store, err := pgstore.Open(ctx, config)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, store.Close()) }()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}

	app := newApp(store)
	served := make(chan error, 1)
	go func() {
		served <- app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	}()
	ready("http://" + ln.Addr().String())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	shutdownErr := app.ShutdownWithTimeout(shutdownTimeout)
	// Shutdown closes the listener only once the server serves it; closing
	// it here too ends a server that had not started yet.
	_ = ln.Close()
	return errors.Join(shutdownErr, <-served)
}

// newApp returns the app, with sessions kept in store.
func newApp(store *pgstore.Storage) *fiber.App {
	app := fiber.New(fiber.Config{AppName: "pgstore example"})

	// The session middleware panics when it cannot load a session, such as
	// while the database is down; recoverer turns that into an error
	// response instead of a crash.
	app.Use(recoverer.New())

	// Only the app's own pages get sessions, so that requests for
	// favicon.ico and other missing files leave no rows behind.
	sessions := session.New(session.Config{
		Storage:        store,
		CookieHTTPOnly: true,
	})
	app.Get("/", sessions, countVisit)
	app.Post("/logout", sessions, logOut)
	return app
}

// countVisit adds one to the visits of the browser's session and shows
// them. The middleware saves the session once the handler returns.
func countVisit(c fiber.Ctx) error {
	sess := session.FromContext(c)
	visits, _ := sess.Get(visitsKey).(int)
	visits++
	sess.Set(visitsKey, visits)

	var body bytes.Buffer
	if err := page.Execute(&body, visits); err != nil {
		return err
	}
	return c.Type("html", "utf-8").Send(body.Bytes())
}

// logOut destroys the session, which deletes its row and its cookie, and
// sends the browser back to the page, where a new session starts.
func logOut(c fiber.Ctx) error {
	if err := session.FromContext(c).Destroy(); err != nil {
		return err
	}
	return c.Redirect().To("/")
}

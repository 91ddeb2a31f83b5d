package pgstore_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	fiberv2 "github.com/gofiber/fiber/v2"
	sessionv2 "github.com/gofiber/fiber/v2/middleware/session"
	fiberv3 "github.com/gofiber/fiber/v3"
	sessionv3 "github.com/gofiber/fiber/v3/middleware/session"
	"github.com/jackc/pgx/v5"

	"github.com/pgstore/pgstore"
)

var (
	_ fiberv2.Storage = (*pgstore.Storage)(nil)
	_ fiberv3.Storage = (*pgstore.Storage)(nil)
)

// fiberSessionTimeout is the session expiry of the test apps: Expiration in
// Fiber v2, IdleTimeout in Fiber v3.
const fiberSessionTimeout = time.Hour

// fiberApps serve, for each Fiber version, an app whose page counts the
// visits of a session kept in store, and return the app's URL.
var fiberApps = []struct {
	name  string
	serve func(t *testing.T, store *pgstore.Storage) string
}{
	{"v2", serveFiberV2},
	{"v3", serveFiberV3},
}

func TestFiberSessionCountsVisitsInTheStore(t *testing.T) {
	t.Parallel()
	for _, fiberApp := range fiberApps {
		t.Run(fiberApp.name, func(t *testing.T) {
			t.Parallel()
			table := uniqueName("fiber")
			appURL := fiberApp.serve(t, quietStore(t, pgstore.Config{TableName: table}))

			first := newFiberClient(t)
			for want := 1; want <= 3; want++ {
				if got := fiberVisit(t, first, appURL); got != want {
					t.Fatalf("visit %d of the first client: got count %d, want %d", want, got, want)
				}
			}
			second := newFiberClient(t)
			if got := fiberVisit(t, second, appURL); got != 1 {
				t.Fatalf("first visit of the second client: got count %d, want 1", got)
			}

			for i, client := range []*http.Client{first, second} {
				id := fiberSessionID(t, client, appURL)
				if _, found := fiberRowExpiry(t, table, id); !found {
					t.Errorf("row of client %d's session %q: got none, want one", i+1, id)
				}
			}
			var rows int
			err := adminPool.QueryRow(testContext(t),
				"SELECT count(*) FROM "+tableName("", table)).Scan(&rows)
			if err != nil {
				t.Fatalf("count rows: %v", err)
			}
			if rows != 2 {
				t.Errorf("rows after two clients: got %d, want 2", rows)
			}
		})
	}
}

func TestFiberSessionSlidesItsExpiryOnEachVisit(t *testing.T) {
	t.Parallel()
	for _, fiberApp := range fiberApps {
		t.Run(fiberApp.name, func(t *testing.T) {
			t.Parallel()
			table := uniqueName("fiber")
			appURL := fiberApp.serve(t, quietStore(t, pgstore.Config{TableName: table}))
			client := newFiberClient(t)

			fiberVisit(t, client, appURL)
			id := fiberSessionID(t, client, appURL)
			first, found := fiberRowExpiry(t, table, id)
			if !found {
				t.Fatalf("row of session %q after visit 1: got none, want one", id)
			}
			low, high := fiberSessionTimeout-time.Minute, fiberSessionTimeout
			if first.left < low || first.left > high {
				t.Errorf("expiry after visit 1: got %v from now, want between %v and %v",
					first.left, low, high)
			}

			time.Sleep(1100 * time.Millisecond)
			if got := fiberVisit(t, client, appURL); got != 2 {
				t.Fatalf("visit 2: got count %d, want 2", got)
			}
			second, found := fiberRowExpiry(t, table, id)
			if !found {
				t.Fatalf("row of session %q after visit 2: got none, want one", id)
			}
			if !second.at.After(first.at) {
				t.Errorf("expires_at after visit 2: got %v, want later than %v of visit 1",
					second.at, first.at)
			}
		})
	}
}

// serveFiberV2 serves a Fiber v2 app that counts visits with the session
// store of Fiber v2, and returns the app's URL.
func serveFiberV2(t *testing.T, store *pgstore.Storage) string {
	t.Helper()
	sessions := sessionv2.New(sessionv2.Config{Storage: store, Expiration: fiberSessionTimeout})

	app := fiberv2.New(fiberv2.Config{DisableStartupMessage: true})
	app.Get("/", func(c *fiberv2.Ctx) error {
		sess, err := sessions.Get(c)
		if err != nil {
			return err
		}
		visits, _ := sess.Get("visits").(int)
		visits++
		sess.Set("visits", visits)
		if err := sess.Save(); err != nil {
			return err
		}
		return c.SendString(strconv.Itoa(visits))
	})

	return serveFiber(t, app.Listener, func() error {
		return app.ShutdownWithTimeout(5 * time.Second)
	})
}

// serveFiberV3 serves a Fiber v3 app that counts visits with the session
// middleware of Fiber v3, and returns the app's URL.
func serveFiberV3(t *testing.T, store *pgstore.Storage) string {
	t.Helper()
	app := fiberv3.New()
	app.Use(sessionv3.New(sessionv3.Config{Storage: store, IdleTimeout: fiberSessionTimeout}))
	app.Get("/", func(c fiberv3.Ctx) error {
		sess := sessionv3.FromContext(c)
		visits, _ := sess.Get("visits").(int)
		visits++
		sess.Set("visits", visits)
		return c.SendString(strconv.Itoa(visits))
	})

	listen := func(ln net.Listener) error {
		return app.Listener(ln, fiberv3.ListenConfig{DisableStartupMessage: true})
	}
	return serveFiber(t, listen, func() error {
		return app.ShutdownWithTimeout(5 * time.Second)
	})
}

// serveFiber runs listen on a free port of 127.0.0.1 and returns the URL
// it serves. At the end of the test it runs shutdown and checks that
// listen returned without an error.
func serveFiber(t *testing.T, listen func(net.Listener) error, shutdown func() error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	served := make(chan error, 1)
	go func() { served <- listen(ln) }()

	t.Cleanup(func() {
		if err := shutdown(); err != nil {
			t.Errorf("shutdown: got error %v, want nil", err)
		}
		// Shutdown closes the listener only once the app serves it.
		_ = ln.Close()

		select {
		case err := <-served:
			if err != nil {
				t.Errorf("listener: got error %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("listener: still serving 30s after shutdown, want it returned")
		}
	})
	return "http://" + ln.Addr().String()
}

// newFiberClient returns an HTTP client with a cookie jar of its own.
func newFiberClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar.New: %v", err)
	}

	// No proxy: the requests stay on the loopback interface.
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: transport}
}

// fiberVisit loads the app's page and returns the count of visits it
// shows.
func fiberVisit(t *testing.T, client *http.Client, appURL string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, appURL+"/", nil)
	if err != nil {
		t.Fatalf("GET %s/: %v", appURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s/: %v", appURL, err)
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s/: read body: %v", appURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/: got status %d, want %d; body: %s",
			appURL, resp.StatusCode, http.StatusOK, body)
	}
	visits, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil {
		t.Fatalf("GET %s/: got body %q, want a count of visits", appURL, body)
	}
	return visits
}

// fiberSessionID returns the session id that client holds for the app.
func fiberSessionID(t *testing.T, client *http.Client, appURL string) string {
	t.Helper()
	u, err := url.Parse(appURL)
	if err != nil {
		t.Fatalf("parse %s: %v", appURL, err)
	}
	for _, cookie := range client.Jar.Cookies(u) {
		if cookie.Name == "session_id" && cookie.Value != "" {
			return cookie.Value
		}
	}
	t.Fatalf("session cookie for %s: got none, want one", appURL)
	return ""
}

// fiberExpiry is the expires_at of a row, and how far it was from the
// database's now() when read.
type fiberExpiry struct {
	at   time.Time
	left time.Duration
}

// fiberRowExpiry reads the expiry of the row of session id in table, and
// reports whether there is such a row.
func fiberRowExpiry(t *testing.T, table, id string) (fiberExpiry, bool) {
	t.Helper()
	var e fiberExpiry
	var seconds float64
	err := adminPool.QueryRow(testContext(t), `
		SELECT expires_at, extract(epoch FROM expires_at - now())::float8
		FROM `+tableName("", table)+` WHERE key = $1`, []byte(id)).Scan(&e.at, &seconds)
	if errors.Is(err, pgx.ErrNoRows) {
		return fiberExpiry{}, false
	}
	if err != nil {
		t.Fatalf("read expires_at of session %q: %v", id, err)
	}
	e.left = time.Duration(seconds * float64(time.Second))
	return e, true
}

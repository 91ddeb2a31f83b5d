package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	recoverer "github.com/gofiber/fiber/v3/middleware/recover"
	"github.com/gofiber/fiber/v3/middleware/session"
)

const (
	// sessionCookie is the cookie Fiber's session middleware uses by
	// default.
	sessionCookie = "session_id"

	// requestTimeout bounds one request of the session benchmark.
	requestTimeout = 30 * time.Second

	// shutdownTimeout bounds the shutdown of a session app.
	shutdownTimeout = 5 * time.Second
)

// benchSession runs a request loop on a Fiber v3 app whose session
// middleware keeps its sessions in s. Each goroutine is one client with its
// own session, created by a first request before the timer starts; every
// timed request reads the session, increments its counter and saves it,
// that is one Get and one Set on the store.
func benchSession(b *testing.B, s *openStore, g int) {
	if s.app == nil {
		app, err := newSessionApp(s.storage)
		if err != nil {
			b.Fatalf("start the session app: %v", err)
		}
		s.app = app
	}
	app := s.app

	runOps(b, g, func(int) func(int) error {
		visits, cookie, err := app.visit("")
		if err != nil {
			b.Fatalf("first request: %v", err)
		}
		if visits != 1 || cookie == "" {
			b.Fatalf("first request: visits %d, cookie %q; want 1 and a cookie", visits, cookie)
		}

		return func(int) error {
			got, _, err := app.visit(cookie)
			if err != nil {
				return err
			}
			if got != visits+1 {
				return fmt.Errorf("session counted %d visits, want %d", got, visits+1)
			}
			visits = got
			return nil
		}
	})
}

// sessionApp is a Fiber v3 app serving on a loopback port, and an HTTP
// client for it.
type sessionApp struct {
	app    *fiber.App
	url    string
	client *http.Client
	served chan error
}

// newSessionApp starts an app whose only page counts the visits of each
// session kept in storage.
func newSessionApp(storage fiber.Storage) (*sessionApp, error) {
	app := fiber.New()
	// The session middleware panics when the store fails to read.
	app.Use(recoverer.New())
	app.Use(session.New(session.Config{Storage: storage}))
	app.Get("/", func(c fiber.Ctx) error {
		sess := session.FromContext(c)
		visits, _ := sess.Get("visits").(int)
		sess.Set("visits", visits+1)
		return c.SendString(strconv.Itoa(visits + 1))
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &sessionApp{
		app: app,
		url: "http://" + ln.Addr().String() + "/",
		client: &http.Client{
			// No Proxy: requests go straight to the loopback port.
			Transport: &http.Transport{MaxIdleConnsPerHost: 2 * maxConns},
			Timeout:   requestTimeout,
		},
		served: make(chan error, 1),
	}
	go func() {
		a.served <- app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	}()
	return a, nil
}

// visit requests the page with the session cookie, none when cookie is
// empty, and returns the visits counted and the session cookie set.
func (a *sessionApp) visit(cookie string) (visits int, setCookie string, err error) {
	req, err := http.NewRequest(http.MethodGet, a.url, nil)
	if err != nil {
		return 0, "", err
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	}

	resp, err := a.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("status %s: %.200s", resp.Status, body)
	}

	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			setCookie = c.Value
		}
	}
	visits, err = strconv.Atoi(string(body))
	return visits, setCookie, err
}

// close shuts the app down and waits for its listener to return.
func (a *sessionApp) close() error {
	a.client.CloseIdleConnections()
	err := a.app.ShutdownWithTimeout(shutdownTimeout)
	return errors.Join(err, <-a.served)
}

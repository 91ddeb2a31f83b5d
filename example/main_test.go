package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
	"github.com/pgstore/pgstore/internal/devdb"
)

// databaseURL is the database the tests run the example on, each run on a
// table of its own.
var databaseURL string

// adminPool is a pool the tests use to look at the session tables.
var adminPool *pgxpool.Pool

func TestMain(m *testing.M) {
	os.Exit(devdb.RunTests(m, func(url string, pool *pgxpool.Pool) {
		databaseURL, adminPool = url, pool
	}))
}

func TestExampleCountsTheVisitsOfEachBrowser(t *testing.T) {
	t.Parallel()
	app := startExample(t)

	first := newBrowser(t)
	for want := 1; want <= 3; want++ {
		if got := first.visit(t, app); got != want {
			t.Fatalf("visit %d of the first browser: got count %d, want %d", want, got, want)
		}
	}

	second := newBrowser(t)
	if got := second.visit(t, app); got != 1 {
		t.Fatalf("first visit of the second browser: got count %d, want 1", got)
	}

	firstID, secondID := first.sessionID(t, app), second.sessionID(t, app)
	if firstID == secondID {
		t.Errorf("session ids: got %q for both browsers, want two different ids", firstID)
	}
	for _, id := range []string{firstID, secondID} {
		if got := app.hasRow(t, id); !got {
			t.Errorf("row of session %q in %s: got none, want one", id, app.table)
		}
	}
}

func TestExampleLogOutDeletesTheSession(t *testing.T) {
	t.Parallel()
	app := startExample(t)

	b := newBrowser(t)
	b.visit(t, app)
	if got := b.visit(t, app); got != 2 {
		t.Fatalf("second visit: got count %d, want 2", got)
	}
	oldID := b.sessionID(t, app)

	// The log-out redirects to the page, which starts a new session.
	if got := b.logOut(t, app); got != 1 {
		t.Errorf("page after log-out: got count %d, want 1", got)
	}
	if got := app.hasRow(t, oldID); got {
		t.Errorf("row of the logged-out session in %s: got one, want none", app.table)
	}

	newID := b.sessionID(t, app)
	if newID == oldID {
		t.Errorf("session id after log-out: got the old id %q, want a new one", oldID)
	}
	if got := app.hasRow(t, newID); !got {
		t.Errorf("row of the new session in %s: got none, want one", app.table)
	}
	if got := b.visit(t, app); got != 2 {
		t.Errorf("next visit after log-out: got count %d, want 2", got)
	}
}

func TestExampleAnswersAnErrorWhenTheStoreFails(t *testing.T) {
	t.Parallel()
	tableName := uniqueName("example_session")
	dropTableAtEnd(t, tableName)
	store, err := pgstore.Open(testContext(t), pgstore.Config{
		ConnString:           databaseURL,
		TableName:            tableName,
		CreateTableIfMissing: true,
		DisablePrune:         true,
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// A closed store fails every operation, as one whose database is down.
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: "session_id", Value: "some-session"})
	resp, err := newApp(store).Test(req)
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET / with a failing store: got status %d, want %d",
			resp.StatusCode, http.StatusInternalServerError)
	}
}

// exampleApp is one run of the example.
type exampleApp struct {
	url   string // where it listens, such as http://127.0.0.1:41234
	table string // its session table, quoted
}

// startExample runs the example on a free port of 127.0.0.1, on a table of
// its own. At the end of the test it stops the run, checks that run
// returned without an error, and drops the table.
func startExample(t *testing.T) exampleApp {
	t.Helper()
	tableName := uniqueName("example_session")
	table := dropTableAtEnd(t, tableName)

	ctx, cancel := context.WithCancel(context.Background())
	config := pgstore.Config{
		ConnString:           databaseURL,
		TableName:            tableName,
		CreateTableIfMissing: true,
	}
	urls := make(chan string, 1)
	stopped := make(chan struct{})
	var runErr error
	go func() {
		defer close(stopped)
		runErr = run(ctx, "127.0.0.1:0", config, func(appURL string) { urls <- appURL })
	}()

	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Fatalf("run: still running 30s after the context was cancelled, want it returned")
		}
		if runErr != nil {
			t.Errorf("run: got error %v, want nil", runErr)
		}
	})

	var appURL string
	select {
	case appURL = <-urls:
	case <-stopped:
		t.Fatalf("run: got error %v before it listened, want it to listen", runErr)
	case <-time.After(time.Minute):
		t.Fatalf("run: got no URL after a minute, want one")
	}
	return exampleApp{url: appURL, table: table}
}

// dropTableAtEnd drops the table named tableName at the end of the test
// and returns its quoted name.
func dropTableAtEnd(t *testing.T, tableName string) string {
	t.Helper()
	table := pgx.Identifier{tableName}.Sanitize()
	t.Cleanup(func() {
		if _, err := adminPool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table); err != nil {
			t.Errorf("drop table %s: %v", table, err)
		}
	})
	return table
}

// hasRow reports whether the session table holds a row for sessionID.
func (app exampleApp) hasRow(t *testing.T, sessionID string) bool {
	t.Helper()
	var exists bool
	query := "SELECT EXISTS (SELECT 1 FROM " + app.table + " WHERE key = $1)"
	if err := adminPool.QueryRow(testContext(t), query, []byte(sessionID)).Scan(&exists); err != nil {
		t.Fatalf("look for session %q in %s: %v", sessionID, app.table, err)
	}
	return exists
}

// browser is an HTTP client with cookies of its own, as one web browser.
type browser struct {
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookiejar.New: %v", err)
	}

	// No proxy: the requests stay on the loopback interface.
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	return &browser{client: &http.Client{Jar: jar, Transport: transport}}
}

// visit loads the page and returns the count of visits it shows.
func (b *browser) visit(t *testing.T, app exampleApp) int {
	t.Helper()
	return b.visits(t, http.MethodGet, app.url+"/")
}

// logOut presses the log-out button and returns the count of visits that
// the page the log-out redirects to shows.
func (b *browser) logOut(t *testing.T, app exampleApp) int {
	t.Helper()
	return b.visits(t, http.MethodPost, app.url+"/logout")
}

// visitsPattern finds the count in the page.
var visitsPattern = regexp.MustCompile(`id="visits">(\d+)<`)

// visits sends a request, following redirects, and returns the count of
// visits that the page it ends on shows.
func (b *browser) visits(t *testing.T, method, target string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, target, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: got status %d, want %d; body:\n%s",
			method, target, resp.StatusCode, http.StatusOK, body)
	}
	match := visitsPattern.FindSubmatch(body)
	if match == nil {
		t.Fatalf("%s %s: got a page without a count of visits, want one; body:\n%s",
			method, target, body)
	}
	count, err := strconv.Atoi(string(match[1]))
	if err != nil {
		t.Fatalf("%s %s: count of visits %q: %v", method, target, match[1], err)
	}
	return count
}

// sessionID returns the session id the browser holds for the app.
func (b *browser) sessionID(t *testing.T, app exampleApp) string {
	t.Helper()
	u, err := url.Parse(app.url)
	if err != nil {
		t.Fatalf("parse %s: %v", app.url, err)
	}
	for _, cookie := range b.client.Jar.Cookies(u) {
		if cookie.Name == "session_id" && cookie.Value != "" {
			return cookie.Value
		}
	}
	t.Fatalf("session cookie for %s: got none, want one", app.url)
	return ""
}

// testContext returns a context that ends with the test, at the latest
// after a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName returns a table name no other test run uses.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

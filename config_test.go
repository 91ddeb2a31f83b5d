package pgstore_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgstore/pgstore"
)

// unreachable is a connection string no server answers.
const unreachable = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"

func TestConfigDefault(t *testing.T) {
	t.Parallel()
	d := pgstore.ConfigDefault
	if d.TableName != "session" || d.PruneInterval != time.Minute || d.PruneDelay == nil {
		t.Fatalf("ConfigDefault = %+v, want table session, prune every minute, a PruneDelay", d)
	}
	if d.CreateTableIfMissing || d.DisablePrune || d.DisableTouch || d.TTL != 0 || d.SchemaName != "" {
		t.Fatalf("ConfigDefault = %+v, want every switch off and no TTL", d)
	}
}

func TestPoolWinsOverConnStringAndStaysOpen(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(testContext(t), databaseURL)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	defer pool.Close()

	store := quietStore(t, pgstore.Config{Pool: pool, ConnString: unreachable})
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set through the given pool: %v", err)
	}
}

func TestConnStringWinsOverPoolConfig(t *testing.T) {
	t.Parallel()
	bad, err := pgxpool.ParseConfig(unreachable)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	store := quietStore(t, pgstore.Config{ConnString: databaseURL, PoolConfig: bad})
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func TestPoolConfigIsUsedAndLeftUnchanged(t *testing.T) {
	t.Parallel()
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	poolConfig.MaxConns = 3
	store := quietStore(t, pgstore.Config{PoolConfig: poolConfig})
	if got := store.Conn().Config().MaxConns; got != 3 {
		t.Fatalf("pool MaxConns = %d, want 3 from PoolConfig", got)
	}
	if store.Conn().Config() == poolConfig {
		t.Fatal("the store uses the caller's PoolConfig instead of a copy")
	}
}

func TestDatabaseURLThenPGVariables(t *testing.T) {
	// Not parallel: it sets environment variables.
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Skipf("test database URL is not a URL: %v", err)
	}

	t.Setenv("DATABASE_URL", databaseURL)
	store := quietStore(t, pgstore.Config{ConnString: "", Pool: nil, TableName: uniqueName("env")})
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set through DATABASE_URL: %v", err)
	}

	t.Setenv("DATABASE_URL", "")
	t.Setenv("PGHOST", u.Hostname())
	t.Setenv("PGPORT", u.Port())
	t.Setenv("PGDATABASE", strings.TrimPrefix(u.Path, "/"))
	t.Setenv("PGUSER", u.User.Username())
	if pw, ok := u.User.Password(); ok {
		t.Setenv("PGPASSWORD", pw)
	}
	t.Setenv("PGSSLMODE", u.Query().Get("sslmode"))
	table := uniqueName("pgenv")
	dropTable(t, "", table)
	store, err = pgstore.Open(testContext(t), pgstore.Config{TableName: table, CreateTableIfMissing: true})
	if err != nil {
		t.Fatalf("Open through PG* variables: %v", err)
	}
	defer store.Close()
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set through PG* variables: %v", err)
	}
}

func TestNamesAreQuotedIdentifiersKeptExactly(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	schema := uniqueName("My Schema")
	if _, err := adminPool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		_, _ = adminPool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})

	victim := uniqueName("victim")
	if _, err := adminPool.Exec(ctx, "CREATE TABLE "+pgx.Identifier{schema, victim}.Sanitize()+" ()"); err != nil {
		t.Fatalf("create victim: %v", err)
	}
	for _, table := range []string{
		"Mixed Case",
		`quote"inside`,
		`x"; DROP TABLE "` + victim + `"; --`,
		"line\nDROP TABLE \"" + victim + "\"; --",
		"ünïcödé",
	} {
		store := quietStore(t, pgstore.Config{SchemaName: schema, TableName: table})
		if err := store.Set("k", []byte("v"), 0); err != nil {
			t.Fatalf("Set in %q: %v", table, err)
		}
		var n int
		err := adminPool.QueryRow(ctx, `SELECT count(*) FROM pg_tables
			WHERE schemaname = $1 AND tablename = $2`, schema, table).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("table %q.%q in pg_tables: %d, %v; want 1", schema, table, n, err)
		}
		if got := countRows(t, schema, table); got != 1 {
			t.Fatalf("rows in %q = %d, want 1", table, got)
		}
	}
	var victims int
	err := adminPool.QueryRow(ctx, `SELECT count(*) FROM pg_tables
		WHERE schemaname = $1 AND tablename = $2`, schema, victim).Scan(&victims)
	if err != nil || victims != 1 {
		t.Fatalf("table %q after the names that try to drop it: %d, %v; want it there", victim, victims, err)
	}
}

func TestBadConnectionStringsKeepTheirPasswordsOutOfErrors(t *testing.T) {
	// Not parallel: it sets DATABASE_URL.
	for _, conn := range []string{
		"host=127.0.0.1 user=u password = Sekr3tPW sslmode=bogus",
		"postgres://u:Sek@r3tPW@127.0.0.1:badport/test",
		"postgres://u:Sekr3tPW@127.0.0.1:5432/test?sslmode=bogus",
	} {
		_, err := pgstore.Open(testContext(t), pgstore.Config{ConnString: conn})
		if err == nil || strings.Contains(err.Error(), "r3tPW") || !strings.Contains(err.Error(), "ConnString") {
			t.Errorf("Open with ConnString %q: error %v, want one naming ConnString without the password", conn, err)
		}

		t.Setenv("DATABASE_URL", conn)
		_, err = pgstore.Open(testContext(t))
		if err == nil || strings.Contains(err.Error(), "r3tPW") || !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Errorf("Open with DATABASE_URL %q: error %v, want one naming DATABASE_URL without the password", conn, err)
		}
		func() {
			defer func() {
				if r := recover(); r == nil || strings.Contains(fmt.Sprint(r), "r3tPW") {
					t.Errorf("New with DATABASE_URL %q panicked with %v, want a panic without the password", conn, r)
				}
			}()
			pgstore.New()
		}()
	}
}

func TestInvalidConfigIsRefused(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]pgstore.Config{
		"NUL in table name":     {TableName: "a\x00b"},
		"NUL in schema name":    {SchemaName: "a\x00b"},
		"table name too long":   {TableName: strings.Repeat("t", 64)},
		"negative TTL":          {TTL: -time.Second},
		"negative interval":     {PruneInterval: -time.Second},
		"unparsable ConnString": {ConnString: "postgres://%zz"},
	} {
		cfg.ConnString = cmp(cfg.ConnString, databaseURL)
		store, err := pgstore.Open(testContext(t), cfg)
		if err == nil {
			store.Close()
			t.Errorf("%s: Open succeeded, want an error", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "pgstore: ") {
			t.Errorf("%s: error %q, want it to start with pgstore:", name, err)
		}
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestMissingTableIsReportedWithTheWayOut(t *testing.T) {
	t.Parallel()
	table := uniqueName("missing")
	_, err := pgstore.Open(testContext(t), pgstore.Config{ConnString: databaseURL, TableName: table})
	if err == nil {
		t.Fatal("Open of a missing table succeeded without CreateTableIfMissing")
	}
	for _, want := range []string{`"` + table + `"`, "does not exist", "table.sql", "CreateTableIfMissing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNewPanicsWithTheSetupError(t *testing.T) {
	t.Parallel()
	table := uniqueName("panics")
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !strings.Contains(err.Error(), table) {
			t.Fatalf("New panicked with %v, want an error naming the table", r)
		}
	}()
	pgstore.New(pgstore.Config{ConnString: databaseURL, TableName: table})
	t.Fatal("New returned for a missing table")
}

func TestNewOpensAStore(t *testing.T) {
	t.Parallel()
	table := uniqueName("new")
	dropTable(t, "", table)
	store := pgstore.New(pgstore.Config{ConnString: databaseURL, TableName: table, CreateTableIfMissing: true})
	defer store.Close()
	if err := store.Set("k", []byte("v"), 0); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func TestConnectionFailureIsAnErrorNotAHang(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := pgstore.Open(testContext(t), pgstore.Config{ConnString: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"})
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %q shows the password", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("Open took %v to fail", time.Since(start))
	}
}

func TestCreateTableIsSafeWhenManyStartAtOnce(t *testing.T) {
	t.Parallel()
	table := uniqueName("race")
	dropTable(t, "", table)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			store, err := pgstore.Open(testContext(t), pgstore.Config{
				ConnString:           databaseURL,
				TableName:            table,
				CreateTableIfMissing: true,
				DisablePrune:         true,
			})
			if err != nil {
				errs <- err
				return
			}
			errs <- store.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

func TestStoresOfDifferentTablesShareASchema(t *testing.T) {
	t.Parallel()
	long := uniqueName(strings.Repeat("L", 48))
	names := []string{uniqueName("one"), uniqueName("two"), long + "a", long + "b"}
	for _, table := range names {
		store := quietStore(t, pgstore.Config{TableName: table})
		if err := store.Set("k", []byte(table), 0); err != nil {
			t.Fatalf("Set in %s: %v", table, err)
		}
	}
	for _, table := range names {
		var indexes int
		err := adminPool.QueryRow(testContext(t), `SELECT count(*) FROM pg_indexes
			WHERE tablename = $1`, table).Scan(&indexes)
		if err != nil || indexes != 2 {
			t.Fatalf("indexes of %s = %d, %v; want its primary key and its expiry index", table, indexes, err)
		}
	}
}

func TestUnfitTableIsReported(t *testing.T) {
	t.Parallel()
	for name, ddl := range map[string]string{
		"text key":      "key text PRIMARY KEY, value bytea, expires_at timestamptz",
		"no expiry":     "key bytea, key_hash bytea PRIMARY KEY, value bytea",
		"no unique":     "key bytea, key_hash bytea, value bytea, expires_at timestamptz",
		"naive expires": "key bytea, key_hash bytea PRIMARY KEY, value bytea, expires_at timestamp",
		"text hash":     "key bytea, key_hash text PRIMARY KEY, value bytea, expires_at timestamptz",
		"deferrable":    "key bytea, key_hash bytea PRIMARY KEY DEFERRABLE, value bytea, expires_at timestamptz",
		"extra column":  "key bytea, key_hash bytea PRIMARY KEY, value bytea, expires_at timestamptz, sess json NOT NULL",
		"generated":     "key bytea, key_hash bytea GENERATED ALWAYS AS (sha256(key)) STORED PRIMARY KEY, value bytea, expires_at timestamptz",
	} {
		table := uniqueName("unfit")
		dropTable(t, "", table)
		if _, err := adminPool.Exec(testContext(t), "CREATE TABLE "+tableName("", table)+" ("+ddl+")"); err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
		_, err := pgstore.Open(testContext(t), pgstore.Config{ConnString: databaseURL, TableName: table, CreateTableIfMissing: true})
		if err == nil || !strings.Contains(err.Error(), "does not fit") || !strings.Contains(err.Error(), table) {
			t.Errorf("%s: Open error %v, want one that names the table and says it does not fit", name, err)
		}
		// Every problem is named at once: the missing unique key along
		// with the missing column.
		if name == "text key" && (!strings.Contains(err.Error(), "column key_hash is missing") ||
			!strings.Contains(err.Error(), "no primary key or unique index")) {
			t.Errorf("%s: Open error %v, want the missing column and the missing unique key named", name, err)
		}
	}
}

// A unique index left invalid, as a failed CREATE UNIQUE INDEX CONCURRENTLY
// leaves it, cannot serve ON CONFLICT: Open refuses the table.
func TestInvalidUniqueIndexIsRefused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	table := uniqueName("invalid_index")
	dropTable(t, "", table)
	_, err := adminPool.Exec(ctx, `CREATE TABLE `+tableName("", table)+`
			(key bytea NOT NULL, key_hash bytea NOT NULL, value bytea NOT NULL, expires_at timestamptz);
		INSERT INTO `+tableName("", table)+` VALUES ('a', 'same', 'v', NULL), ('b', 'same', 'v', NULL)`)
	if err != nil {
		t.Fatalf("create the table: %v", err)
	}
	_, err = adminPool.Exec(ctx, `CREATE UNIQUE INDEX CONCURRENTLY `+uniqueName("idx")+` ON `+tableName("", table)+` (key_hash)`)
	if err == nil {
		t.Fatal("unique index over duplicate hashes was built")
	}

	_, err = pgstore.Open(ctx, pgstore.Config{ConnString: databaseURL, TableName: table, DisablePrune: true})
	if err == nil || !strings.Contains(err.Error(), "does not fit") || !strings.Contains(err.Error(), "valid") {
		t.Fatalf("Open error %v, want one that says the table does not fit for want of a valid unique index", err)
	}
}

// A table whose key_hash the server generates, as an earlier table.sql had
// it, is refused with the statement that fixes it, and after that statement
// its rows are found again.
func TestGeneratedKeyHashIsRefusedWithItsFix(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	table := uniqueName("generated")
	dropTable(t, "", table)
	_, err := adminPool.Exec(ctx, `CREATE TABLE `+tableName("", table)+` (
			key bytea NOT NULL,
			key_hash bytea GENERATED ALWAYS AS (sha256(key)) STORED PRIMARY KEY,
			value bytea NOT NULL,
			expires_at timestamptz);
		INSERT INTO `+tableName("", table)+` (key, value) VALUES ('kept', 'old')`)
	if err != nil {
		t.Fatalf("create a table with a generated key_hash: %v", err)
	}

	cfg := pgstore.Config{ConnString: databaseURL, TableName: table, DisablePrune: true}
	_, err = pgstore.Open(ctx, cfg)
	fix := "ALTER TABLE " + tableName("", table) + " ALTER COLUMN key_hash DROP EXPRESSION"
	if err == nil || !strings.Contains(err.Error(), fix) {
		t.Fatalf("Open error %v, want one that gives %q", err, fix)
	}

	if _, err := adminPool.Exec(ctx, fix); err != nil {
		t.Fatalf("%s: %v", fix, err)
	}
	store, err := pgstore.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open after the fix: %v", err)
	}
	defer store.Close()
	if got, err := store.Get("kept"); err != nil || string(got) != "old" {
		t.Fatalf("Get of a row from before the fix = %q, %v; want %q", got, err, "old")
	}
	if err := store.Set("kept", []byte("new"), 0); err != nil {
		t.Fatalf("Set after the fix: %v", err)
	}
	if n := countRows(t, "", table); n != 1 {
		t.Fatalf("rows = %d after overwriting the old row, want 1", n)
	}
}

func TestTableSQLMakesATableTheStoreAccepts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ddl, err := os.ReadFile("table.sql")
	if err != nil {
		t.Fatalf("read table.sql: %v", err)
	}
	schema := uniqueName("tablesql")
	conn, err := adminPool.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	defer conn.Release()
	t.Cleanup(func() {
		_, _ = adminPool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	})
	// As psql would run it: in a schema picked by search_path, twice.
	script := fmt.Sprintf("CREATE SCHEMA %s; SET search_path TO %s; %s; %s; RESET search_path", schema, schema, ddl, ddl)
	if _, err := conn.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("run table.sql: %v", err)
	}

	store, err := pgstore.Open(ctx, pgstore.Config{ConnString: databaseURL, SchemaName: schema})
	if err != nil {
		t.Fatalf("Open on the table of table.sql: %v", err)
	}
	defer store.Close()
	if err := store.Set("k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func TestUserWithOnlyRowPrivilegesCanDoEverything(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	table := uniqueName("grants")
	role := uniqueName("pgstore_user")
	quietStore(t, pgstore.Config{TableName: table}) // creates the table

	for _, stmt := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + tableName("", table) + " TO " + role,
	} {
		if _, err := adminPool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		_, _ = adminPool.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = adminPool.Exec(context.Background(), "DROP ROLE "+role)
	})

	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	poolConfig.ConnConfig.User = role
	store, err := pgstore.Open(ctx, pgstore.Config{PoolConfig: poolConfig, TableName: table, CreateTableIfMissing: true})
	if err != nil {
		t.Fatalf("Open as %s: %v", role, err)
	}
	defer store.Close()

	steps := []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { return store.Set("k", []byte("v"), time.Minute) }},
		{"Get", func() error { _, err := store.Get("k"); return err }},
		{"Touch", func() error { return store.Touch("k", time.Hour) }},
		{"Delete", func() error { return store.Delete("k") }},
		{"Set expiring", func() error { return store.Set("e", []byte("v"), time.Microsecond) }},
		{"Prune", func() error { _, err := store.Prune(ctx); return err }},
		{"Reset", func() error { return store.Reset() }},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s as a user with row privileges only: %v", step.name, err)
		}
	}
}

func TestUnloggedCreatesAnUnloggedTable(t *testing.T) {
	t.Parallel()
	for _, unlogged := range []bool{false, true} {
		table := uniqueName("unlogged")
		store := quietStore(t, pgstore.Config{TableName: table, Unlogged: unlogged})
		if err := store.Set("k", []byte("v"), 0); err != nil {
			t.Fatalf("Set: %v", err)
		}
		var persistence string
		err := adminPool.QueryRow(testContext(t), `SELECT relpersistence::text FROM pg_class
			WHERE oid = to_regclass($1)`, tableName("", table)).Scan(&persistence)
		want := map[bool]string{false: "p", true: "u"}[unlogged]
		if err != nil || persistence != want {
			t.Fatalf("Unlogged %v: relpersistence %q, %v; want %q", unlogged, persistence, err, want)
		}
	}
}

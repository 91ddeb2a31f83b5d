package pgstore

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// tableSQL is the schema, written for the default table "session". It is the
// one source of the table's definition: users run it with psql, and
// CreateTableIfMissing runs it with the configured names put in.
//
//go:embed table.sql
var tableSQL string

// statements holds the SQL of every operation, built once for one table:
// one form for a single call and one that takes a batch of calls as arrays.
// The batch forms walk their arrays with generate_subscripts, whose row
// estimate does not depend on the arrays, or hide them behind a subquery,
// so that PostgreSQL settles on one cached plan instead of planning each
// batch anew, which would cost more than running it.
// Every statement finds a key through key_hash, the indexed column, with
// the hash computed by pgstore: a generated column or a check would have the
// server hash each row again, about 15 % of the server's time for a batch of
// Sets. Reads, deletes and touches compare the key in full,
// and a write does not replace a row of another key, so that a hash
// collision can never mix two keys up.
type statements struct {
	get, set, delete, touch                 string
	getMany, setMany, deleteMany, touchMany string
	reset, prune                            string
}

// live is the condition a row must meet to be seen: it has not expired by
// the database's clock.
const live = `(t.expires_at IS NULL OR t.expires_at > now())`

// inBatch is the condition a row must meet to belong to a batch whose key
// hashes and keys are the arrays $1 and $2. A row whose key is among the
// keys has its hash among the hashes, so the hashes only lead to the rows
// through the index. The arrays go through ARRAY(SELECT unnest()) so that
// the planner cannot see their length: a plan made for one batch size would
// be planned anew for every batch; this way one plan, made once, serves all.
// The last line pairs them: a row's hash must be the one given with its
// key, so that a row whose key_hash is not its key's (written by hand) is
// not taken for the call whose key's hash it holds.
const inBatch = `t.key_hash = ANY(ARRAY(SELECT unnest($1::bytea[])))
	AND t.key = ANY(ARRAY(SELECT unnest($2::bytea[])))
	AND t.key_hash = ($1::bytea[])[array_position($2::bytea[], t.key)]`

// expiry computes an expiry from microseconds, -1 meaning never.
func expiry(micros string) string {
	return `now() + nullif(` + micros + `, -1) * interval '1 microsecond'`
}

func newStatements(table string) statements {
	return statements{
		get: `SELECT t.value FROM ` + table + ` AS t
			WHERE t.key_hash = $1 AND t.key = $2 AND ` + live,

		getMany: `SELECT k.i, v.value
			FROM generate_subscripts($1::bytea[], 1) AS k(i)
			CROSS JOIN LATERAL (
				SELECT t.value FROM ` + table + ` AS t
				WHERE t.key_hash = ($1::bytea[])[k.i] AND t.key = ($2::bytea[])[k.i]
				AND ` + live + `
				OFFSET 0) AS v`,

		set: `INSERT INTO ` + table + ` AS t (key_hash, key, value, expires_at)
			VALUES ($1, $2, $3, ` + expiry(`$4::bigint`) + `)
			ON CONFLICT (key_hash) DO UPDATE
			SET value = excluded.value, expires_at = excluded.expires_at
			WHERE t.key = excluded.key`,

		// The keys of one statement are distinct: ON CONFLICT cannot
		// change a row twice.
		setMany: `INSERT INTO ` + table + ` AS t (key_hash, key, value, expires_at)
			SELECT ($1::bytea[])[i], ($2::bytea[])[i], ($3::bytea[])[i], ` + expiry(`($4::bigint[])[i]`) + `
			FROM generate_subscripts($1::bytea[], 1) AS i
			ON CONFLICT (key_hash) DO UPDATE
			SET value = excluded.value, expires_at = excluded.expires_at
			WHERE t.key = excluded.key`,

		delete: `DELETE FROM ` + table + ` AS t
			WHERE t.key_hash = $1 AND t.key = $2`,

		deleteMany: `DELETE FROM ` + table + ` AS t
			WHERE ` + inBatch,

		touch: `UPDATE ` + table + ` AS t
			SET expires_at = ` + expiry(`$3::bigint`) + `
			WHERE t.key_hash = $1 AND t.key = $2 AND ` + live,

		// The keys of one statement are distinct, so each row finds its
		// own expiry.
		touchMany: `UPDATE ` + table + ` AS t
			SET expires_at = ` + expiry(`($3::bigint[])[array_position($2::bytea[], t.key)]`) + `
			WHERE ` + inBatch + ` AND ` + live,

		reset: `DELETE FROM ` + table,

		// At most $1 expired rows, in expiry order from $2 on, skipping
		// those another transaction holds, so that one statement never
		// locks much of the table. It returns how many it deleted and the
		// latest expiry among them, where the next batch starts: each
		// batch walks the index from there, not over the rows that the
		// batches before it left dead.
		prune: `WITH deleted AS (
				DELETE FROM ` + table + ` AS t
				WHERE t.ctid = ANY(ARRAY(
					SELECT ctid FROM ` + table + `
					WHERE expires_at >= $2 AND expires_at <= now()
					ORDER BY expires_at
					LIMIT $1
					FOR UPDATE SKIP LOCKED))
				AND t.expires_at <= now()
				RETURNING t.expires_at)
			SELECT count(*), coalesce(max(expires_at), $2) FROM deleted`,
	}
}

// prepareTable makes sure the table exists, creating it when the Config
// allows, and that its columns are the ones pgstore uses.
func prepareTable(ctx context.Context, pool *pgxpool.Pool, cfg Config, table string) error {
	exists, err := tableExists(ctx, pool, table)
	if err != nil {
		return fmt.Errorf("pgstore: look up table %s: %w", table, err)
	}

	if !exists {
		if !cfg.CreateTableIfMissing {
			return fmt.Errorf("pgstore: table %s does not exist: create it with table.sql, "+
				"its names \"session\" replaced by this table's, or set Config.CreateTableIfMissing", table)
		}
		if err := createTable(ctx, pool, cfg.SchemaName, cfg.TableName, cfg.Unlogged); err != nil {
			return fmt.Errorf("pgstore: create table %s: %w", table, err)
		}
	}

	if err := checkColumns(ctx, pool, table); err != nil {
		return fmt.Errorf("pgstore: table %s does not fit: %w "+
			"(see table.sql for the columns pgstore needs)", table, err)
	}
	return nil
}

// tableExists reports whether table, a quoted and possibly qualified name,
// resolves to a relation on the pool's connections.
func tableExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists)
	return exists, err
}

// createTable runs table.sql with the configured names. An advisory lock
// held for the transaction makes processes that start together create the
// table one at a time; the later ones find it there.
func createTable(ctx context.Context, pool *pgxpool.Pool, schema, tableName string, unlogged bool) error {
	table := qualifiedName(schema, tableName)

	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`,
			"pgstore create "+table)
		if err != nil {
			return err
		}

		exists, err := tableExists(ctx, tx, table)
		if err != nil || exists {
			return err
		}

		_, err = tx.Exec(ctx, tableDDL(schema, tableName, unlogged), pgx.QueryExecModeSimpleProtocol)
		return err
	})
}

// tableDDL returns table.sql with the table, its primary key constraint and
// its index renamed after tableName, in schema when that is not empty, and
// the table made UNLOGGED when unlogged is set.
func tableDDL(schema, tableName string, unlogged bool) string {
	create := "CREATE TABLE"
	if unlogged {
		create = "CREATE UNLOGGED TABLE"
	}
	// Comments go first: a name with a line break, put into a comment,
	// would end it and turn the rest of the name into SQL.
	var ddl strings.Builder
	for line := range strings.Lines(tableSQL) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			ddl.WriteString(line)
		}
	}
	return strings.NewReplacer(
		"CREATE TABLE", create,
		`"session"`, qualifiedName(schema, tableName),
		`"session_pkey"`, pgx.Identifier{derivedName(tableName, "_pkey")}.Sanitize(),
		`"session_expires_at_idx"`,
		pgx.Identifier{derivedName(tableName, "_expires_at_idx")}.Sanitize(),
	).Replace(ddl.String())
}

// derivedName returns tableName followed by suffix. When that would pass
// PostgreSQL's length limit, the table name is shortened and a hash of it
// added, so that two long table names still give two distinct names.
func derivedName(tableName, suffix string) string {
	if len(tableName)+len(suffix) <= maxIdentifierLength {
		return tableName + suffix
	}
	sum := sha256.Sum256([]byte(tableName))
	tag := "_" + hex.EncodeToString(sum[:4])

	keep := maxIdentifierLength - len(suffix) - len(tag)
	for keep > 0 && !utf8.RuneStart(tableName[keep]) {
		keep--
	}
	return tableName[:keep] + tag + suffix
}

// column is what checkColumns requires of one column, or found of one.
type column struct {
	name, typ  string
	expression string // of a generated column, else empty
	required   bool   // NOT NULL with no default: every insert must give it
}

var requiredColumns = []column{
	{name: "key", typ: "bytea"},
	{name: "key_hash", typ: "bytea"},
	{name: "value", typ: "bytea"},
	{name: "expires_at", typ: "timestamp with time zone"},
}

// checkColumns compares the table's columns with table.sql's, checks that
// no other column needs a value pgstore does not give, and that key_hash has
// a unique index that ON CONFLICT can use.
func checkColumns(ctx context.Context, pool *pgxpool.Pool, table string) error {
	rows, err := pool.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod),
			CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
			a.attnotnull AND d.adbin IS NULL AND a.attidentity = ''
		FROM pg_attribute a
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
		table)
	if err != nil {
		return err
	}
	found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (column, error) {
		var c column
		err := row.Scan(&c.name, &c.typ, &c.expression, &c.required)
		return c, err
	})
	if err != nil {
		return err
	}

	var problems []string
	for _, want := range requiredColumns {
		i := slices.IndexFunc(found, func(c column) bool { return c.name == want.name })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("column %s is missing", want.name))
		case found[i].typ != want.typ:
			problems = append(problems, fmt.Sprintf("column %s is %s, not %s",
				want.name, found[i].typ, want.typ))
		case found[i].expression != "":
			problems = append(problems, fmt.Sprintf("column %s is generated, but pgstore writes it "+
				"(ALTER TABLE %s ALTER COLUMN %s DROP EXPRESSION makes it a plain column)",
				want.name, table, want.name))
		}
	}
	for _, c := range found {
		known := slices.ContainsFunc(requiredColumns, func(r column) bool { return r.name == c.name })
		if !known && c.required {
			problems = append(problems, fmt.Sprintf(
				"column %s is NOT NULL without a default, and pgstore gives it no value", c.name))
		}
	}
	var unique bool
	err = pool.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate AND i.indisvalid
			AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = 'key_hash')`,
		table).Scan(&unique)
	if err != nil {
		return err
	}
	if !unique {
		problems = append(problems, "column key_hash has no primary key or unique index "+
			"that is valid and not deferrable, as ON CONFLICT needs")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

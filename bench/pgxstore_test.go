package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// tableSQLPath is pgstore's schema, relative to this package's directory,
// where go test runs the benchmarks.
const tableSQLPath = "../table.sql"

// createPgstoreTable runs pgstore's table.sql with table, its primary key
// and its index renamed.
func createPgstoreTable(ctx context.Context, table pgx.Identifier) error {
	ddl, err := os.ReadFile(tableSQLPath)
	if err != nil {
		return err
	}
	name := table[len(table)-1]
	renamed := strings.NewReplacer(
		`"session"`, table.Sanitize(),
		`"session_pkey"`, pgx.Identifier{name + "_pkey"}.Sanitize(),
		`"session_expires_at_idx"`, pgx.Identifier{name + "_expires_at_idx"}.Sanitize(),
	).Replace(string(ddl))

	_, err = adminPool.Exec(ctx, renamed)
	return err
}

// pgxStore is the baseline: one statement per operation on a pgxpool, in
// the SQL that pgstore runs for a single operation (table.go,
// newStatements). It implements fiber.Storage so that the session
// benchmark can use it too.
type pgxStore struct {
	pool                      *pgxpool.Pool
	getSQL, setSQL, deleteSQL string
	resetSQL                  string
}

func newPgxStore(pool *pgxpool.Pool, table pgx.Identifier) *pgxStore {
	t := table.Sanitize()
	return &pgxStore{
		pool: pool,
		getSQL: `SELECT value FROM ` + t + `
			WHERE key_hash = $1 AND key = $2
			AND (expires_at IS NULL OR expires_at > now())`,
		setSQL: `INSERT INTO ` + t + ` AS t (key_hash, key, value, expires_at)
			VALUES ($1, $2, $3, now() + $4::bigint * interval '1 microsecond')
			ON CONFLICT (key_hash) DO UPDATE
			SET value = excluded.value, expires_at = excluded.expires_at
			WHERE t.key = excluded.key`,
		deleteSQL: `DELETE FROM ` + t + `
			WHERE key_hash = $1 AND key = $2`,
		resetSQL: `DELETE FROM ` + t,
	}
}

func (s *pgxStore) GetWithContext(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	hash := sha256.Sum256([]byte(key))
	err := s.pool.QueryRow(ctx, s.getSQL, hash[:], []byte(key)).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return value, err
}

func (s *pgxStore) Get(key string) ([]byte, error) {
	return s.GetWithContext(context.Background(), key)
}

func (s *pgxStore) SetWithContext(
	ctx context.Context, key string, value []byte, exp time.Duration,
) error {
	var micros *int64
	if exp > 0 {
		m := int64((exp + time.Microsecond - 1) / time.Microsecond)
		micros = &m
	}
	hash := sha256.Sum256([]byte(key))
	tag, err := s.pool.Exec(ctx, s.setSQL, hash[:], []byte(key), value, micros)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("set: key has the SHA-256 of another key")
	}
	return err
}

func (s *pgxStore) Set(key string, value []byte, exp time.Duration) error {
	return s.SetWithContext(context.Background(), key, value, exp)
}

func (s *pgxStore) DeleteWithContext(ctx context.Context, key string) error {
	hash := sha256.Sum256([]byte(key))
	_, err := s.pool.Exec(ctx, s.deleteSQL, hash[:], []byte(key))
	return err
}

func (s *pgxStore) Delete(key string) error {
	return s.DeleteWithContext(context.Background(), key)
}

func (s *pgxStore) ResetWithContext(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, s.resetSQL)
	return err
}

func (s *pgxStore) Reset() error {
	return s.ResetWithContext(context.Background())
}

// Close closes the pool, which the store made.
func (s *pgxStore) Close() error {
	s.pool.Close()
	return nil
}

package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// The statements of each operation, for one call and for a batch of calls.
// A batch statement takes its calls as arrays; it has the same effect as
// the calls run one after another in arrival order.

// errBatchIncomplete makes a batch run its calls again one by one, so that
// the call a batch statement could not apply gets an error of its own.
var errBatchIncomplete = errors.New("batch changed fewer rows than it had keys")

func (s *Storage) getOne(ctx context.Context, c *call) error {
	c.result = nil
	err := s.pool.QueryRow(ctx, s.sql.get, c.args(c.key)...).Scan(&c.result)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

func (s *Storage) getMany(ctx context.Context, calls []*call) error {
	for _, c := range calls {
		c.result = nil
	}

	rows, err := s.pool.Query(ctx, s.sql.getMany, s.arrays(calls, hashField, keyField)...)
	if err != nil {
		return err
	}
	defer rows.Close()

	var (
		ordinal int64
		value   []byte
	)
	for rows.Next() {
		if err := rows.Scan(&ordinal, &value); err != nil {
			return err
		}
		calls[ordinal-1].result = value
		value = nil
	}
	return rows.Err()
}

func (s *Storage) setOne(ctx context.Context, c *call) error {
	tag, err := s.pool.Exec(ctx, s.sql.set, c.args(c.key, c.value, c.exp)...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return errHashCollision
	}
	return nil
}

func (s *Storage) setMany(ctx context.Context, calls []*call) error {
	last := lastOfEachKey(calls)
	tag, err := s.pool.Exec(ctx, s.sql.setMany, s.arrays(last, hashField, keyField, valueField, expField)...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(last)) {
		return errBatchIncomplete
	}
	return nil
}

func (s *Storage) deleteOne(ctx context.Context, c *call) error {
	_, err := s.pool.Exec(ctx, s.sql.delete, c.args(c.key)...)
	return err
}

func (s *Storage) deleteMany(ctx context.Context, calls []*call) error {
	_, err := s.pool.Exec(ctx, s.sql.deleteMany, s.arrays(calls, hashField, keyField)...)
	return err
}

func (s *Storage) touchOne(ctx context.Context, c *call) error {
	_, err := s.pool.Exec(ctx, s.sql.touch, c.args(c.key, c.exp)...)
	return err
}

func (s *Storage) touchMany(ctx context.Context, calls []*call) error {
	last := lastOfEachKey(calls)
	_, err := s.pool.Exec(ctx, s.sql.touchMany, s.arrays(last, hashField, keyField, expField)...)
	return err
}

// lastOfEachKey returns the calls that arrived last for their key, in
// arrival order, and points every other call at the one that replaces it:
// within a batch the last write to a key wins, as if the calls had run one
// after another.
func lastOfEachKey(calls []*call) []*call {
	latest := make(map[string]int, len(calls))
	for i, c := range calls {
		latest[c.name] = i
	}
	if len(latest) == len(calls) {
		return calls
	}
	last := make([]*call, 0, len(latest))
	for i, c := range calls {
		if j := latest[c.name]; j != i {
			c.replacedBy = calls[j]
		} else {
			last = append(last, c)
		}
	}
	return last
}

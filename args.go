package pgstore

import (
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A batch statement takes one array parameter per field of its calls. Given
// Go slices, pgx walks them by reflection and copies every element into an
// interface: one allocation per element, four per Set. A callArray lets pgx
// read each element straight from its call, through a pointer, which costs
// nothing. pgx can only encode it when the server has told it the
// parameters' types; under the simple protocol, or when it takes the types
// from the Go values (QueryExecModeExec), the batches pass plain slices.

// field names one field of a call.
type field uint8

const (
	hashField field = iota
	keyField
	valueField
	expField
)

// callArray is one field of a batch's calls, as pgx encodes an array: it
// implements pgtype.ArrayGetter.
type callArray struct {
	calls []*call
	field field
	dims  [1]pgtype.ArrayDimension
}

func (a *callArray) Dimensions() []pgtype.ArrayDimension {
	a.dims[0] = pgtype.ArrayDimension{Length: int32(len(a.calls)), LowerBound: 1}
	return a.dims[:]
}

func (a *callArray) Index(i int) any { return a.element(a.calls[i]) }

// IndexType is the element's type, as a nil pointer of it.
func (a *callArray) IndexType() any { return a.element(nil) }

// element returns c seen as the array's field.
func (a *callArray) element(c *call) any {
	switch a.field {
	case hashField:
		return (*hashOf)(c)
	case keyField:
		return (*keyOf)(c)
	case valueField:
		return (*valueOf)(c)
	default:
		return (*expOf)(c)
	}
}

// The elements: a call seen as one of its fields.
type (
	hashOf  call
	keyOf   call
	valueOf call
	expOf   call
)

func (c *hashOf) BytesValue() ([]byte, error)  { return c.hash[:], nil }
func (c *keyOf) BytesValue() ([]byte, error)   { return c.key, nil }
func (c *valueOf) BytesValue() ([]byte, error) { return c.value, nil }
func (c *expOf) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: c.exp, Valid: true}, nil
}

// batchArgs holds the parameters of one batch statement.
type batchArgs struct {
	arrays [4]callArray
	args   [4]any
}

// typedArgs reports whether pgx learns the parameters' types from the server
// before it encodes them, so that a callArray can be passed.
func typedArgs(mode pgx.QueryExecMode) bool {
	switch mode {
	case pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec:
		return true
	}
	return false
}

// arrays returns the fields of calls as the array parameters of a batch
// statement, in the order given.
func (s *Storage) arrays(calls []*call, fields ...field) []any {
	if !s.typedArgs {
		return plainArrays(calls, fields)
	}
	b := new(batchArgs)
	for i, f := range fields {
		b.arrays[i] = callArray{calls: calls, field: f}
		b.args[i] = &b.arrays[i]
	}
	return b.args[:len(fields)]
}

// plainArrays returns the fields of calls as Go slices.
func plainArrays(calls []*call, fields []field) []any {
	args := make([]any, len(fields))
	for i, f := range fields {
		if f == expField {
			exps := make([]int64, len(calls))
			for j, c := range calls {
				exps[j] = c.exp
			}
			args[i] = exps
			continue
		}
		column := make([][]byte, len(calls))
		for j, c := range calls {
			switch f {
			case hashField:
				column[j] = c.hash[:]
			case keyField:
				column[j] = c.key
			default:
				column[j] = c.value
			}
		}
		args[i] = column
	}
	return args
}

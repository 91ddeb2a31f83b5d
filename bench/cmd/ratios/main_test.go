package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestMedianInterval(t *testing.T) {
	values := func(n int) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(n - i) // descending, so that sorting matters
		}
		return xs
	}
	for _, tc := range []struct {
		n      int
		lo, hi float64 // ranks, 1 the smallest
		ok     bool
	}{
		{n: 5},
		{n: 6, lo: 1, hi: 6, ok: true},   // P(X = 0) = 1/64
		{n: 9, lo: 2, hi: 8, ok: true},   // P(X ≤ 1) = 10/512
		{n: 20, lo: 6, hi: 15, ok: true}, // P(X ≤ 5) = 0.0207, P(X ≤ 6) = 0.0577
	} {
		lo, hi, ok := medianInterval(values(tc.n))
		if ok != tc.ok || lo != tc.lo || hi != tc.hi {
			t.Errorf("n=%d: got [%v, %v] %v, want [%v, %v] %v", tc.n, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}

// TestRatiosPairRounds checks that each ratio divides runs of one round:
// the medians of the stores alone would give 1.33× here, the rounds 2×,
// and the fourth gofiber run, of no round pgstore ran, is left out.
func TestRatiosPairRounds(t *testing.T) {
	var in strings.Builder
	for _, ns := range [][2]string{{"100", "200"}, {"300", "600"}, {"500", "1000"}} {
		in.WriteString("BenchmarkStore/op=get-hit/g=2/store=pgstore-2 1000 " + ns[0] + " ns/op 7 allocs/op\n")
		in.WriteString("BenchmarkStore/op=get-hit/g=2/store=gofiber-2 1000 " + ns[1] + " ns/op 10 allocs/op\n")
	}
	in.WriteString("BenchmarkStore/op=get-hit/g=2/store=gofiber-2 1000 100 ns/op 10 allocs/op\n")

	table := newTable()
	if err := table.read(strings.NewReader(in.String()), "test"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := table.print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), " 2.00× ") {
		t.Errorf("want a 2.00× ratio from the paired rounds, got\n%s", out.String())
	}
}

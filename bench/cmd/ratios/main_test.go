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

// TestRatiosPairRounds checks that each ratio divides runs of one round.
// Within each round gofiber takes twice pgstore's time, so every pairing
// by round gives 2×; a pairing by position, or the medians of the stores
// alone, would not.
func TestRatiosPairRounds(t *testing.T) {
	line := func(store, ns string) string {
		return "BenchmarkStore/op=get-hit/g=2/store=" + store + "-2 1000 " + ns + " ns/op 7 allocs/op\n"
	}
	for _, tc := range []struct {
		name, in string
	}{
		{
			// Without round lines the n-th runs pair; the fourth
			// gofiber run has no pgstore run to pair with.
			name: "by position",
			in: line("pgstore", "100") + line("gofiber", "200") +
				line("pgstore", "300") + line("gofiber", "600") +
				line("pgstore", "500") + line("gofiber", "1000") +
				line("gofiber", "100"),
		},
		{
			// gofiber is missing from round 1, pgstore from round 3.
			name: "by round line",
			in: "round: 1\n" + line("pgstore", "700") +
				"round: 2\n" + line("pgstore", "100") + line("gofiber", "200") +
				"round: 3\n" + line("gofiber", "5000") +
				"round: 4\n" + line("gofiber", "600") + line("pgstore", "300") +
				"round: 5\n" + line("pgstore", "500") + line("gofiber", "1000"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newTable()
			if err := table.read(strings.NewReader(tc.in), "test"); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := table.print(&out); err != nil {
				t.Fatal(err)
			}
			// op, g, two stores' ns/op, the ratio to gofiber, ..., rounds
			var fields []string
			for l := range strings.Lines(out.String()) {
				if f := strings.Fields(l); len(f) > 0 && f[0] == "get-hit" {
					fields = f
				}
			}
			if len(fields) < 5 || fields[4] != "2.00×" || fields[len(fields)-1] != "3" {
				t.Errorf("want a 2.00× ratio over 3 rounds, got\n%s", out.String())
			}
		})
	}
}

// TestRatiosRefuseARoundRunTwice checks that a file given twice is an
// error rather than twice the rounds.
func TestRatiosRefuseARoundRunTwice(t *testing.T) {
	in := "round: 1\nBenchmarkStore/op=get-hit/g=2/store=pgstore-2 1000 100 ns/op\n"
	table := newTable()
	if err := table.read(strings.NewReader(in), "a.txt"); err != nil {
		t.Fatal(err)
	}
	if err := table.read(strings.NewReader(in), "a.txt"); err == nil {
		t.Error("reading the same rounds twice gave no error")
	}
}

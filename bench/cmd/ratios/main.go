// Command ratios reads the raw output of BenchmarkStore and prints, for
// every op and goroutine count, the median ns/op of each store and how
// pgstore compares with Fiber's driver and with raw pgx.
//
//	go run ./cmd/ratios results/store-*.txt
//
// With no file it reads standard input. A throughput ratio is the other
// store's ns/op divided by pgstore's: above 1 means pgstore does more
// operations per second. A store's run is paired with the other store's
// run of the same round, minutes apart at most: run.sh writes a "round: N"
// line before each round, and without such lines the n-th runs of a file
// are paired. The table gives the median of those per-round ratios and,
// from six rounds on, a 95 % confidence interval of that median. A line
// that cannot be read, such as the last of a run cut short, is reported and
// skipped.
package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"
)

// storeOrder is the column order of the stores BenchmarkStore knows; other
// stores follow in the order they were read.
var storeOrder = []string{"pgstore", "pgstore-nobatch", "gofiber", "pgx"}

// row is one op at one goroutine count.
type row struct {
	op string
	g  int
}

// samples holds the measurements of one store in one row.
type samples struct {
	nsPerOp, allocsPerOp []float64
	rounds               []string // of each nsPerOp, unique within the row
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ratios:", err)
		os.Exit(1)
	}
}

func run(files []string, w io.Writer) error {
	t := newTable()
	if len(files) == 0 {
		if err := t.read(os.Stdin, "stdin"); err != nil {
			return err
		}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = t.read(f, name)
		f.Close()
		if err != nil {
			return err
		}
	}
	if len(t.rows) == 0 {
		return fmt.Errorf("no BenchmarkStore results found")
	}
	return t.print(w)
}

// table gathers the results by row and store.
type table struct {
	rows    []row // in the order first read
	stores  []string
	results map[row]map[string]*samples
	skipped int // lines that could not be read
}

func newTable() *table {
	return &table{results: map[row]map[string]*samples{}}
}

// read adds the BenchmarkStore results of r.
func (t *table) read(r io.Reader, name string) error {
	reader := benchfmt.NewReader(r, name)
	for reader.Scan() {
		switch rec := reader.Result().(type) {
		case *benchfmt.SyntaxError:
			fmt.Fprintln(os.Stderr, "ratios: skipped:", rec)
			t.skipped++
		case *benchfmt.Result:
			if err := t.add(rec); err != nil {
				return err
			}
		}
	}
	return reader.Err()
}

func (t *table) add(result *benchfmt.Result) error {
	base, parts := result.Name.Parts()
	if string(base) != "Store" {
		return nil
	}
	config := map[string]string{}
	for _, part := range parts {
		key, val, ok := strings.Cut(strings.TrimPrefix(string(part), "/"), "=")
		if ok {
			config[key] = val
		}
	}
	g, err := strconv.Atoi(config["g"])
	if err != nil || config["op"] == "" || config["store"] == "" {
		return nil
	}

	r := row{op: config["op"], g: g}
	byStore, ok := t.results[r]
	if !ok {
		byStore = map[string]*samples{}
		t.results[r] = byStore
		t.rows = append(t.rows, r)
	}
	store := config["store"]
	s, ok := byStore[store]
	if !ok {
		s = &samples{}
		byStore[store] = s
		if !slices.Contains(t.stores, store) {
			t.stores = append(t.stores, store)
		}
	}
	if ns, ok := value(result, "ns/op"); ok {
		// The round names the file too, so that rounds of two runs
		// never pair.
		file, _ := result.Pos()
		round := result.GetConfig("round")
		if round == "" {
			round = "#" + strconv.Itoa(len(s.nsPerOp)+1)
		}
		round = file + ": " + round
		if slices.Contains(s.rounds, round) {
			return fmt.Errorf("%s: %s ran twice in one round (is a file given twice?)", round, result.Name)
		}
		s.nsPerOp = append(s.nsPerOp, ns)
		s.rounds = append(s.rounds, round)
	}
	if allocs, ok := value(result, "allocs/op"); ok {
		s.allocsPerOp = append(s.allocsPerOp, allocs)
	}
	return nil
}

// value returns the measurement of result in unit as the benchmark wrote
// it; benchfmt tidies ns/op into sec/op.
func value(result *benchfmt.Result, unit string) (float64, bool) {
	for _, v := range result.Values {
		if v.OrigUnit == unit {
			return v.OrigValue, true
		}
		if v.OrigUnit == "" && v.Unit == unit {
			return v.Value, true
		}
	}
	return 0, false
}

// print writes the table, ops in the order read and goroutine counts
// ascending, and a geometric mean of each ratio.
func (t *table) print(w io.Writer) error {
	stores := t.orderedStores()
	rows := t.orderedRows()

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"op", "g"}
	for _, s := range stores {
		header = append(header, s+" ns/op")
	}
	header = append(header, "pgstore vs gofiber", "pgstore vs pgx",
		"allocs/op pgstore", "allocs/op gofiber", "rounds")
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")

	var vsGofiber, vsPgx []float64
	for _, r := range rows {
		byStore := t.results[r]
		cells := []string{r.op, strconv.Itoa(r.g)}
		for _, s := range stores {
			cells = append(cells, duration(median(samplesOf(byStore, s).nsPerOp)))
		}

		pgstore := samplesOf(byStore, "pgstore")
		gofiber := perRound(samplesOf(byStore, "gofiber"), pgstore)
		pgx := perRound(samplesOf(byStore, "pgx"), pgstore)
		vsGofiber = appendFinite(vsGofiber, median(gofiber))
		vsPgx = appendFinite(vsPgx, median(pgx))

		cells = append(cells, withInterval(gofiber), withInterval(pgx),
			count(median(pgstore.allocsPerOp)),
			count(median(samplesOf(byStore, "gofiber").allocsPerOp)),
			strconv.Itoa(len(gofiber)))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}

	footer := []string{"geomean", ""}
	for range stores {
		footer = append(footer, "")
	}
	footer = append(footer, times(geomean(vsGofiber)), times(geomean(vsPgx)), "", "", "")
	fmt.Fprintln(tw, strings.Join(footer, "\t")+"\t")
	if err := tw.Flush(); err != nil {
		return err
	}

	_, err := fmt.Fprintln(w, "\nns/op: median of the runs. pgstore vs X: X's ns/op ÷ pgstore's in the same round, "+
		"the throughput ratio, median of the rounds, from six rounds on [95 % confidence interval of that median]; "+
		"above 1× pgstore is faster. rounds: those with both pgstore and gofiber.")
	if err == nil && t.skipped > 0 {
		_, err = fmt.Fprintf(w, "%d unreadable lines skipped.\n", t.skipped)
	}
	return err
}

// perRound returns other's ns/op ÷ pgstore's for each round both ran.
func perRound(other, pgstore *samples) []float64 {
	var ratios []float64
	for i, round := range pgstore.rounds {
		if j := slices.Index(other.rounds, round); j >= 0 {
			ratios = append(ratios, other.nsPerOp[j]/pgstore.nsPerOp[i])
		}
	}
	return ratios
}

// withInterval formats the median of ratios and, when there are enough of
// them, the interval that holds their true median with 95 % confidence.
func withInterval(ratios []float64) string {
	m := times(median(ratios))
	lo, hi, ok := medianInterval(ratios)
	if !ok {
		return m
	}
	return fmt.Sprintf("%s [%.2f–%.2f]", m, lo, hi)
}

// medianInterval returns a distribution-free 95 % confidence interval of
// the median of xs: the k-th smallest and the k-th largest of them, with k
// the largest rank such that fewer than k of n values fall below the
// median with probability at most 2.5 %. Below six values no such rank
// exists.
func medianInterval(xs []float64) (lo, hi float64, ok bool) {
	n := len(xs)
	k := 0
	for cdf, r := 0.0, 0; r < n; r++ {
		// cdf is P(X < r+1) for X ~ Binomial(n, ½), after adding P(X = r).
		cdf += binomialHalf(n, r)
		if cdf > 0.025 {
			break
		}
		k = r + 1
	}
	if k == 0 {
		return 0, 0, false
	}
	sorted := slices.Sorted(slices.Values(xs))
	return sorted[k-1], sorted[n-k], true
}

// binomialHalf returns P(X = r) for X ~ Binomial(n, ½).
func binomialHalf(n, r int) float64 {
	lgN, _ := math.Lgamma(float64(n + 1))
	lgR, _ := math.Lgamma(float64(r + 1))
	lgNR, _ := math.Lgamma(float64(n - r + 1))
	return math.Exp(lgN - lgR - lgNR - float64(n)*math.Ln2)
}

func (t *table) orderedStores() []string {
	var stores []string
	for _, s := range storeOrder {
		if slices.Contains(t.stores, s) {
			stores = append(stores, s)
		}
	}
	for _, s := range t.stores {
		if !slices.Contains(stores, s) {
			stores = append(stores, s)
		}
	}
	return stores
}

// orderedRows keeps the ops in the order read and sorts each op's
// goroutine counts.
func (t *table) orderedRows() []row {
	var ops []string
	for _, r := range t.rows {
		if !slices.Contains(ops, r.op) {
			ops = append(ops, r.op)
		}
	}
	rows := slices.Clone(t.rows)
	slices.SortStableFunc(rows, func(a, b row) int {
		return cmp.Or(
			cmp.Compare(slices.Index(ops, a.op), slices.Index(ops, b.op)),
			cmp.Compare(a.g, b.g))
	})
	return rows
}

func samplesOf(byStore map[string]*samples, store string) *samples {
	if s, ok := byStore[store]; ok {
		return s
	}
	return &samples{}
}

// median returns the median of xs, NaN when there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sorted := slices.Sorted(slices.Values(xs))
	mid := len(sorted) / 2
	if len(sorted)%2 == 1 {
		return sorted[mid]
	}
	return (sorted[mid-1] + sorted[mid]) / 2
}

func geomean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += math.Log(x)
	}
	return math.Exp(sum / float64(len(xs)))
}

func appendFinite(xs []float64, x float64) []float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) || x <= 0 {
		return xs
	}
	return append(xs, x)
}

// duration formats nanoseconds with three significant digits.
func duration(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "-"
	case ns >= 1e9:
		return strconv.FormatFloat(ns/1e9, 'f', digits(ns/1e9), 64) + "s"
	case ns >= 1e6:
		return strconv.FormatFloat(ns/1e6, 'f', digits(ns/1e6), 64) + "ms"
	case ns >= 1e3:
		return strconv.FormatFloat(ns/1e3, 'f', digits(ns/1e3), 64) + "µs"
	}
	return strconv.FormatFloat(ns, 'f', digits(ns), 64) + "ns"
}

// digits returns the decimals that give x, between 1 and 1000, three
// significant digits.
func digits(x float64) int {
	switch {
	case x >= 100:
		return 0
	case x >= 10:
		return 1
	}
	return 2
}

func times(ratio float64) string {
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		return "-"
	}
	return strconv.FormatFloat(ratio, 'f', 2, 64) + "×"
}

func count(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

#!/usr/bin/env bash
# run.sh runs the store benchmarks, compares the stores, and then runs the
# prune benchmark once. See README.md.
#
#   COUNT       rounds, each running every benchmark once, default 6
#   BENCHTIME   time of each run (go test -benchtime), default 1s
#   BENCH       the store benchmarks to run (go test -bench),
#               default '^BenchmarkStore$'
#   PRUNE       0 skips the prune benchmark, default 1
#   TIMEOUT     go test -timeout of each go test, default 3h
#
# The database comes from PGSTORE_BENCH_DATABASE_URL, PGSTORE_TEST_DATABASE_URL
# or DATABASE_URL, else from a throwaway server (see README.md). Raw results
# are written to results/store-<time>.txt and results/prune-<time>.txt.
set -euo pipefail

cd "$(dirname "$0")"

count=${COUNT:-6}
benchtime=${BENCHTIME:-1s}
bench=${BENCH:-'^BenchmarkStore$'}
prune=${PRUNE:-1}
timeout=${TIMEOUT:-3h}

mkdir -p results
stamp=$(date +%Y%m%d-%H%M%S)
store_results=results/store-$stamp.txt
prune_results=results/prune-$stamp.txt

# go test -count N runs each sub-benchmark N times in a row, so a noisy
# minute would hit one store only. Rounds of -count 1 interleave the stores.
echo "# store benchmarks: $count rounds, -benchtime $benchtime -> $store_results"
go test -c -o results/bench.test .
for round in $(seq "$count"); do
	echo "# round $round of $count" >&2
	# A configuration line: cmd/ratios pairs the stores' runs by it.
	echo "round: $round"
	PGSTORE_BENCH_ROUND=$round ./results/bench.test -test.run '^$' -test.bench "$bench" -test.benchmem \
		-test.count 1 -test.benchtime "$benchtime" -test.timeout "$timeout"
done | tee "$store_results"

echo
# pgstore first, as the base; the round differs from line to line and is
# no reason to split the table.
columns='/store@(pgstore pgstore-nobatch gofiber pgx)'
echo "# benchstat -ignore round -col '$columns' $store_results"
go tool benchstat -ignore round -col "$columns" "$store_results"

echo
echo "# ratios $store_results"
go run ./cmd/ratios "$store_results"

if [ "$prune" != 0 ]; then
	echo
	echo "# prune benchmark -> $prune_results"
	go test -run '^$' -bench '^BenchmarkPrune$' -benchtime 1x -count 1 \
		-timeout "$timeout" . | tee "$prune_results"
fi

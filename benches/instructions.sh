#!/usr/bin/env bash
# Instructions per call of every row of benches/instructions.rs, under callgrind: the count of
# 2N calls minus the count of N calls, divided by N (start-up and set-up cancel out).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p reflexio-benches --bench instructions --no-run 2>/dev/null
bin=$(cargo bench -p reflexio-benches --bench instructions --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*instructions[^"]*"' | tail -1 | cut -d'"' -f4)
n=${N:-20000}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
    | awk '/Collected/ {print $4}'
}
rows=${*:-success/bare success/reflexio-call success/reflexio-retry success/backon success/retry
  failure/bare failure/reflexio-call failure/reflexio-call-no-deadline failure/reflexio-call-jitter
  failure/reflexio-retry
  failure/backon failure/retry
  async-success/bare async-success/reflexio-call async-success/reflexio-retry async-success/backon
  async-success/tokio-retry async-failure/bare async-failure/reflexio-call async-failure/backon}
for row in $rows; do
  a=$(count "$row" "$n")
  b=$(count "$row" $((2 * n)))
  printf '%-32s %6d instructions per call\n' "$row" $(((b - a) / n))
done

#!/usr/bin/env bash
# Every test, in two pytest runs side by side: the fault suite (tests/faults, which mostly
# waits: outages, WeChat's retry intervals, processes starting) beside all the others (which
# mostly computes). Each run's output is shown whole, one after the other; the exit status is
# the first failure's. Arguments go to both runs.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
log=$(mktemp -t wxkf-faults.XXXXXX)
trap 'rm -f "$log"' EXIT

"$BIN/pytest" -m faults "$@" >"$log" 2>&1 &
faults=$!
"$BIN/pytest" -m "not faults" "$@"
rest=$?
wait "$faults"
fault_status=$?
echo
echo "== the fault suite (tests/faults)"
cat "$log"
if [ "$rest" -ne 0 ]; then exit "$rest"; fi
exit "$fault_status"

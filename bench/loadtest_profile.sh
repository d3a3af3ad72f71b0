#!/usr/bin/env bash
# Where the service's CPU goes during a 4-judge load-test step: py-spy samples the `cat-reward
# serve` process (GIL-holding samples, 200 Hz) over the whole step, and profile_categories.py
# sums them by part of the group path. py-spy pauses the process per sample, so the step's own
# CPU figures read higher under it; the shares are what this is for.
#
#   .venv/bin/pip install py-spy && bench/loadtest_profile.sh [OUT_DIR]   (Linux; ptrace allowed)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/cat-reward-profile}"
mkdir -p "$out"
.venv/bin/cat-reward loadtest --judges 4 --time-scale "${TIME_SCALE:-0.5}" --no-progress --no-plot \
    --json "$out/run.json" > "$out/run.log" 2>&1 &
loadtest=$!
pid=""
for _ in $(seq 1 240); do
    pid=$(pgrep -n -f "cat-reward serve" || true)
    [ -n "$pid" ] && break
    sleep 0.5
done
[ -n "$pid" ] || { echo "the service did not start; see $out/run.log" >&2; exit 1; }
.venv/bin/py-spy record -p "$pid" -d "${DURATION_S:-40}" -r 200 --gil -f raw -o "$out/profile.txt" > "$out/py-spy.log" 2>&1 || true
wait "$loadtest"
tail -1 "$out/run.log"
.venv/bin/python bench/profile_categories.py "$out/profile.txt"

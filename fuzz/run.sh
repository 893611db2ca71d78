#!/usr/bin/env bash
# The long fuzz run: every harness under libFuzzer for SECONDS each (default 120), starting
# from the committed seeds (fuzz/corpus/<target>/) in a working corpus that grows from run to
# run (fuzz/libfuzzer/corpus/<target>/, not committed); crashes in
# fuzz/libfuzzer/artifacts/<target>/.
# Prints per-target figures and, as its last line, one JSON object:
#   {"bench":"fuzz","targets":N,"seconds_per_target":S,"executions":E,"crashes":C,"per_target":{...}}
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# A crash: copy its input to fuzz/regressions/<target>/ (replayed by `cargo test -p shale-fuzz`),
# fix the bug, and run again.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' libfuzzer/Cargo.toml | grep -v '^shale-fuzz-libfuzzer$')
total=0
crashes=0
per=""
for t in $targets; do
  mkdir -p "corpus/$t" "libfuzzer/corpus/$t" "libfuzzer/artifacts/$t"
  cp -n corpus/"$t"/* "libfuzzer/corpus/$t/" 2>/dev/null || true
  log="$(mktemp)"
  cargo +nightly fuzz run --fuzz-dir libfuzzer "$t" "libfuzzer/corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
    -artifact_prefix="libfuzzer/artifacts/$t/" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  execs=${execs:-0}
  found=$(find "libfuzzer/artifacts/$t" -type f | wc -l)
  total=$((total + execs))
  crashes=$((crashes + found))
  echo "$t: $execs executions, $found crash inputs (exit $rc)"
  if [ "$rc" -ne 0 ] && [ "$found" -eq 0 ]; then
    echo "  libFuzzer failed without a crash input:"; tail -20 "$log" | sed 's/^/  /'
    crashes=$((crashes + 1))
  fi
  per="${per}${per:+,}\"$t\":{\"executions\":$execs,\"crashes\":$found}"
  rm -f "$log"
done
n=$(echo "$targets" | wc -w)
echo "{\"bench\":\"fuzz\",\"targets\":$n,\"seconds_per_target\":$secs,\"executions\":$total,\"crashes\":$crashes,\"per_target\":{$per}}"

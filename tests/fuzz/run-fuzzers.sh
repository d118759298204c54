#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (in build-fuzz) and runs each for a bounded time
# on a copy of its seed corpus, so the repository is never modified. Prints executions and
# findings per target; exits non-zero when any target crashed, leaked, hung or ran out of memory.
# Usage: tests/fuzz/run-fuzzers.sh [SECONDS_PER_TARGET] [TARGET...]
# Env: SPOOLD_FUZZ_BUILD (build dir, default <repo>/build-fuzz), SPOOLD_FUZZ_JOBS (default 2).
set -euo pipefail

seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${SPOOLD_FUZZ_BUILD:-$root/build-fuzz}
jobs=${SPOOLD_FUZZ_JOBS:-2}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz_smtp_session fuzz_address fuzz_header_scan fuzz_record fuzz_config
        fuzz_milter_reply fuzz_proxy_header
        fuzz_reply_parser fuzz_client_session fuzz_import fuzz_directory_file fuzz_http)
fi

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DSPOOLD_FUZZ=ON -DSPOOLD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; exit 2; }
# Only the targets and the libraries they link (not the daemon, the drain or the tools).
cmake --build "$build" --target "${targets[@]}" -j "$jobs"

work=$(mktemp -d "${TMPDIR:-/tmp}/spoold-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
findings_dir="$build/fuzz-findings"
failed=0
printf '%-20s %12s %8s  %s\n' target executions seconds findings
for target in "${targets[@]}"; do
    dir="$work/$target"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -d "$root/tests/fuzz/corpus/$target" ]; then
        cp -r "$root/tests/fuzz/corpus/$target/." "$dir/corpus/"
    fi
    status=0
    "$build/tests/fuzz/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
        >"$dir/log" 2>&1 || status=$?
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$dir/log" | tail -n 1)
    took=$(awk '/stat::average_exec_per_sec/ {r=$2} /stat::number_of_executed_units/ {n=$2}
                END {if (r > 0) printf "%d", n / r; else print "?"}' "$dir/log")
    found=$(find "$dir/artifacts" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$found" -ne 0 ]; then
        failed=1
        mkdir -p "$findings_dir/$target"
        cp "$dir/log" "$findings_dir/$target/log"
        cp "$dir/artifacts/"* "$findings_dir/$target/" 2>/dev/null || true
        printf '%-20s %12s %8s  %s (exit %d), kept in %s\n' "$target" "${execs:-?}" "$took" \
            "$found" "$status" "$findings_dir/$target"
        grep -m 3 -E 'ERROR: |invariant violated|runtime error|SUMMARY' "$dir/log" | sed 's/^/    /' || true
    else
        printf '%-20s %12s %8s  0\n' "$target" "${execs:-?}" "$took"
    fi
done
exit "$failed"

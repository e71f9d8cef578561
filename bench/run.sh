#!/usr/bin/env bash
# Builds echo-server, echo-bench and the peers in release mode, then
# measures them all and prints one table (see bench/README.md):
#
#   bench/run.sh [--quick | --full] [runner options]
#
# --quick (the default) takes under two minutes after the build, --full
# under fifteen. Other options go to the runner (`--servers ours,tokio`,
# `--scenarios pp-c100`, ...; bench/target/release/runner --help lists them).
set -euo pipefail

started=$(date +%s)
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$bench_dir")
command="$0${*:+ $*}"

mode=--quick
runner_args=()
for arg in "$@"; do
    case $arg in
        --quick | --full) mode=$arg ;;
        -h | --help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) runner_args+=("$arg") ;;
    esac
done

# The runner finds the binaries under target/ and bench/target/.
unset CARGO_TARGET_DIR
echo "== building echo-server and echo-bench (release)" >&2
(cd "$repo" && cargo build --release --bins)
echo "== building the peers and the runner (release)" >&2
(cd "$bench_dir" && cargo build --release)
built=$(date +%s)

# Held connections need a descriptor each, in the server and in echo-bench.
hard=$(ulimit -Hn)
if [[ $hard == unlimited || $hard -ge 65536 ]]; then
    ulimit -n 65536
else
    ulimit -n "$hard"
fi

out="$bench_dir/results/$(date -u +%Y%m%dT%H%M%SZ)"
echo "== measuring ($mode); results in ${out#"$repo"/}" >&2
"$bench_dir/target/release/runner" --repo "$repo" --out "$out" "$mode" \
    --command "$command" ${runner_args[@]+"${runner_args[@]}"}

finished=$(date +%s)
total="Total elapsed: $((finished - started)) s (build $((built - started)) s, measuring $((finished - built)) s)."
echo "- $total" >>"$out/table.md"
echo "$total"

#!/usr/bin/env bash
# Master-key rotation of 1,000,000 credentials (target <= 60 s) while byoc-api answers requests: wrk on
# `GET /api/organization/credentials` before the rotation and during it, with the ratios during ÷ before.
#
# Usage: bash bench/rotation_under_load.sh [--rows N] [--orgs N] [--before SECS] [--connections N]
#                                          [--threads N] [--no-check]
# Defaults: 1,000,000 credentials over 10,000 organizations, 20 s of load before, 16 connections, 2 threads.
#
# Steps: fresh database; the credentials are sealed under key version 1 and bulk-inserted by the example
# crates/byoc-credential-store/examples/seed_bulk_credentials.rs (real envelopes, as the service writes
# them); byoc-api starts with BYOC_MASTER_KEYS=1:…,2:… and version 2 active (step 3 of the rotation procedure
# in docs/operations.md); a separate organization with an owner and 5 credentials added through the API is
# what wrk reads; then `byoc keys rotate` runs with the same configuration while wrk keeps loading the
# service, and `byoc keys check` decrypts every credential afterwards (skip with --no-check).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rows=1000000
orgs=10000
before=20
connections=16
threads=2
check=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --orgs) orgs="$2"; shift 2 ;;
        --before) before="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --no-check) check=0; shift ;;
        *) die "unknown argument $1 (see the header of this script)" ;;
    esac
done

ensure_wrk
build_release
seeder="$target_dir/release/examples/seed_bulk_credentials"
if [ "${BYOC_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    (cd "$bench_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release \
        -p byoc-credential-store --example seed_bulk_credentials)
fi
[ -x "$seeder" ] || die "no $seeder"

configure_service
fresh_database rotation
key1="$("$byoc_bin" keys generate)"
key2="$("$byoc_bin" keys generate)"

say "seeding $rows credentials in $orgs organizations under key version 1"
BYOC_MASTER_KEYS="1:$key1" "$seeder" "$rows" "$orgs"

export BYOC_MASTER_KEYS="1:$key1,2:$key2" BYOC_ACTIVE_KEY_VERSION=2
start_server
seed_owner "Bench clinic"
add_twilio_credentials 5
say "byoc-api pid $server_pid on $base, database $database_name"
say "wrk: $threads threads, $connections connections"

run_wrk warmup /api/organization/credentials 3 auth
start_rss_sampler
run_wrk before /api/organization/credentials "$before" auth

# Load during the rotation: wrk runs until it gets SIGINT (it then prints its report and the Lua summary).
BYOC_BENCH_TOKEN="$token" wrk --threads "$threads" --connections "$connections" --duration 3600s --timeout 5s \
    --latency --script "$bench_root/bench/wrk/report.lua" "$base/api/organization/credentials" \
    >"$workdir/during.txt" &
wrk_pid=$!
sleep 1
say "byoc keys rotate (the $rows seeded credentials are on version 1; active version 2)"
rotate_start="$(date +%s.%N)"
rotate_status=0
"$byoc_bin" keys rotate >"$workdir/rotate.out" 2>"$workdir/rotate.err" || rotate_status=$?
rotate_end="$(date +%s.%N)"
kill -INT "$wrk_pid"
wait "$wrk_pid" || true
stop_rss_sampler
sed -n 's/^WRK_JSON //p' "$workdir/during.txt" >"$workdir/during.json"
[ -s "$workdir/during.json" ] || { cat "$workdir/during.txt" >&2; die "wrk printed no summary during rotation"; }
cat "$workdir/rotate.out"
[ "$rotate_status" = 0 ] || { cat "$workdir/rotate.err" >&2; die "byoc keys rotate failed ($rotate_status)"; }

check_line="skipped (--no-check)"
if [ "$check" = 1 ]; then
    check_start="$(date +%s.%N)"
    "$byoc_bin" keys check >"$workdir/check.out" 2>&1 || { cat "$workdir/check.out" >&2; die "byoc keys check failed"; }
    check_end="$(date +%s.%N)"
    check_line="$(tail -n 1 "$workdir/check.out") ($(node -e "console.log((($check_end)-($check_start)).toFixed(1))") s)"
fi

rewrapped="$(sed -n 's/^re-wrapped \([0-9]*\) credential.*/\1/p' "$workdir/rotate.out")"
if ! node - "$workdir/before.json" "$workdir/during.json" "$rotate_start" "$rotate_end" "${rewrapped:-0}" "$rss_max_kib" \
    "$rss_hwm_kib" "$check_line" <<'EOF'
const fs = require('fs');
const [beforeFile, duringFile, start, end, rewrapped, rssMax, rssHwm, checkLine] = process.argv.slice(2);
const b = JSON.parse(fs.readFileSync(beforeFile, 'utf8'));
const d = JSON.parse(fs.readFileSync(duringFile, 'utf8'));
const seconds = Number(end) - Number(start);
const total = Number(rewrapped);
const ms = (us) => (us / 1000).toFixed(2);
console.log('');
console.log(`rotation: ${total} credentials re-wrapped by \`byoc keys rotate\` in ${seconds.toFixed(1)} s (process start to exit) ` +
  `= ${(total / seconds).toFixed(0)} rows/s (target <= 60 s: ${seconds <= 60 ? 'met' : 'NOT met'})`);
console.log(`keys check: ${checkLine}`);
console.log('');
console.log('| GET /api/organization/credentials | seconds | req/s | p50 ms | p99 ms | max ms | errors |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [name, r] of [['before rotation', b], ['during rotation', d]]) {
  console.log(`| ${name} | ${r.seconds.toFixed(1)} | ${r.rps.toFixed(0)} | ${ms(r.p50_us)} | ${ms(r.p99_us)} | ` +
    `${ms(r.max_us)} | ${r.status_errors + r.socket_errors} |`);
}
console.log(`| during ÷ before | | ${(d.rps / b.rps).toFixed(3)} | ${(d.p50_us / b.p50_us).toFixed(2)} | ` +
  `${(d.p99_us / b.p99_us).toFixed(2)} | | |`);
console.log('');
console.log(`byoc-api RSS: max sampled ${(rssMax / 1024).toFixed(1)} MiB, VmHWM ${(rssHwm / 1024).toFixed(1)} MiB`);
if (d.status_errors + d.socket_errors + b.status_errors + b.socket_errors > 0) {
  for (const [name, r] of [['before', b], ['during', d]]) {
    console.log(`errors ${name}: status >= 400: ${r.status_errors}, connect: ${r.connect_errors}, ` +
      `read: ${r.read_errors}, write: ${r.write_errors}, timeouts: ${r.timeouts}`);
  }
  console.log('ERRORS during the run (byoc-api warnings and errors follow)');
  process.exitCode = 1;
}
EOF
then
    grep -E 'WARN|ERROR' "$workdir/server.err" | tail -n 20 || true
    exit 1
fi

#!/usr/bin/env bash
# KMS-held master keys against moto's local KMS (the server tests/kms/run.sh uses): start-up time with 0, 1, 5 and
# 20 KMS-held versions, then credential read throughput with the credentials wrapped by an environment key and
# by a KMS-held key, in the same run, with the ratio.
#
# Usage: bash bench/kms_keys.sh [credentials, default 20000] [start-ups per point, default 5]
#   BYOC_BENCH_PROFILE=debug uses debug binaries (default release); BYOC_BENCH_SKIP_BUILD=1 as in bench/lib.sh.
#
# Start-up: byoc-api is launched and /readyz polled every 10 ms; the time to its first 200, the median of the
# start-ups, with 0 (environment key only), 1, 5 and 20 KMS-held versions in the `master_keys` table (each one
# `Decrypt` at start; moto answers on 127.0.0.1, so this is byoc's cost, not a network's).
# Reads: COUNT Twilio credentials are sealed under environment version 1 (the seeder of bench/rotation_under_load.sh,
# crates/byoc-credential-store/examples/seed_bulk_credentials.rs, over 10 organizations) and `byoc keys check`
# (which reads and decrypts every credential, uncached, as the credential service does) is timed; then they are
# rotated to the highest KMS-held version and it is timed again. Both runs start with the same 20 KMS-held
# versions in the table (the same start-up), so the only difference is which master key wraps the data keys.
# Prints credentials/s for each (the CLI's start-up included, the same for both) and the ratio KMS-held /
# environment (1.0 = equal; expected).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

count="${1:-20000}"
runs="${2:-5}"
profile="${BYOC_BENCH_PROFILE:-release}"
moto_version="5.2.6"
venv="$target_dir/moto-venv"

if [ "$profile" = debug ]; then
    byoc_api_bin="$target_dir/debug/byoc-api"
    byoc_bin="$target_dir/debug/byoc"
    seeder="$target_dir/debug/examples/seed_bulk_credentials"
    if [ "${BYOC_BENCH_SKIP_BUILD:-0}" != 1 ]; then
        (cd "$bench_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet -p byoc-api -p byoc \
            --bin byoc-api --bin byoc && CARGO_TARGET_DIR="$target_dir" cargo build --quiet \
            -p byoc-credential-store --example seed_bulk_credentials)
    fi
else
    build_release
    seeder="$target_dir/release/examples/seed_bulk_credentials"
    if [ "${BYOC_BENCH_SKIP_BUILD:-0}" != 1 ]; then
        (cd "$bench_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release \
            -p byoc-credential-store --example seed_bulk_credentials)
    fi
fi
[ -x "$byoc_api_bin" ] && [ -x "$byoc_bin" ] && [ -x "$seeder" ] || die "no $profile binaries in $target_dir"


if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: //p')" != "$moto_version" ]; then
    say "installing moto[server]==$moto_version into $venv (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi
moto_port="$(free_port)"
"$venv/bin/python" "$bench_root/tests/kms/moto_kms.py" -H 127.0.0.1 -p "$moto_port" >"$workdir/moto.log" 2>&1 &
moto_pid=$!
helper_pids="$moto_pid"
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break
    sleep 0.1
done
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$moto_port"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL BYOC_ACTIVE_KEY_VERSION
"$venv/bin/python" -c "import boto3
kms = boto3.client('kms', endpoint_url='$AWS_ENDPOINT_URL_KMS', region_name='us-east-1')
kms.create_alias(AliasName='alias/byoc-bench', TargetKeyId=kms.create_key()['KeyMetadata']['KeyId'])"

configure_service
export BYOC_MASTER_KEYS="1:$(random_hex 32)"
fresh_database kms

now_ms() { date +%s%3N; }
# The median, in ms, of $runs start-ups of byoc-api until /readyz answers 200.
startup_ms() {
    local times=() started pid
    for _ in $(seq 1 "$runs"); do
        started="$(now_ms)"
        "$byoc_api_bin" >"$workdir/server.out" 2>"$workdir/server.err" &
        pid=$!
        until curl --silent --fail --output /dev/null "$base/readyz"; do
            kill -0 "$pid" 2>/dev/null || { cat "$workdir/server.err" >&2; die "byoc-api exited during start-up"; }
            sleep 0.01
        done
        times+=($(( $(now_ms) - started )))
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

kms_versions=0
add_kms_versions() {
    while [ "$kms_versions" -lt "$1" ]; do
        "$byoc_bin" keys create --kms alias/byoc-bench >/dev/null 2>"$workdir/create.err" \
            || { cat "$workdir/create.err" >&2; die "byoc keys create --kms failed"; }
        kms_versions=$((kms_versions + 1))
    done
}

say "== start-up ($profile build, median of $runs): byoc-api launched until /readyz answers 200"
declare -A startup
for versions in 0 1 5 20; do
    add_kms_versions "$versions"
    startup[$versions]="$(startup_ms)"
    say "KMS-held versions: $versions  start-up: ${startup[$versions]} ms"
done

# Reads: the credentials under environment version 1 (pinned active), then under KMS-held version 21.
export BYOC_ACTIVE_KEY_VERSION=1
say "== sealing $count Twilio credentials under environment version 1 (seed_bulk_credentials)"
"$seeder" "$count" 10 >"$workdir/seed.out" 2>&1 || { cat "$workdir/seed.out" >&2; die "seeding failed"; }

# Credentials read and decrypted per second by `byoc keys check` (the best of 3 runs).
reads_per_second() {
    local best=0 started elapsed rate
    for _ in 1 2 3; do
        started="$(date +%s%N)"
        "$byoc_bin" keys check >"$workdir/check.out" 2>&1 || { cat "$workdir/check.out" >&2; die "keys check failed"; }
        elapsed=$(( $(date +%s%N) - started ))
        grep -q "all $count credential(s) decrypt" "$workdir/check.out" || { cat "$workdir/check.out" >&2; die "keys check"; }
        rate=$(( count * 1000000000 / elapsed ))
        [ "$rate" -gt "$best" ] && best="$rate"
    done
    echo "$best"
}
env_rate="$(reads_per_second)"
say "credentials under the environment key: $env_rate credentials/s (byoc keys check, best of 3)"
export BYOC_ACTIVE_KEY_VERSION=$((1 + kms_versions))
"$byoc_bin" keys rotate >"$workdir/rotate.out" 2>&1 || { cat "$workdir/rotate.out" >&2; die "keys rotate failed"; }
"$byoc_bin" keys list | awk -F'\t' -v v="$BYOC_ACTIVE_KEY_VERSION" -v n="$count" '$1 == v && $5 == n {ok = 1} END {exit !ok}' \
    || die "the credentials are not all under version $BYOC_ACTIVE_KEY_VERSION"
kms_rate="$(reads_per_second)"
say "credentials under KMS-held version $BYOC_ACTIVE_KEY_VERSION: $kms_rate credentials/s (byoc keys check, best of 3)"
awk -v k="$kms_rate" -v e="$env_rate" 'BEGIN {printf "ratio KMS-held / environment: %.2f\n", k / e}'

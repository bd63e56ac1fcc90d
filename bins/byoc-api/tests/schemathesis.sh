#!/usr/bin/env bash
# Property-based API test: schemathesis generates requests from the running service's /openapi.json and runs
# every check (`--checks all`): no 5xx, documented status codes, content types, headers and schemas, schema-valid
# requests accepted and schema-invalid ones refused, 405 with an exact `Allow`, stateful links. The only rules the
# document cannot state are excluded, by operation name, in schemathesis.toml beside this script.
#
# Usage (from anywhere): bash bins/byoc-api/tests/schemathesis.sh
# It installs schemathesis into target/schemathesis-venv (PyPI), builds byoc-api, starts it in dev mode in a
# temporary folder with its providers pointed at fake Twilio, Google, Stripe and HubSpot APIs (tests/fault/lib/fake_providers.py,
# so nothing leaves the machine and a schema-valid verify, send or availability check succeeds), authenticates
# with the printed dev token, and stops what it started when it exits.
set -euo pipefail

root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="$target_dir/schemathesis-venv"
schemathesis_version="4.32.5"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-40}"

if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$schemathesis_version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi

# The same features as `cargo test --workspace --all-features` (tests/run), so the binary is not rebuilt.
cargo build --quiet --workspace --all-features --bin byoc-api
binary="$target_dir/debug/byoc-api"

workdir="$(mktemp -d)"
server_pid=""
providers_pid=""
cleanup() {
    for pid in "$server_pid" "$providers_pid"; do
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$workdir"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
python3 "$root/tests/fault/lib/fake_providers.py" "$workdir/providers.port" &
providers_pid=$!
for _ in $(seq 1 50); do
    [ -s "$workdir/providers.port" ] && break
    sleep 0.1
done
providers="http://127.0.0.1:$(cat "$workdir/providers.port")"
cd "$workdir"
env -u DATABASE_URL -u BYOC_MASTER_KEYS -u CREDENTIAL_ENCRYPTION_KEY -u BYOC_CONFIG_FILE \
    BYOC_BIND="127.0.0.1:$port" RUST_LOG=warn \
    TWILIO_API_BASE="$providers" GOOGLE_OAUTH_TOKEN_URL="$providers/token" \
    GOOGLE_CALENDAR_API_BASE="$providers/calendar/v3/" \
    STRIPE_API_BASE="$providers" HUBSPOT_API_BASE="$providers" \
    "$binary" >"$workdir/stdout.log" 2>"$workdir/stderr.log" &
server_pid=$!
cd "$root"

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    if curl --silent --fail "$base/healthz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis.sh: byoc-api exited during start-up:" >&2
        cat "$workdir/stderr.log" >&2
        exit 1
    fi
    sleep 0.2
done
curl --silent --fail "$base/readyz" >/dev/null

token="$(sed -n 's/^dev token (24 h): *//p' "$workdir/stdout.log")"
if [ -z "$token" ]; then
    echo "schemathesis.sh: no dev token in the banner" >&2
    exit 1
fi

# Run from the temporary folder so nothing schemathesis keeps between runs lands in the working tree.
cd "$workdir"
"$venv/bin/schemathesis" --config-file "$root/bins/byoc-api/tests/schemathesis.toml" run "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$max_examples" \
    --seed 20261128 \
    --generation-database none \
    --workers 1 \
    --no-color \
    --report-dir "$target_dir/schemathesis-report"

#!/usr/bin/env bash
# Bad input against a running byoc-api: no 5xx, no panic, memory flat.
#
# Usage (from anywhere): bash tests/fault/bad_input.sh
#
# 1. Builds byoc-api and byoc (debug; BYOC_BAD_INPUT_PROFILE=release for release), creates a fresh database on the
#    local PostgreSQL (BYOC_TEST_DATABASE_URL names the server, default postgres://postgres@127.0.0.1:5432/postgres;
#    the database is dropped on exit), migrates it, seeds an organization with an owner and starts byoc-api on
#    it with its providers pointed at a closed local port (nothing leaves the machine).
# 2. tests/fault/bad_input.py sends every bad-input case to every JSON endpoint of the contract, round after round
#    (BAD_INPUT_WARMUP rounds, default 2, then BAD_INPUT_ROUNDS, default 10; about 840 requests a round): oversized
#    bodies, malformed JSON, invalid UTF-8 in bodies, headers, query and path, wrong content types, huge and
#    numerous headers, deep nesting, numbers out of range, empty bodies, broken framing. Every answer must be
#    below 500 with the contract's error body; the resident set size after the measured rounds must be within
#    BAD_INPUT_RSS_SLACK_MIB (default 10) of its value after the warm-up.
# 3. The process must still be alive and its log must hold no "panicked".
# 4. schemathesis (bins/byoc-api/tests/schemathesis.sh) with SCHEMATHESIS_MAX_EXAMPLES examples per operation
#    (default here 100, CI's default is 40); BAD_INPUT_SCHEMATHESIS=0 skips it. Its case count is reported.
#
# Prints PASS/FAIL per check and exits non-zero on any failure. BAD_INPUT_KEEP=1 keeps the logs.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${BYOC_BAD_INPUT_PROFILE:-debug}"
server_url="${BYOC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
rounds="${BAD_INPUT_ROUNDS:-10}"
warmup="${BAD_INPUT_WARMUP:-2}"
rss_slack="${BAD_INPUT_RSS_SLACK_MIB:-10}"
examples="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
run_schemathesis="${BAD_INPUT_SCHEMATHESIS:-1}"

workdir="$(mktemp -d -t byoc-bad-input.XXXXXX)"
database="byoc_bad_input_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
database_created=""
server_pid=""
failures=0
started_at="$(date +%s)"

pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

cleanup() {
    local status=$?
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$database_created" ]; then
        psql "$server_url" -qAt -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ -n "${BAD_INPUT_KEEP:-}" ]; then
        echo "kept $workdir"
    else
        rm -rf "$workdir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

flag=()
[ "$profile" = release ] && flag=(--release)
# The same features as `cargo test --workspace --all-features` (tests/run), so nothing is rebuilt there.
(cd "$root" && cargo build --quiet "${flag[@]}" --workspace --all-features --bin byoc-api --bin byoc)
api_bin="$target_dir/$profile/byoc-api"
cli_bin="$target_dir/$profile/byoc"

psql "$server_url" -qAt -c "CREATE DATABASE $database" >/dev/null
database_created=1
database_url="$(python3 -c 'import sys; from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1]); print(urlunsplit(parts._replace(path="/" + sys.argv[2])))' "$server_url" "$database")"

unset CREDENTIAL_ENCRYPTION_KEY BYOC_CONFIG_FILE BYOC_JWKS_URL BYOC_LEGACY_FALLBACK_ORGS BYOC_PUBLIC_URL \
    TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_PHONE_NUMBER GOOGLE_OAUTH_CLIENT_ID GOOGLE_OAUTH_CLIENT_SECRET
export DATABASE_URL="$database_url"
export BYOC_MASTER_KEYS="1:$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export BYOC_JWT_SECRET="bad-input-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
closed="http://127.0.0.1:9"
export TWILIO_API_BASE="$closed" GOOGLE_OAUTH_TOKEN_URL="$closed/token" GOOGLE_CALENDAR_API_BASE="$closed/calendar/v3/"

"$cli_bin" migrate >"$workdir/migrate.log" 2>&1 || { cat "$workdir/migrate.log"; exit 1; }
org_id="$("$cli_bin" org create --name "Bad input clinic" | tail -n 1 | tr -d '[:space:]')"
owner_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
"$cli_bin" member add --org "$org_id" --user "$owner_id" --role owner >/dev/null
token="$("$cli_bin" token --org "$org_id" --user "$owner_id" --ttl 3600 | tail -n 1 | tr -d '[:space:]')"
# Verify and delete cases name a credential that does not exist, so no case changes anything or calls a provider.
missing_credential="$(python3 -c 'import uuid; print(uuid.uuid4())')"

port="$(free_port)"
base="http://127.0.0.1:$port"
BYOC_BIND="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-info}" RUST_BACKTRACE=1 "$api_bin" >"$workdir/api.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 150); do
    if curl -s -o /dev/null --fail "$base/readyz"; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "byoc-api exited during start-up:" >&2
        cat "$workdir/api.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -s -o /dev/null --fail "$base/readyz"

flood_started="$(date +%s.%N)"
if python3 "$root/tests/fault/bad_input.py" "$base" "$token" "$missing_credential" "$server_pid" \
    --rounds "$rounds" --warmup "$warmup" --rss-slack-mib "$rss_slack" ${BAD_INPUT_SHOW:+--show "$BAD_INPUT_SHOW"} | tee "$workdir/flood.log"; then
    pass "bad input: no 5xx, contract error bodies, RSS flat"
else
    fail "bad input (see the FAIL lines above)"
fi
flood_seconds="$(python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$flood_started")"

if kill -0 "$server_pid" 2>/dev/null && curl -s -o /dev/null --fail "$base/healthz"; then
    pass "byoc-api is alive and healthy after the bad input"
else
    fail "byoc-api died or is unhealthy after the bad input"
fi
if grep -q "panicked" "$workdir/api.log"; then
    fail "byoc-api panicked:"
    grep -A5 "panicked" "$workdir/api.log" | head -40
else
    pass "no panic in byoc-api's log"
fi
# The service's own count, which also covers requests whose answer the client never saw.
server_errors="$(curl -s "$base/metrics" | python3 -c 'import re, sys
print(int(sum(float(m.group(1)) for m in re.finditer(r"^byoc_http_requests_total\{[^}]*status=\"5\d\d\"[^}]*\} (\S+)$", sys.stdin.read(), re.M))))')"
check_requests="$(curl -s "$base/metrics" | python3 -c 'import re, sys
print(int(sum(float(m.group(1)) for m in re.finditer(r"^byoc_http_requests_total\{[^}]*\} (\S+)$", sys.stdin.read(), re.M))))')"
if [ "$server_errors" = 0 ]; then
    pass "byoc_http_requests_total counts no 5xx among $check_requests requests the service answered"
else
    fail "byoc_http_requests_total counts $server_errors answers with a 5xx status"
fi

schemathesis_seconds=0
if [ "$run_schemathesis" != 0 ]; then
    schemathesis_started="$(date +%s)"
    if SCHEMATHESIS_MAX_EXAMPLES="$examples" bash "$root/bins/byoc-api/tests/schemathesis.sh" \
        >"$workdir/schemathesis.log" 2>&1; then
        pass "schemathesis with $examples examples per operation: $(grep -A1 '^Test cases:' "$workdir/schemathesis.log" | tail -n 1 | sed 's/^ *//')"
    else
        fail "schemathesis with $examples examples per operation:"
        sed -n '/FAILURES\|SUMMARY/,$p' "$workdir/schemathesis.log" | head -80
    fi
    schemathesis_seconds=$(($(date +%s) - schemathesis_started))
fi

echo "wall time: flood ${flood_seconds} s, schemathesis ${schemathesis_seconds} s, total $(($(date +%s) - started_at)) s"
if [ "$failures" -eq 0 ]; then
    echo "PASS bad_input.sh: all checks passed"
    exit 0
fi
echo "FAIL bad_input.sh: $failures check(s) failed"
exit 1

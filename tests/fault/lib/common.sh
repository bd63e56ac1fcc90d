# Shared helpers of the fault tests (sourced, not run): a private PostgreSQL 15 cluster, the byoc binaries,
# byoc-api processes, the fake Twilio, PASS/FAIL bookkeeping and the clean-up trap.
#
# Nothing here touches the shared cluster on 127.0.0.1:5432: the private cluster lives in a mktemp folder, listens
# on a free port with its socket in that folder, and is stopped and removed on exit.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
pg_bin="${BYOC_FAULT_PG_BIN:-/usr/lib/postgresql/15/bin}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${BYOC_FAULT_PROFILE:-release}"
workdir="$(mktemp -d -t byoc-fault.XXXXXX)"
pg_data="$workdir/pgdata"
pg_port=""
failures=0
pids=()

log() { printf '%s %s\n' "$(date -u +%H:%M:%S.%3N)" "$*"; }
pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
# check NAME EXPECTED ACTUAL: PASS when equal.
check() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected $2, got $3)"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

now_ms() { date +%s%3N; }

# Runs a PostgreSQL tool as the postgres user when we are root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_init() {
    pg_port="$(free_port)"
    if [ "$(id -u)" = 0 ]; then chown postgres "$workdir"; fi
    as_pg "$pg_bin/initdb" --pgdata="$pg_data" --username=postgres --auth=trust --encoding=UTF8 \
        --no-instructions >"$workdir/initdb.log" 2>&1 || { cat "$workdir/initdb.log"; return 1; }
    pg_start
    as_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qAt -c "CREATE DATABASE byoc" >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/byoc"
}

pg_start() {
    as_pg "$pg_bin/pg_ctl" --pgdata="$pg_data" --log="$workdir/postgres.log" --wait --silent \
        -o "-p $pg_port -k $workdir -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off" start
}

pg_stop() {
    as_pg "$pg_bin/pg_ctl" --pgdata="$pg_data" --wait --silent -m fast stop
}

# psql as the superuser on the private cluster's byoc database.
pg_query() {
    as_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d byoc -qAt -c "$1"
}

cleanup() {
    local status=$?
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -f "$pg_data/postmaster.pid" ]; then
        as_pg "$pg_bin/pg_ctl" --pgdata="$pg_data" --wait --silent -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "${BYOC_FAULT_KEEP:-}" ]; then
        echo "kept $workdir"
    else
        rm -rf "$workdir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'echo "FAIL $(basename "$0"): line $LINENO: a command failed (exit $?)"' ERR
trap 'exit 130' INT TERM

# Builds byoc-api and byoc once (in $profile) and sets $api_bin and $cli_bin. BYOC_FAULT_NO_BUILD=1 uses the
# binaries already in the target folder.
build_binaries() {
    local flag=()
    [ "$profile" = release ] && flag=(--release)
    if [ -z "${BYOC_FAULT_NO_BUILD:-}" ]; then
        (cd "$root" && cargo build --quiet "${flag[@]}" -p byoc-api -p byoc --bin byoc-api --bin byoc)
    fi
    api_bin="$target_dir/$profile/byoc-api"
    cli_bin="$target_dir/$profile/byoc"
    [ -x "$api_bin" ] && [ -x "$cli_bin" ] || { echo "no byoc binaries in $target_dir/$profile" >&2; return 1; }
}

# Fresh keys and JWT secret for this run (exported, so byoc and byoc-api share them).
make_secrets() {
    export BYOC_MASTER_KEYS="1:$(openssl rand -hex 32)"
    export BYOC_JWT_SECRET="fault-test-$(openssl rand -hex 24)"
    unset CREDENTIAL_ENCRYPTION_KEY BYOC_CONFIG_FILE BYOC_JWKS_URL BYOC_LEGACY_FALLBACK_ORGS \
        TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_PHONE_NUMBER
}

start_fake_twilio() {
    python3 "$root/tests/fault/lib/fake_providers.py" "$workdir/twilio.port" &
    pids+=($!)
    local _
    for _ in $(seq 1 50); do
        [ -s "$workdir/twilio.port" ] && break
        sleep 0.1
    done
    twilio_base="http://127.0.0.1:$(cat "$workdir/twilio.port")"
    export TWILIO_API_BASE="$twilio_base"
}

twilio_messages() {
    curl -s "$twilio_base/_stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["messages"])'
}

# start_api NAME: starts byoc-api on a free port with the exported configuration; sets api_pid_NAME and
# api_base_NAME; logs go to $workdir/NAME.log.
start_api() {
    local name="$1" port pid base _
    port="$(free_port)"
    BYOC_BIND="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-info}" "$api_bin" >"$workdir/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    base="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
        if curl -s -o /dev/null --fail "$base/healthz"; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "byoc-api ($name) exited during start-up:" >&2
            cat "$workdir/$name.log" >&2
            return 1
        fi
        sleep 0.1
    done
    printf -v "api_pid_$name" '%s' "$pid"
    printf -v "api_base_$name" '%s' "$base"
}

# Creates an organization with an owner through the CLI; sets org_id, owner_id and token.
seed_org() {
    org_id="$("$cli_bin" org create --name "$1" | tail -n 1 | tr -d '[:space:]')"
    owner_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
    "$cli_bin" member add --org "$org_id" --user "$owner_id" --role owner >/dev/null
    token="$("$cli_bin" token --org "$org_id" --user "$owner_id" --ttl 3600 | tail -n 1 | tr -d '[:space:]')"
}

# request METHOD URL [JSON]: prints "STATUS SECONDS" and leaves the body in $workdir/body.json.
request() {
    local args=(-s -o "$workdir/body.json" -w '%{http_code} %{time_total}' --max-time 30 -X "$1"
        -H "Authorization: Bearer $token")
    if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' --data "$3"); fi
    curl "${args[@]}" "$2" || true
}

# request_bg NAME METHOD URL [JSON]: the same request in the background; "STATUS SECONDS" goes to
# $workdir/NAME.txt and the body to $workdir/NAME.json. Appends the pid to bg_pids.
bg_pids=()
request_bg() {
    local name="$1"
    shift
    local args=(-s -o "$workdir/$name.json" -w '%{http_code} %{time_total}' --max-time 30 -X "$1"
        -H "Authorization: Bearer $token")
    if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' --data "$3"); fi
    { curl "${args[@]}" "$2" || true; } >"$workdir/$name.txt" &
    bg_pids+=($!)
}

# body_field FIELD [FILE]: a dotted field of a JSON body (default $workdir/body.json), or <none>.
body_field() {
    python3 -c 'import json, sys
try:
    value = json.load(open(sys.argv[1]))
    for key in sys.argv[2].split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    print(value)
except Exception:
    print("<none>")' "${2:-$workdir/body.json}" "$1"
}

# at_most A B: true when the number A <= B.
at_most() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'
}

# Adds a Twilio credential through the API at BASE with display name NAME and verifies it; sets cred_id.
add_verified_twilio() {
    local base="$1" name="$2" answer
    answer="$(request POST "$base/api/organization/credentials/twilio" \
        "{\"accountSid\":\"AC0123456789abcdef0123456789abcdef\",\"authToken\":\"fault-token-0f9e8d7c6b5a\",\"phoneNumber\":\"+14155550123\",\"displayName\":\"$name\"}")"
    [ "${answer%% *}" = 201 ] || { echo "adding a Twilio credential answered $answer: $(cat "$workdir/body.json")" >&2; return 1; }
    cred_id="$(body_field id)"
    answer="$(request POST "$base/api/organization/credentials/$cred_id/verify")"
    [ "${answer%% *}" = 200 ] && [ "$(body_field verification_status)" = verified ] || {
        echo "verifying answered $answer: $(cat "$workdir/body.json")" >&2
        return 1
    }
}

finish() {
    if [ "$failures" -eq 0 ]; then
        echo "PASS $(basename "$0"): all checks passed"
        exit 0
    fi
    echo "FAIL $(basename "$0"): $failures check(s) failed (logs: $workdir, kept with BYOC_FAULT_KEEP=1)"
    exit 1
}

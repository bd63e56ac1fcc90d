# Shared helpers for bench/http.sh and bench/rotation_under_load.sh (sourced, not run).
# Each script gets: a release build of byoc-api and byoc, a fresh Postgres database, a configured environment
# (owner DATABASE_URL, generated master keys and JWT secret, providers pointed at a closed local port), a
# running byoc-api, an organization with an owner and a token, wrk runs parsed from bench/wrk/report.lua's
# summary line, and an RSS sampler. Everything it starts (and every pid a script adds to helper_pids) is stopped,
# and the database dropped, on exit.

bench_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$bench_root/target}"
admin_url="${BYOC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
byoc_api_bin="$target_dir/release/byoc-api"
byoc_bin="$target_dir/release/byoc"
workdir="$(mktemp -d)"
server_pid=""
sampler_pid=""
helper_pids=""
database_name=""

bench_cleanup() {
    local pid
    for pid in $helper_pids; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$sampler_pid" ]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
    fi
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "$database_name" ]; then
        psql --quiet "$admin_url" -c "DROP DATABASE IF EXISTS \"$database_name\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$workdir"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# wrk from Debian's package when it is missing (as tests/run installs its tools).
ensure_wrk() {
    command -v wrk >/dev/null && return
    say "installing wrk (apt-get)"
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
    command -v wrk >/dev/null || die "cannot install wrk"
}

# Release binaries of byoc-api and byoc (BYOC_BENCH_SKIP_BUILD=1 uses what is in $target_dir/release).
build_release() {
    if [ "${BYOC_BENCH_SKIP_BUILD:-0}" != 1 ]; then
        say "building byoc-api and byoc (release) in $target_dir"
        (cd "$bench_root" && CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release \
            -p byoc-api -p byoc --bin byoc-api --bin byoc)
    fi
    [ -x "$byoc_api_bin" ] && [ -x "$byoc_bin" ] || die "no release binaries in $target_dir/release"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# A fresh, migrated database; exports DATABASE_URL (the superuser as owner: the service still does its work
# as byoc_app through SET ROLE, as the contract requires).
fresh_database() {
    database_name="byoc_bench_$1_$(random_hex 6)"
    psql --quiet "$admin_url" -c "CREATE DATABASE \"$database_name\"" >/dev/null
    export DATABASE_URL="${admin_url%/*}/$database_name"
    "$byoc_bin" migrate >/dev/null
}

# The service environment apart from the keys: closed provider URLs (nothing leaves the machine), a JWT secret.
configure_service() {
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    export BYOC_BIND="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-warn}"
    export BYOC_JWT_SECRET="bench-$(random_hex 32)"
    export TWILIO_API_BASE="http://127.0.0.1:9" GOOGLE_OAUTH_TOKEN_URL="http://127.0.0.1:9/token" \
        GOOGLE_CALENDAR_API_BASE="http://127.0.0.1:9/calendar/v3/"
    unset BYOC_CONFIG_FILE CREDENTIAL_ENCRYPTION_KEY
}

start_server() {
    "$byoc_api_bin" >"$workdir/server.out" 2>"$workdir/server.err" &
    server_pid=$!
    for _ in $(seq 1 150); do
        if curl --silent --fail "$base/readyz" >/dev/null 2>&1; then return; fi
        kill -0 "$server_pid" 2>/dev/null || { cat "$workdir/server.err" >&2; die "byoc-api exited during start-up"; }
        sleep 0.2
    done
    die "byoc-api not ready after 30 s"
}

# An organization with an owner; sets org_id, user_id and token (2 h) and exports BYOC_BENCH_TOKEN for wrk.
seed_owner() {
    org_id="$("$byoc_bin" org create --name "$1")"
    user_id="$(cat /proc/sys/kernel/random/uuid)"
    "$byoc_bin" member add --org "$org_id" --user "$user_id" --role owner >/dev/null
    token="$("$byoc_bin" token --org "$org_id" --user "$user_id" --ttl 7200)"
}

# add_twilio_credentials COUNT [FIRST]: COUNT Twilio credentials through the API (encrypted by the service,
# pending), named "Twilio FIRST" onwards (FIRST defaults to 1), then checks the listing holds FIRST - 1 + COUNT.
add_twilio_credentials() {
    local count="$1" first="${2:-1}" index
    for index in $(seq "$first" $((first + count - 1))); do
        curl --silent --fail --output /dev/null -X POST "$base/api/organization/credentials/twilio" \
            -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            -d "{\"accountSid\":\"AC$(random_hex 16)\",\"authToken\":\"$(random_hex 16)\",\"phoneNumber\":\"+14155550123\",\"displayName\":\"Twilio $index\"}" \
            || die "adding credential $index failed"
    done
    local listed
    listed="$(curl --silent --fail -H "Authorization: Bearer $token" "$base/api/organization/credentials" \
        | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).length))')"
    [ "$listed" = "$((first - 1 + count))" ] || die "the listing shows $listed credentials, expected $((first - 1 + count))"
}

# CPU time (user + system, in clock ticks) the process PID has used so far.
process_cpu_ticks() {
    # The command name in field 2 may hold spaces: count fields from its closing parenthesis.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# Samples VmRSS of the server every 100 ms into $workdir/rss.max (KiB) until stopped.
start_rss_sampler() {
    echo 0 >"$workdir/rss.max"
    (
        max=0
        while kill -0 "$server_pid" 2>/dev/null; do
            rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)"
            if [ "${rss:-0}" -gt "$max" ]; then max="$rss"; echo "$max" >"$workdir/rss.max"; fi
            sleep 0.1
        done
    ) &
    sampler_pid=$!
}

stop_rss_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
    rss_max_kib="$(cat "$workdir/rss.max")"
    rss_hwm_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")"
}

# run_wrk LABEL PATH SECONDS [auth]: wrk with $threads threads and $connections connections; the summary
# JSON lands in $workdir/LABEL.json, wrk's text report in $workdir/LABEL.txt.
run_wrk() {
    local label="$1" path="$2" seconds="$3" auth="${4:-}"
    BYOC_BENCH_TOKEN="${auth:+$token}" wrk --threads "$threads" --connections "$connections" \
        --duration "${seconds}s" --timeout 5s --latency --script "$bench_root/bench/wrk/report.lua" \
        "$base$path" >"$workdir/$label.txt"
    sed -n 's/^WRK_JSON //p' "$workdir/$label.txt" >"$workdir/$label.json"
    [ -s "$workdir/$label.json" ] || { cat "$workdir/$label.txt" >&2; die "wrk printed no summary for $label"; }
}

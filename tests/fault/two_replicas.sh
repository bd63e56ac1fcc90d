#!/usr/bin/env bash
# Fault test: two byoc-api replicas on one PostgreSQL. A credential deactivated through replica A must be refused
# by replica B within 1 s while B is under wrk load on the endpoint that uses it.
#
# Usage: bash tests/fault/two_replicas.sh [ROUNDS]     (default 5 rounds; BYOC_FAULT_LIMIT_MS, default 1000)
# Starts a private PostgreSQL 15 cluster (the shared one on 5432 is never touched), a fake Twilio and two byoc-api
# processes (release build; BYOC_FAULT_PROFILE=debug for debug), with the default 60 s credential cache, so
# only the change notification (not the TTL) can make B refuse in time. Each round adds and verifies a Twilio
# credential through A, waits until B sends with it, runs wrk against B's POST /api/sms/test, deactivates the
# credential through A and polls B every 20 ms until it answers 409 credential_not_configured. Prints each
# round's delay and the maximum; exits non-zero when a round exceeds the limit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

rounds="${1:-5}"
limit_ms="${BYOC_FAULT_LIMIT_MS:-1000}"
load_s="${BYOC_FAULT_LOAD_SECS:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

build_binaries
log "private PostgreSQL, fake Twilio, byoc-api A and B ($profile)"
pg_init
make_secrets
start_fake_twilio
export BYOC_CACHE_TTL_SECS=60 BYOC_SMS_PER_MINUTE=100000000 BYOC_PROVIDER_CALLS_PER_MINUTE=100000000 \
    BYOC_PROVIDER_DAILY_WARNING=1000000000
"$cli_bin" migrate >"$workdir/migrate.log" 2>&1
seed_org "Replica clinic"
start_api a
start_api b
export BYOC_TOKEN="$token"

# Credential lookups answered from the cache so far (byoc_credential_cache_lookups_total{result="hit"}).
cache_hits() {
    curl -s "$1/metrics" | awk '/^byoc_credential_cache_lookups_total\{result="hit"\}/ {print $2}'
}

max_ms=0
for round in $(seq 1 "$rounds"); do
    add_verified_twilio "$api_base_a" "Round $round"
    used=""
    for _ in $(seq 1 100); do
        if [ "$(request POST "$api_base_b/api/sms/test" '{"to":"+14155550124"}' | cut -d' ' -f1)" = 200 ]; then
            used=yes
            break
        fi
        sleep 0.05
    done
    if [ -z "$used" ]; then
        fail "round $round: replica B never sent with the new credential: $(cat "$workdir/body.json")"
        continue
    fi
    hits_before="$(cache_hits "$api_base_b")"
    wrk -t 2 -c 16 -d "${load_s}s" --latency -s "$root/tests/fault/lib/sms_test.lua" \
        "$api_base_b/api/sms/test" >"$workdir/wrk-$round.txt" 2>&1 &
    wrk_pid=$!
    pids+=("$wrk_pid")
    sleep 1
    if ! result="$(python3 "$root/tests/fault/lib/deactivate_and_poll.py" "$api_base_a" "$api_base_b" "$token" "$cred_id" 20 10000)"; then
        fail "round $round: $result"
        wait "$wrk_pid" || true
        continue
    fi
    wait "$wrk_pid" || true
    hits="$(( $(cache_hits "$api_base_b") - hits_before ))"
    if [ "$hits" -gt 0 ]; then
        pass "round $round: B served the load from its credential cache ($hits cache hits), so only the change notification could make it refuse in time"
    else
        fail "round $round: B's credential cache was not hit under load; the measured delay says nothing about invalidation"
    fi
    delay_ms="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["refused_after_ms"])' "$result")"
    load="$(awk '/Requests\/sec/ {print $2}' "$workdir/wrk-$round.txt")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' "$workdir/wrk-$round.txt")"
    log "round $round: $result; wrk on B: ${load:-?} req/s, ${non2xx:-0} non-2xx (409 after the deactivation)"
    if at_most "$delay_ms" "$limit_ms"; then
        pass "round $round: B refused the deactivated credential ${delay_ms} ms after A deactivated it (limit ${limit_ms} ms)"
    else
        fail "round $round: B refused the deactivated credential only ${delay_ms} ms after A deactivated it (limit ${limit_ms} ms)"
    fi
    max_ms="$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$max_ms" "$delay_ms")"
done
echo "max delay over $rounds rounds: ${max_ms} ms (limit ${limit_ms} ms)"
if grep -q "panicked" "$workdir/a.log" "$workdir/b.log"; then fail "a replica panicked"; fi
finish

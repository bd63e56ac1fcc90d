#!/usr/bin/env bash
# Fault test: PostgreSQL stops while byoc-api serves, then comes back.
#
# Usage: bash tests/fault/postgres_outage.sh
# Starts a private PostgreSQL 15 cluster (mktemp folder, free port; the shared cluster on 5432 is never touched),
# builds byoc-api and byoc once (release; BYOC_FAULT_PROFILE=debug for a debug build, BYOC_FAULT_NO_BUILD=1 to
# use what is already built), migrates, seeds an organization with a verified Twilio credential against a fake
# Twilio, and then, while the service runs:
#   1. stops PostgreSQL (pg_ctl stop -m fast) and checks that the endpoints that need the database answer 503
#      `database_unavailable` with the contract's error body within the pool's acquire timeout, that /readyz
#      answers 503 and /healthz 200, that a test SMS is still sent from the cached role and credential (its
#      records queued), and that once the cache TTL (BYOC_FAULT_CACHE_TTL_SECS, default 12) has passed it
#      answers 503 and sends nothing;
#   2. starts PostgreSQL again and checks recovery without restarting byoc-api: /readyz and the endpoints answer
#      200 again and every audit event and provider-call record of the outage is written.
# Prints PASS/FAIL lines; exits non-zero when a check fails. Everything it started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

# The pool waits this long for a connection before reporting the database unavailable (the credential store's
# ACQUIRE_TIMEOUT); an answer may take that plus this margin.
acquire_timeout_s=5
margin_s=2
limit_s=$((acquire_timeout_s + margin_s))
# Short enough that the outage outlasts it (the script checks both sides of it).
cache_ttl_s="${BYOC_FAULT_CACHE_TTL_SECS:-12}"

build_binaries
log "private PostgreSQL, fake Twilio, byoc-api ($profile)"
pg_init
make_secrets
start_fake_twilio
export BYOC_CACHE_TTL_SECS="$cache_ttl_s" BYOC_SMS_PER_MINUTE=1000 BYOC_PROVIDER_CALLS_PER_MINUTE=1000
"$cli_bin" migrate >"$workdir/migrate.log" 2>&1
seed_org "Outage clinic"
start_api api
base="$api_base_api"
add_verified_twilio "$base" "Main"

# within NAME ANSWER EXPECTED_STATUS [EXPECTED_CODE [LIMIT_S [BODY_FILE]]]: checks the status, the error body
# and the time of an answer "STATUS SECONDS".
within() {
    local name="$1" answer="$2" status="$3" code="${4:-}" limit="${5:-$limit_s}" file="${6:-$workdir/body.json}"
    local seconds="${answer#* }"
    check "$name: status" "$status" "${answer%% *}"
    if [ -n "$code" ]; then
        check "$name: error code" "$code" "$(body_field error.code "$file")"
        if [ "$(body_field error.message "$file")" = "<none>" ]; then fail "$name: error.message missing"; fi
    fi
    if at_most "$seconds" "$limit"; then
        pass "$name: answered in ${seconds}s (limit ${limit}s)"
    else
        fail "$name: answered in ${seconds}s (limit ${limit}s)"
    fi
}

# within_bg NAME LABEL EXPECTED_STATUS [EXPECTED_CODE [LIMIT_S]]: `within` for a request_bg answer.
within_bg() {
    within "$2" "$(cat "$workdir/$1.txt")" "$3" "${4:-}" "${5:-$limit_s}" "$workdir/$1.json"
}

echo "== before the outage"
within "readyz" "$(request GET "$base/readyz")" 200
within "list credentials" "$(request GET "$base/api/organization/credentials")" 200
within "test SMS (warms the credential cache)" "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')" 200
within "audit log" "$(request GET "$base/api/organization/audit?limit=200")" 200
audit_before="$(pg_query "SELECT count(*) FROM credential_audit_log")"

# An audit event still queued when the database goes away: hold a lock that blocks audit inserts, send a test
# SMS (it answers without waiting for its `read` event), then stop PostgreSQL, which ends the lock holder and
# the audit writer's insert. The event must stay queued and be written after recovery.
as_pg "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d byoc -qAt \
    -c "BEGIN; LOCK TABLE credential_audit_log IN EXCLUSIVE MODE; SELECT pg_sleep(120);" >/dev/null 2>&1 &
locker=$!
pids+=("$locker")
for _ in $(seq 1 50); do
    [ "$(pg_query "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'credential_audit_log' AND l.mode = 'ExclusiveLock' AND l.granted")" = 1 ] && break
    sleep 0.1
done
queued_from_ms="$(now_ms)"
within "test SMS while audit writes are blocked" "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')" 200
pending=""
for _ in $(seq 1 50); do
    pending="$(curl -s "$base/metrics" | awk '/^byoc_audit_queue_pending / {print $2}')"
    [ "${pending:-0}" -ge 1 ] && break
    sleep 0.1
done
check "its read event is queued (byoc_audit_queue_pending)" 1 "$pending"
check "and not yet written" "$audit_before" "$(pg_query "SELECT count(*) FROM credential_audit_log")"
queued_to_ms="$(now_ms)"
sent_before="$(twilio_messages)"
log "audit rows before the outage: $audit_before (+1 queued), SMS sent: $sent_before"

echo "== PostgreSQL stopped (pg_ctl stop -m fast)"
pg_stop
wait "$locker" 2>/dev/null || true
outage_started="$(now_ms)"
within "healthz during the outage" "$(request GET "$base/healthz")" 200 "" 1
# Every request that needs the database goes out at once (each waits for the pool on its own), plus a burst of
# 20 concurrent list requests; liveness must stay fast while they all wait.
request_bg readyz GET "$base/readyz"
request_bg list GET "$base/api/organization/credentials"
request_bg audit GET "$base/api/organization/audit"
request_bg add POST "$base/api/organization/credentials/twilio" \
    '{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"t0k3n-outage","phoneNumber":"+14155550123","displayName":"During outage"}'
request_bg verify POST "$base/api/organization/credentials/$cred_id/verify"
request_bg deactivate DELETE "$base/api/organization/credentials/$cred_id"
request_bg sms POST "$base/api/sms/test" '{"to":"+14155550124"}'
burst=20
for i in $(seq 1 "$burst"); do
    request_bg "burst-$i" GET "$base/api/organization/credentials"
done
sleep 0.5
within "healthz while $((burst + 7)) requests wait for the database" "$(request GET "$base/healthz")" 200 "" 1
wait "${bg_pids[@]}"
# /readyz gives up after 2 s (READY_TIMEOUT in routes/health.rs), before the pool's acquire timeout.
within_bg readyz "readyz during the outage" 503 database_unavailable 3
within_bg list "list credentials during the outage" 503 database_unavailable
within_bg audit "audit log during the outage" 503 database_unavailable
within_bg add "add credential during the outage" 503 database_unavailable
within_bg verify "verify during the outage" 503 database_unavailable
within_bg deactivate "deactivate during the outage" 503 database_unavailable
burst_ok=0
burst_max=0
for i in $(seq 1 "$burst"); do
    read -r status seconds <"$workdir/burst-$i.txt" || true
    if [ "$status" = 503 ] && grep -q '"code":"database_unavailable"' "$workdir/burst-$i.json"; then
        burst_ok=$((burst_ok + 1))
    fi
    if at_most "$burst_max" "$seconds"; then burst_max="$seconds"; fi
done
check "$burst concurrent requests during the outage answered 503 database_unavailable" "$burst" "$burst_ok"
if at_most "$burst_max" "$limit_s"; then
    pass "$burst concurrent requests: slowest answered in ${burst_max}s (limit ${limit_s}s)"
else
    fail "$burst concurrent requests: slowest answered in ${burst_max}s (limit ${limit_s}s)"
fi

# A test SMS needs the caller's role, the organization and the Twilio credential: all three were read within the
# cache TTL, so the credential service answers them as last read (its change listener lost the database, a read
# waits at most 500 ms) and the SMS is sent; its usage counter, sms_messages row and read audit event are queued
# and written after recovery.
sent_during=$(( $(twilio_messages) - sent_before ))
within_bg sms "test SMS during the outage, from the cached credential and role" 200 "" 2
check "SMS sent during the outage" 1 "$sent_during"
pending_writes="$(curl -s "$base/metrics" | awk '/^byoc_write_behind_pending / {print $2}')"
if [ "${pending_writes:-0}" -ge 1 ]; then
    pass "its provider-call records are queued (byoc_write_behind_pending = $pending_writes)"
else
    fail "its provider-call records are queued (byoc_write_behind_pending = ${pending_writes:-none})"
fi
# Past the TTL nothing cached is left: the answer is 503 and nothing is sent.
expired_at_ms=$(( outage_started + cache_ttl_s * 1000 + 1000 ))
while [ "$(now_ms)" -lt "$expired_at_ms" ]; do sleep 0.2; done
sent_before_expiry="$(twilio_messages)"
within "test SMS once the cache TTL (${cache_ttl_s}s) has passed" \
    "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')" 503 database_unavailable
check "nothing sent past the TTL" "$sent_before_expiry" "$(twilio_messages)"
expected_audit=$((audit_before + 3))
within "healthz still 200 at the end of the outage" "$(request GET "$base/healthz")" 200 "" 1
if kill -0 "$api_pid_api" 2>/dev/null; then pass "byoc-api still running"; else fail "byoc-api exited"; fi
log "outage lasted $(( $(now_ms) - outage_started )) ms"

echo "== PostgreSQL started again"
pg_start
restarted="$(now_ms)"
ready=""
for _ in $(seq 1 200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=yes; break; fi
    sleep 0.05
done
if [ -n "$ready" ]; then
    pass "readyz 200 again $(( $(now_ms) - restarted )) ms after PostgreSQL came back, without restarting byoc-api"
else
    fail "readyz not 200 within 10 s of PostgreSQL coming back"
fi
within "list credentials after recovery" "$(request GET "$base/api/organization/credentials")" 200
check "the credential is still active after recovery (the deactivation during the outage did not happen)" \
    True "$(body_field 0.is_active)"
check "nothing was added during the outage" 1 "$(pg_query "SELECT count(*) FROM organization_api_credentials")"
within "test SMS after recovery" "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')" 200
within "audit log after recovery" "$(request GET "$base/api/organization/audit?limit=200")" 200
# The audit writer retries in the background; give it a moment after recovery.
audit_after=""
for _ in $(seq 1 100); do
    audit_after="$(pg_query "SELECT count(*) FROM credential_audit_log")"
    [ "$audit_after" -ge "$expected_audit" ] && break
    sleep 0.1
done
check "audit rows after recovery (every read of the run, none lost)" "$expected_audit" "$audit_after"
# The database stamps every event with the time it writes it; a read queued across the outage also says when
# the service recorded it (detail.queued_at).
check "the read queued across the outage keeps the time it was recorded (detail.queued_at)" 1 \
    "$(pg_query "SELECT count(*) FROM credential_audit_log WHERE action = 'read' AND (detail->>'queued_at')::timestamptz BETWEEN to_timestamp($queued_from_ms / 1000.0) AND to_timestamp($queued_to_ms / 1000.0)")"
pending_writes=""
for _ in $(seq 1 100); do
    pending_writes="$(curl -s "$base/metrics" | awk '/^byoc_write_behind_pending / {print $2}')"
    [ "${pending_writes:-1}" = 0 ] && break
    sleep 0.1
done
check "the provider-call records queued during the outage are written (byoc_write_behind_pending)" 0 "$pending_writes"
sent_total="$(twilio_messages)"
check "every SMS sent, the outage's included, has its sms_messages row" "$sent_total" \
    "$(pg_query "SELECT count(*) FROM sms_messages")"
check "every SMS sent is counted in provider_usage_daily" "$sent_total" \
    "$(pg_query "SELECT coalesce(sum(calls), 0) FROM provider_usage_daily WHERE provider = 'twilio'")"
check "the audit queue is empty again" 0 "$(curl -s "$base/metrics" | awk '/^byoc_audit_queue_pending / {print $2}')"
check "audit chain intact after recovery" "t" "$(pg_query "SELECT intact FROM byoc_audit_chain_check('$org_id')")"
if grep -q "panicked" "$workdir/api.log"; then fail "byoc-api panicked"; else pass "no panic in the byoc-api log"; fi
if grep -E ' status=5[0-9]{2} ' "$workdir/api.log" | grep -qv ' status=503 '; then
    fail "byoc-api answered a 5xx other than 503"
else
    pass "no 5xx other than 503 in the byoc-api log"
fi
if [ "$failures" -gt 0 ]; then
    echo "--- byoc-api log (last 40 lines)"
    tail -n 40 "$workdir/api.log"
fi
finish

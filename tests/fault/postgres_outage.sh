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
#      answers 503 and /healthz 200, and what a test SMS does during the outage;
#   2. starts PostgreSQL again and checks recovery without restarting byoc-api: /readyz and the endpoints answer
#      200 again and every audit event of the outage is written.
# Prints PASS/FAIL lines; exits non-zero when a check fails. Everything it started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

# The pool waits this long for a connection before reporting the database unavailable (the credential store's
# ACQUIRE_TIMEOUT); an answer may take that plus this margin.
acquire_timeout_s=5
margin_s=2
limit_s=$((acquire_timeout_s + margin_s))
cache_ttl_s="${BYOC_FAULT_CACHE_TTL_SECS:-60}"

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

# within NAME ANSWER EXPECTED_STATUS [EXPECTED_CODE]: checks the status, the error code and the time.
within() {
    local name="$1" answer="$2" status="$3" code="${4:-}" seconds
    seconds="${answer#* }"
    check "$name: status" "$status" "${answer%% *}"
    if [ -n "$code" ]; then
        check "$name: error code" "$code" "$(body_field error.code)"
        if [ "$(body_field error.message)" = "<none>" ]; then fail "$name: error.message missing"; fi
    fi
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$seconds" "$limit_s"; then
        pass "$name: answered in ${seconds}s (limit ${limit_s}s)"
    else
        fail "$name: answered in ${seconds}s (limit ${limit_s}s)"
    fi
}

echo "== before the outage"
within "readyz" "$(request GET "$base/readyz")" 200
within "list credentials" "$(request GET "$base/api/organization/credentials")" 200
within "test SMS (warms the credential cache)" "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')" 200
within "audit log" "$(request GET "$base/api/organization/audit?limit=200")" 200
sent_before="$(twilio_messages)"
audit_before="$(pg_query "SELECT count(*) FROM credential_audit_log")"
log "audit rows before the outage: $audit_before, SMS sent: $sent_before"

echo "== PostgreSQL stopped (pg_ctl stop -m fast)"
pg_stop
outage_started="$(now_ms)"
within "healthz during the outage" "$(request GET "$base/healthz")" 200
within "readyz during the outage" "$(request GET "$base/readyz")" 503 database_unavailable
within "list credentials during the outage" "$(request GET "$base/api/organization/credentials")" 503 database_unavailable
within "audit log during the outage" "$(request GET "$base/api/organization/audit")" 503 database_unavailable
within "add credential during the outage" "$(request POST "$base/api/organization/credentials/twilio" \
    '{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"t0k3n-outage","phoneNumber":"+14155550123","displayName":"During outage"}')" \
    503 database_unavailable
within "deactivate during the outage" "$(request DELETE "$base/api/organization/credentials/$cred_id")" 503 database_unavailable
# A test SMS needs the caller's role (organization_members) and the Twilio credential. Today both come from
# the database during an outage: the role lookup has no cache, and the credential cache is dropped and
# bypassed while the change listener is disconnected (so no replica can miss a deactivation). The service
# therefore fails closed: 503, nothing sent. BYOC_FAULT_EXPECT_CACHED_SMS=1 checks the stronger behaviour
# instead (the cached credential keeps sending until its TTL and the read's audit event lands after recovery).
sms_answer="$(request POST "$base/api/sms/test" '{"to":"+14155550124"}')"
sent_during=$(( $(twilio_messages) - sent_before ))
if [ -n "${BYOC_FAULT_EXPECT_CACHED_SMS:-}" ]; then
    within "test SMS during the outage, from the cached credential" "$sms_answer" 200
    check "SMS sent during the outage" 1 "$sent_during"
    expected_audit=$((audit_before + 2))
else
    within "test SMS during the outage (fails closed)" "$sms_answer" 503 database_unavailable
    check "SMS sent during the outage" 0 "$sent_during"
    echo "NOTE the credential cached before the outage is not used: the role lookup and the credential read need the database (see tests/fault/README.md)"
    expected_audit=$((audit_before + 1))
fi
within "healthz still 200 at the end of the outage" "$(request GET "$base/healthz")" 200
kill -0 "$api_pid_api" && pass "byoc-api still running" || fail "byoc-api exited"
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
check "the credential is still active after recovery" True "$(body_field 0.is_active)"
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

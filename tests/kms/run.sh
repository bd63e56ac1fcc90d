#!/usr/bin/env bash
# Master keys held by KMS, end to end against moto's local KMS server (no AWS account, nothing leaves the machine).
#
# Usage (from anywhere): bash tests/kms/run.sh
#
# 1. Installs moto[server] (PyPI, pinned) into a virtualenv under the target directory, starts moto's server on a
#    free port (through tests/kms/moto_kms.py, which adds AWS's refusal of a disabled key's Encrypt and Decrypt,
#    which moto 5.2.6 lacks) and creates a KMS key with an alias there (AWS_REGION us-east-1, dummy credentials,
#    AWS_ENDPOINT_URL_KMS pointing at moto).
# 2. Builds byoc-api and byoc (debug), creates a fresh database on the local PostgreSQL (BYOC_TEST_DATABASE_URL,
#    default postgres://postgres@127.0.0.1:5432/postgres; dropped on exit) with an organization, an owner and a
#    Twilio credential stored under an environment key (version 1).
# 3. `byoc keys create --kms alias/…` adds version 2, held by KMS; byoc-api starts on both keys, a credential is
#    stored under version 2; with byoc-api serving `byoc keys rotate` moves every credential to version 2 and
#    `byoc keys check` decrypts them all; then BYOC_MASTER_KEYS is removed and byoc-api starts on the KMS-held key
#    alone, answers, exports byoc_kms_held_key_versions 1 and a last KMS contact, and `byoc keys list` shows
#    version 2 held by KMS, active, with both credentials.
# 4. With the KMS key disabled byoc-api refuses to start with one line naming KMS and the key (no panic), and so
#    does it with the key's alias deleted; with the key enabled again byoc-api starts, then moto is stopped and
#    the running service still answers and /readyz stays ready.
#
# Prints PASS/FAIL per check and exits non-zero on any failure. BYOC_KMS_KEEP=1 keeps the logs.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
server_url="${BYOC_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
moto_version="5.2.6"
venv="$target_dir/moto-venv"

workdir="$(mktemp -d -t byoc-kms.XXXXXX)"
database="byoc_kms_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
database_created=""
moto_pid=""
server_pid=""
failures=0

pass() { printf 'PASS %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}

cleanup() {
    local status=$?
    stop_server
    if [ -n "$moto_pid" ]; then
        kill -TERM "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    if [ -n "$database_created" ]; then
        psql "$server_url" -qAt -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ -n "${BYOC_KMS_KEEP:-}" ]; then
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

# 1. moto's KMS.
if [ ! -x "$venv/bin/python" ] || [ "$("$venv/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: //p')" != "$moto_version" ]; then
    echo "tests/kms/run.sh: installing moto[server]==$moto_version into $venv (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi
moto_port="$(free_port)"
"$venv/bin/python" "$root/tests/kms/moto_kms.py" -H 127.0.0.1 -p "$moto_port" >"$workdir/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break
    sleep 0.1
done
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$moto_port"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
alias_name="alias/byoc-test"
kms() { "$venv/bin/python" -c "import sys, boto3
kms = boto3.client('kms', endpoint_url='$AWS_ENDPOINT_URL_KMS', region_name='us-east-1')
$1" "${@:2}"; }
key_id="$(kms "key = kms.create_key(Description='byoc test')['KeyMetadata']['KeyId']
kms.create_alias(AliasName=sys.argv[1], TargetKeyId=key)
print(key)" "$alias_name")"

# 2. byoc on a fresh database with an environment key.
(cd "$root" && cargo build --quiet --workspace --all-features --bin byoc-api --bin byoc)
api_bin="$target_dir/debug/byoc-api"
cli_bin="$target_dir/debug/byoc"
psql "$server_url" -qAt -c "CREATE DATABASE $database" >/dev/null
database_created=1
database_url="$(python3 -c 'import sys; from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1]); print(urlunsplit(parts._replace(path="/" + sys.argv[2])))' "$server_url" "$database")"
unset CREDENTIAL_ENCRYPTION_KEY BYOC_CONFIG_FILE BYOC_JWKS_URL BYOC_LEGACY_FALLBACK_ORGS BYOC_PUBLIC_URL \
    BYOC_ACTIVE_KEY_VERSION TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_PHONE_NUMBER
export DATABASE_URL="$database_url"
environment_keys="1:$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export BYOC_MASTER_KEYS="$environment_keys"
export BYOC_JWT_SECRET="kms-test-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
export TWILIO_API_BASE="http://127.0.0.1:9"
"$cli_bin" migrate >"$workdir/migrate.log" 2>&1 || { cat "$workdir/migrate.log"; exit 1; }
org_id="$("$cli_bin" org create --name "KMS clinic" | tr -d '[:space:]')"
owner_id="$(python3 -c 'import uuid; print(uuid.uuid4())')"
"$cli_bin" member add --org "$org_id" --user "$owner_id" --role owner >/dev/null
token="$("$cli_bin" token --org "$org_id" --user "$owner_id" --ttl 3600 | tr -d '[:space:]')"

port="$(free_port)"
base="http://127.0.0.1:$port"
# Starts byoc-api and waits until it is ready; returns 1 (with its log in $workdir/api.log) when it exits instead.
start_server() {
    BYOC_BIND="127.0.0.1:$port" RUST_LOG=info "$api_bin" >"$workdir/api.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        curl -s -o /dev/null --fail "$base/readyz" && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            wait "$server_pid" 2>/dev/null || true
            server_pid=""
            return 1
        fi
        sleep 0.1
    done
    return 1
}
add_twilio() {
    curl -s -o "$workdir/created.json" -w '%{http_code}' -X POST "$base/api/organization/credentials/twilio" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"accountSid\": \"AC$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')\", \"authToken\": \"$1\", \
             \"phoneNumber\": \"+14155550123\", \"displayName\": \"$2\"}"
}
key_versions() {
    curl -s "$base/api/organization/credentials" -H "Authorization: Bearer $token" \
        | python3 -c 'import json, sys; print(" ".join(sorted(str(c["encryption_key_version"]) for c in json.load(sys.stdin))))'
}

start_server || { cat "$workdir/api.log"; exit 1; }
[ "$(add_twilio "env-secret-token-one" "Under the environment key")" = 201 ] || { cat "$workdir/created.json"; exit 1; }
stop_server

# 3. A KMS-held version, used beside the environment key, then alone.
if created="$("$cli_bin" keys create --kms "$alias_name" 2>"$workdir/create.log")" && [ "$created" = 2 ]; then
    pass "byoc keys create --kms $alias_name printed version 2"
else
    fail "byoc keys create --kms: printed '${created:-}'"; cat "$workdir/create.log"
fi
if psql "$database_url" -qAt -c "SELECT count(*) FROM master_keys WHERE key_version = 2 AND kms_key_id = '$alias_name' \
        AND length(check_value) = 32" | grep -qx 1; then
    pass "master_keys holds version 2's ciphertext and check value"
else
    fail "master_keys does not hold version 2"
fi
if start_server; then
    pass "byoc-api starts on the environment key and the KMS-held key"
else
    fail "byoc-api refused the KMS-held key:"; tail -n 5 "$workdir/api.log"
fi
if [ "$(add_twilio "kms-secret-token-two" "Under the KMS-held key")" = 201 ] && [ "$(key_versions)" = "1 2" ]; then
    pass "a new credential is wrapped by the KMS-held version 2 (active: the highest)"
else
    fail "credentials per key version: $(key_versions)"
fi
if "$cli_bin" keys rotate >"$workdir/rotate.log" 2>&1 && "$cli_bin" keys check >"$workdir/check.log" 2>&1 \
    && grep -q "all 2 credential(s) decrypt" "$workdir/check.log" && [ "$(key_versions)" = "2 2" ]; then
    pass "with byoc-api serving, byoc keys rotate moves every credential to version 2; byoc keys check: all 2 decrypt"
else
    fail "rotate or check:"; cat "$workdir/rotate.log" "$workdir/check.log"
fi
stop_server
unset BYOC_MASTER_KEYS
if start_server && [ "$(key_versions)" = "2 2" ]; then
    pass "byoc-api starts on the KMS-held key alone and lists both credentials under version 2"
else
    fail "byoc-api without environment keys:"; tail -n 5 "$workdir/api.log"
fi
stop_server
if "$cli_bin" keys check 2>&1 | grep -q "all 2 credential(s) decrypt"; then
    pass "byoc keys check without environment keys: all 2 credential(s) decrypt"
else
    fail "byoc keys check without environment keys"
fi
"$cli_bin" keys list >"$workdir/list.log" 2>&1 || true
if grep -qP "^2\tkms:$alias_name\tactive\t[0-9a-f]{64}\t2$" "$workdir/list.log" && ! grep -q "^1	" "$workdir/list.log"; then
    pass "byoc keys list: version 2 held by kms:$alias_name, active, 2 credentials"
else
    fail "byoc keys list:"; cat "$workdir/list.log"
fi
if grep -rqE "env-secret-token-one|kms-secret-token-two" "$workdir"/*.log; then
    fail "a credential secret appears in a log"
fi

# 4. A KMS key out of reach refuses the start; a KMS that goes away later does not stop a running service.
# Expects byoc-api to refuse to start, its last line naming KMS, the key and $1 (what KMS answered).
refused_start() {
    if start_server; then
        fail "byoc-api started although its KMS key $2"
        stop_server
        return
    fi
    local line
    line="$(grep -v '^\s*$' "$workdir/api.log" | tail -n 1)"
    if echo "$line" | grep -q "KMS key $alias_name: KMS refused: $1" && ! grep -q "panicked" "$workdir/api.log"; then
        pass "a KMS key that $2 refuses the start: $line"
    else
        fail "the refused start ($2) does not name KMS and the key:"; tail -n 5 "$workdir/api.log"
    fi
}
kms "kms.disable_key(KeyId=sys.argv[1])" "$key_id"
refused_start DisabledException "is disabled"
kms "kms.enable_key(KeyId=sys.argv[1])" "$key_id"
kms "kms.delete_alias(AliasName=sys.argv[1])" "$alias_name"
refused_start NotFoundException "is not found (alias deleted)"
kms "kms.create_alias(AliasName=sys.argv[1], TargetKeyId=sys.argv[2])" "$alias_name" "$key_id"
if start_server; then
    metrics="$(curl -s "$base/metrics")"
    if echo "$metrics" | grep -qx "byoc_kms_held_key_versions 1" \
        && echo "$metrics" | grep -qE "^byoc_kms_last_success_timestamp_seconds [1-9][0-9]{9}$"; then
        pass "/metrics: byoc_kms_held_key_versions 1 and the time of the last KMS contact"
    else
        fail "/metrics lacks the KMS gauges:"; echo "$metrics" | grep "byoc_kms" || true
    fi
    kill -TERM "$moto_pid"; wait "$moto_pid" 2>/dev/null || true; moto_pid=""
    if curl -s -o /dev/null --fail "$base/readyz" && [ "$(key_versions)" = "2 2" ] \
        && [ "$(add_twilio "after-kms-stopped" "Stored with KMS gone")" = 201 ] && [ "$(key_versions)" = "2 2 2" ]; then
        pass "with moto stopped the running byoc-api stays ready, lists and stores credentials"
    else
        fail "byoc-api stopped answering when KMS went away"
    fi
    stop_server
else
    fail "byoc-api did not start with the key enabled and its alias back:"; tail -n 5 "$workdir/api.log"
fi
if "$cli_bin" keys check >"$workdir/nokms.log" 2>&1; then
    fail "byoc keys check ran without KMS"
elif tail -n 1 "$workdir/nokms.log" | grep -q "KMS key $alias_name: KMS is unreachable"; then
    pass "without KMS the CLI refuses after its bounded retry: $(tail -n 1 "$workdir/nokms.log")"
else
    fail "the CLI without KMS:"; tail -n 3 "$workdir/nokms.log"
fi

if [ "$failures" -eq 0 ]; then
    echo "PASS tests/kms/run.sh: all checks passed"
    exit 0
fi
echo "FAIL tests/kms/run.sh: $failures check(s) failed"
exit 1

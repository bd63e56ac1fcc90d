#!/usr/bin/env bash
# Where the server time of an uncached `get_credential` goes: pgbench throughput of the tenant read the store
# sends (`TENANT_WINNING_CREDENTIAL` in crates/byoc-credential-store/src/postgres/mod.rs, restated below: keep
# the two in step) next to the raw primary-key select of the criterion bench, with the steps in between, and
# the cost per event of appending audit events through `byoc_append_audit_events`. No Rust client is
# involved: this is the server's share.
#
# Usage: bash bench/tenant_read_cost.sh [--seconds S] [--rounds N] [--clients N]
# Defaults: 5 s per run, 3 interleaved rounds, 4 clients (2 pgbench threads): enough to keep both cores busy,
# so throughput measures CPU per statement rather than round-trip latency.
#
# Variants (prepared statements, one organization among 1,000, one verified Twilio credential each):
#   select_1       SELECT 1                                     the protocol and round-trip floor
#   raw_pk         raw primary-key select, as the owner         the baseline of the criterion bench
#   by_type        the winning credential by (org, type) off its index, as the owner: no context, no RLS
#   cte_lateral    the same through the store's CTE + LATERAL shape, no set_config, as the owner
#   context_owner  the store's statement (set_config of the context) as the owner: RLS bypassed
#   tenant_read    the store's statement as byoc_app: context, CTE + LATERAL, row-level security
# Each line prints transactions per second and the ratio to raw_pk from the same rounds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

seconds=5
rounds=3
clients=4
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        *) die "unknown argument $1 (see the header of this script)" ;;
    esac
done
command -v pgbench >/dev/null || die "pgbench is missing (it comes with Debian's postgresql-15 package)"

build_release
fresh_database tenant_read
org_id="11111111-1111-1111-1111-111111111111"
credential_id="22222222-2222-2222-2222-222222222222"
psql --quiet -v ON_ERROR_STOP=1 "$DATABASE_URL" <<SQL >/dev/null
INSERT INTO organizations (id, name) VALUES ('$org_id', 'Bench');
INSERT INTO organization_api_credentials (id, org_id, credential_type, encrypted_data, encryption_key_version,
                                          display_name, verification_status)
VALUES ('$credential_id', '$org_id', 'twilio', decode(repeat('ab', 200), 'hex'), 1, 'Twilio', 'verified');
INSERT INTO organizations (name) SELECT 'Other ' || n FROM generate_series(1, 999) n;
INSERT INTO organization_api_credentials (org_id, credential_type, encrypted_data, encryption_key_version,
                                          display_name, verification_status)
SELECT id, 'twilio', decode(repeat('ab', 200), 'hex'), 1, 'Twilio', 'verified'
FROM organizations WHERE id <> '$org_id';
ANALYZE;
SQL

columns="c.id, c.org_id, c.credential_type, c.display_name, c.public_hint, c.is_active, c.verification_status,
 c.last_verified_at, c.verification_error, c.created_at, c.updated_at, c.created_by, c.encryption_key_version,
 c.encrypted_data"
winner="c.org_id = ctx.org_id AND c.credential_type = :ctype AND c.is_active
 ORDER BY (c.verification_status = 'verified') DESC, c.created_at DESC, c.id DESC LIMIT 1"
context="pg_catalog.set_config('byoc.org_id', :org::uuid::text, true)::uuid AS org_id,
 pg_catalog.set_config('byoc.user_id', coalesce(NULL::uuid::text, ''), true) AS user_id,
 pg_catalog.set_config('byoc.service', coalesce(:svc::text, ''), true) AS service"
allowed="CASE WHEN c.id IS NOT NULL THEN true
 ELSE public.byoc_ctx_is_service() OR public.byoc_ctx_member_role() IS NOT NULL END AS ctx_allowed"

echo "SELECT 1;" >"$workdir/select_1.sql"
echo "SELECT ${columns//c./} FROM organization_api_credentials WHERE id = :cid::uuid;" >"$workdir/raw_pk.sql"
echo "SELECT $columns FROM organization_api_credentials c WHERE ${winner//ctx.org_id/:org::uuid};" \
    >"$workdir/by_type.sql"
echo "WITH ctx AS MATERIALIZED (SELECT :org::uuid AS org_id) SELECT $columns FROM ctx LEFT JOIN LATERAL (
 SELECT * FROM public.organization_api_credentials c WHERE $winner) c ON true;" >"$workdir/cte_lateral.sql"
tenant_read="WITH ctx AS MATERIALIZED (SELECT $context) SELECT $allowed, $columns FROM ctx LEFT JOIN LATERAL (
 SELECT * FROM public.organization_api_credentials c WHERE $winner) c ON true;"
echo "$tenant_read" >"$workdir/context_owner.sql"
echo "$tenant_read" >"$workdir/tenant_read.sql"

# pgbench_tps SCRIPT ROLE: transactions per second of SCRIPT run as ROLE (SET ROLE through PGOPTIONS).
pgbench_tps() {
    PGOPTIONS="-c role=$2" pgbench --no-vacuum --protocol=prepared --client="$clients" --jobs=2 \
        --time="$seconds" --file="$workdir/$1.sql" \
        -D cid="$credential_id" -D org="$org_id" -D svc=lead-scorer -D ctype=twilio "$DATABASE_URL" 2>&1 \
        | awk '/^tps = / {print $3}'
}

variants="select_1:postgres raw_pk:postgres by_type:postgres cte_lateral:postgres context_owner:postgres
 tenant_read:byoc_app"
declare -A total
for variant in $variants; do total[${variant%%:*}]=0; done
say "pgbench, $clients clients, $rounds rounds of ${seconds} s per variant, interleaved"
for round in $(seq 1 "$rounds"); do
    for variant in $variants; do
        tps="$(pgbench_tps "${variant%%:*}" "${variant##*:}")"
        [ -n "$tps" ] || die "pgbench failed for ${variant%%:*}"
        total[${variant%%:*}]="$(python3 -c "print(${total[${variant%%:*}]} + $tps)")"
    done
    say "round $round done"
done
for variant in $variants; do
    name="${variant%%:*}"
    python3 -c "
tps = ${total[$name]} / $rounds
base = ${total[raw_pk]} / $rounds
print(f'{\"$name\":<14} {tps:>9.0f} tps   ratio to raw_pk {tps / base:.2f}x')"
done

# Audit appends: 200 events per statement, as the store's batch writer sends them (context CTE + function).
events=200
cat >"$workdir/audit.sql" <<SQL
WITH ctx AS MATERIALIZED (SELECT byoc_enter_context('$org_id'::uuid, NULL::uuid, 'lead-scorer'))
SELECT byoc_append_audit_events('$org_id'::uuid, array_fill('read'::text, ARRAY[$events]),
       array_fill('$credential_id'::uuid, ARRAY[$events]), array_fill('twilio'::text, ARRAY[$events]),
       array_fill('{"purpose":"sms:hot_lead"}'::text, ARRAY[$events])) FROM ctx;
SQL
audit_tps="$(PGOPTIONS="-c role=byoc_app" pgbench --no-vacuum --protocol=simple --client=1 \
    --time="$seconds" --file="$workdir/audit.sql" "$DATABASE_URL" 2>&1 | awk '/^tps = / {print $3}')"
[ -n "$audit_tps" ] || die "pgbench failed for the audit appends"
python3 -c "print(f'audit append   {1e6 / ($audit_tps * $events):.1f} µs of server time per event \
(batches of $events, one client)')"

#!/usr/bin/env bash
# HTTP throughput and latency of byoc-api on Postgres: `GET /api/organization/credentials` (JWT check, role
# from the replica's role cache, one RLS-scoped read) against `GET /healthz` (the framework floor) and against
# pgbench running the same SQL statement the endpoint sends (prepared, as byoc_app, 8 clients), in one run:
# the ratios credentials ÷ healthz and credentials ÷ pgbench (target >= 0.5), p99 ÷ p50 (target <= 5); plus
# `GET /api/organization/audit?limit=50` (a full page) against pgbench running its statement the same way;
# byoc-api's CPU time per credentials request (user + system, from /proc: steadier than req/s on a busy machine)
# and its peak RSS under that load (target <= 64 MiB); and `GET /api/calendar/availability` with a cached, verified
# Google Calendar credential against a fake Google answering at once (bench/node/fake_google.js), with wrk asking
# the fake's free/busy directly as its baseline (ratio target >= 0.5). BYOC_HTTP_WORKERS in the environment sets
# the service's worker threads.
#
# Usage:
#   bash bench/http.sh [--duration SECS] [--connections N] [--threads N] [--credentials N]
#   bash bench/http.sh --saturation 60      # 60 s at saturation on the credentials endpoint:
#                                           # errors (status >= 400 + socket errors; must be 0) and p99
# Defaults: 15 s per endpoint, 32 connections, 2 threads, 5 credentials in the benchmarked organization.
# Needs the local Postgres (BYOC_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres),
# node, curl, python3; installs wrk with apt-get when it is missing. A fresh database is created and dropped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

duration=15
connections=32
threads=2
credentials=5
saturation=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --credentials) credentials="$2"; shift 2 ;;
        --saturation) saturation="$2"; shift 2 ;;
        *) die "unknown argument $1 (see the header of this script)" ;;
    esac
done

ensure_wrk
build_release
configure_service
# A fake Google answering at once for the availability run (bench/node/fake_google.js), and a provider-call
# limit the run cannot reach (the default 120 per minute would refuse it after the first 120).
node "$bench_root/bench/node/fake_google.js" "$workdir/google.port" &
helper_pids="$!"
for _ in $(seq 1 50); do [ -s "$workdir/google.port" ] && break; sleep 0.1; done
[ -s "$workdir/google.port" ] || die "the fake Google did not start"
google_base="http://127.0.0.1:$(cat "$workdir/google.port")"
export GOOGLE_OAUTH_TOKEN_URL="$google_base/token" GOOGLE_CALENDAR_API_BASE="$google_base/calendar/v3/" \
    BYOC_PROVIDER_CALLS_PER_MINUTE=100000000
fresh_database http
export BYOC_MASTER_KEYS="1:$("$byoc_bin" keys generate)"
start_server
seed_owner "Bench clinic"
add_twilio_credentials "$credentials"
say "byoc-api pid $server_pid on $base, database $database_name, $credentials credentials listed per request"
say "wrk: $threads threads, $connections connections"

# Warm-up (connections, pools, caches), not reported.
run_wrk warmup /api/organization/credentials 3 auth

if [ -n "$saturation" ]; then
    start_rss_sampler
    run_wrk saturation /api/organization/credentials "$saturation" auth
    stop_rss_sampler
    grep -v '^WRK_JSON' "$workdir/saturation.txt"
    node - "$workdir/saturation.json" "$rss_max_kib" "$rss_hwm_kib" "$saturation" <<'EOF'
const [file, rssMax, rssHwm, seconds] = process.argv.slice(2);
const r = JSON.parse(require('fs').readFileSync(file, 'utf8'));
const errors = r.status_errors + r.socket_errors;
console.log(`saturation ${seconds} s on GET /api/organization/credentials: ${r.requests} requests, ` +
  `${r.rps.toFixed(0)} req/s, p50 ${(r.p50_us / 1000).toFixed(2)} ms, p99 ${(r.p99_us / 1000).toFixed(2)} ms, ` +
  `max ${(r.max_us / 1000).toFixed(1)} ms`);
console.log(`errors: ${errors} (status >= 400: ${r.status_errors}, connect ${r.connect_errors}, read ${r.read_errors}, ` +
  `write ${r.write_errors}, timeouts ${r.timeouts}) ${errors === 0 ? '(zero: OK)' : '(NOT zero)'}`);
console.log(`byoc-api RSS: max sampled ${(rssMax / 1024).toFixed(1)} MiB, VmHWM ${(rssHwm / 1024).toFixed(1)} MiB ` +
  `(target <= 64 MiB: ${Math.max(rssMax, rssHwm) <= 65536 ? 'met' : 'NOT met'})`);
process.exitCode = errors === 0 ? 0 : 1;
EOF
    exit
fi

start_rss_sampler
cpu_before="$(process_cpu_ticks "$server_pid")"
run_wrk credentials /api/organization/credentials "$duration" auth
cpu_after="$(process_cpu_ticks "$server_pid")"
run_wrk healthz /healthz "$duration"
stop_rss_sampler

# The database's own rate for the endpoint's work: the one statement the Postgres store sends for a
# credentials list (TENANT_CREDENTIAL_LIST in crates/byoc-credential-store/src/postgres/mod.rs: context,
# membership check and rows), prepared, as byoc_app, with the benchmark's organization and owner. byoc-api is
# idle meanwhile.
cat >"$workdir/list.sql" <<SQL
WITH ctx AS MATERIALIZED (SELECT pg_catalog.set_config('byoc.org_id', '$org_id'::uuid::text, true)::uuid AS org_id, pg_catalog.set_config('byoc.user_id', coalesce('$user_id'::uuid::text, ''), true) AS user_id, pg_catalog.set_config('byoc.service', coalesce(NULL::text, ''), true) AS service) SELECT CASE WHEN c.id IS NOT NULL THEN true ELSE public.byoc_ctx_is_service() OR public.byoc_ctx_member_role() IS NOT NULL END AS ctx_allowed, c.id IS NOT NULL AS ctx_matched, c.* FROM ctx LEFT JOIN LATERAL (SELECT id, org_id, credential_type, display_name, public_hint, provider_account_id, is_active, verification_status, last_verified_at, verification_error, created_at, updated_at, created_by, encryption_key_version FROM public.organization_api_credentials WHERE org_id = ctx.org_id ORDER BY created_at DESC, id DESC OFFSET 0) c ON true ORDER BY c.created_at DESC, c.id DESC;
SQL
PGOPTIONS="-c role=byoc_app" pgbench --no-vacuum --protocol=prepared --client=8 --jobs=2 \
    --time="$duration" --file="$workdir/list.sql" "$DATABASE_URL" >"$workdir/pgbench.txt" 2>&1 \
    || { cat "$workdir/pgbench.txt" >&2; die "pgbench failed"; }
pgbench_tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$workdir/pgbench.txt" | head -n 1)"
[ -n "$pgbench_tps" ] || { cat "$workdir/pgbench.txt" >&2; die "pgbench printed no tps"; }

# The audit page: a full page of 50 events (each credential added wrote one "created" event).
audit_page=50
if [ "$credentials" -lt "$audit_page" ]; then
    add_twilio_credentials $((audit_page - credentials)) $((credentials + 1))
fi
run_wrk audit_warmup "/api/organization/audit?limit=$audit_page" 2 auth
run_wrk audit "/api/organization/audit?limit=$audit_page" "$duration" auth

# The audit page's statement (TENANT_AUDIT_PAGE in the same file, no filter given): context, membership check,
# the newest 50.
cat >"$workdir/audit.sql" <<SQL
WITH ctx AS MATERIALIZED (SELECT pg_catalog.set_config('byoc.org_id', '$org_id'::uuid::text, true)::uuid AS org_id, pg_catalog.set_config('byoc.user_id', coalesce('$user_id'::uuid::text, ''), true) AS user_id, pg_catalog.set_config('byoc.service', coalesce(NULL::text, ''), true) AS service) SELECT CASE WHEN c.id IS NOT NULL THEN true ELSE public.byoc_ctx_is_service() OR public.byoc_ctx_member_role() IS NOT NULL END AS ctx_allowed, c.id IS NOT NULL AS ctx_matched, c.* FROM ctx LEFT JOIN LATERAL (SELECT id, org_id, seq, at, actor, action, credential_id, credential_type, detail::text AS detail FROM public.credential_audit_log WHERE org_id = ctx.org_id AND id < 9223372036854775807::bigint AND (NULL::text IS NULL OR action = NULL) AND (NULL::uuid IS NULL OR credential_id = NULL) AND (NULL::text IS NULL OR actor = NULL) AND (NULL::timestamptz IS NULL OR at >= NULL) AND (NULL::timestamptz IS NULL OR at < NULL) ORDER BY id DESC LIMIT $audit_page) c ON true ORDER BY c.id DESC;
SQL
PGOPTIONS="-c role=byoc_app" pgbench --no-vacuum --protocol=prepared --client=8 --jobs=2 \
    --time="$duration" --file="$workdir/audit.sql" "$DATABASE_URL" >"$workdir/pgbench_audit.txt" 2>&1 \
    || { cat "$workdir/pgbench_audit.txt" >&2; die "pgbench (audit) failed"; }
pgbench_audit_tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$workdir/pgbench_audit.txt" | head -n 1)"
[ -n "$pgbench_audit_tps" ] || { cat "$workdir/pgbench_audit.txt" >&2; die "pgbench (audit) printed no tps"; }

# Availability with a cached credential: a verified Google Calendar credential (its decrypted payload in the
# service's cache, its access token in the Google client's), each request one free/busy call to the fake
# Google. Baseline: the fake's own rate for that call, asked by wrk directly with the same kind of body.
google_id="$(curl --silent --fail -X POST "$base/api/organization/credentials/google_calendar" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"clientId\":\"bench.apps.googleusercontent.com\",\"clientSecret\":\"GOCSPX-$(random_hex 12)\",\"refreshToken\":\"1//$(random_hex 24)\",\"displayName\":\"Bench calendar\"}" \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))')" \
    || die "adding the Google Calendar credential failed"
curl --silent --fail -X POST "$base/api/organization/credentials/$google_id/verify" \
    -H "Authorization: Bearer $token" | grep -q '"verified":true' || die "verifying the Google Calendar credential failed"
availability_path="/api/calendar/availability?date=$(date -u -d tomorrow +%F)&duration=30&timeZone=UTC"
run_wrk availability_warmup "$availability_path" 2 auth
run_wrk availability "$availability_path" "$duration" auth
free_busy_body="{\"timeMin\":\"$(date -u -d tomorrow +%F)T09:00:00Z\",\"timeMax\":\"$(date -u -d tomorrow +%F)T17:00:00Z\",\"timeZone\":\"UTC\",\"items\":[{\"id\":\"primary\"}]}"
BYOC_BENCH_BODY="$free_busy_body" base="$google_base" run_wrk fake_google /calendar/v3/freeBusy "$duration"

node - "$workdir/credentials.json" "$workdir/healthz.json" "$rss_max_kib" "$rss_hwm_kib" "$duration" \
    "$pgbench_tps" "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" "$workdir/audit.json" \
    "$pgbench_audit_tps" "$audit_page" "$workdir/availability.json" "$workdir/fake_google.json" <<'EOF'
const fs = require('fs');
const [credFile, healthFile, rssMax, rssHwm, seconds, pgbenchTps, cpuTicks, ticksPerSecond, auditFile,
  pgbenchAuditTps, auditPage, availabilityFile, fakeGoogleFile] = process.argv.slice(2);
const c = JSON.parse(fs.readFileSync(credFile, 'utf8'));
const h = JSON.parse(fs.readFileSync(healthFile, 'utf8'));
const a = JSON.parse(fs.readFileSync(auditFile, 'utf8'));
const v = JSON.parse(fs.readFileSync(availabilityFile, 'utf8'));
const g = JSON.parse(fs.readFileSync(fakeGoogleFile, 'utf8'));
const ms = (us) => (us / 1000).toFixed(2);
console.log('');
console.log(`| endpoint (${seconds} s each) | req/s | p50 ms | p99 ms | errors |`);
console.log('| --- | --- | --- | --- | --- |');
for (const [name, r] of [['GET /api/organization/credentials', c], ['GET /healthz', h],
  [`GET /api/organization/audit?limit=${auditPage}`, a], ['GET /api/calendar/availability (cached credential)', v],
  ['POST /calendar/v3/freeBusy on the fake Google (its baseline)', g]]) {
  console.log(`| ${name} | ${r.rps.toFixed(0)} | ${ms(r.p50_us)} | ${ms(r.p99_us)} | ${r.status_errors + r.socket_errors} |`);
}
console.log(`| credentials ÷ healthz | ${(c.rps / h.rps).toFixed(3)} | ${(c.p50_us / h.p50_us).toFixed(2)} | ` +
  `${(c.p99_us / h.p99_us).toFixed(2)} | |`);
console.log(`| pgbench, the credentials statement (prepared, byoc_app, 8 clients) | ${Number(pgbenchTps).toFixed(0)} tps | | | |`);
console.log(`| pgbench, the audit page statement (prepared, byoc_app, 8 clients) | ${Number(pgbenchAuditTps).toFixed(0)} tps | | | |`);
console.log('');
console.log(`throughput ratio credentials / healthz = ${(c.rps / h.rps).toFixed(3)}`);
const dbRatio = c.rps / Number(pgbenchTps);
console.log(`throughput ratio credentials / pgbench = ${dbRatio.toFixed(3)} (target >= 0.5: ${dbRatio >= 0.5 ? 'met' : 'NOT met'})`);
const cpuUs = (Number(cpuTicks) / Number(ticksPerSecond)) * 1e6 / c.requests;
console.log(`byoc-api CPU per credentials request (user + system) = ${cpuUs.toFixed(1)} µs`);
const auditRatio = a.rps / Number(pgbenchAuditTps);
console.log(`throughput ratio audit / pgbench = ${auditRatio.toFixed(3)} (target >= 0.5: ${auditRatio >= 0.5 ? 'met' : 'NOT met'})`);
console.log(`audit p99 / p50 = ${(a.p99_us / a.p50_us).toFixed(2)} (target <= 5: ${a.p99_us / a.p50_us <= 5 ? 'met' : 'NOT met'})`);
const availabilityRatio = v.rps / g.rps;
console.log(`throughput ratio availability / fake Google free/busy = ${availabilityRatio.toFixed(3)} ` +
  `(target >= 0.5: ${availabilityRatio >= 0.5 ? 'met' : 'NOT met'})`);
console.log(`availability p99 / p50 = ${(v.p99_us / v.p50_us).toFixed(2)} (target <= 5: ${v.p99_us / v.p50_us <= 5 ? 'met' : 'NOT met'})`);
const tail = c.p99_us / c.p50_us;
console.log(`credentials p99 / p50 = ${tail.toFixed(2)} (target <= 5: ${tail <= 5 ? 'met' : 'NOT met'})`);
console.log(`byoc-api RSS under load: max sampled ${(rssMax / 1024).toFixed(1)} MiB, VmHWM ${(rssHwm / 1024).toFixed(1)} MiB ` +
  `(target <= 64 MiB: ${Math.max(rssMax, rssHwm) <= 65536 ? 'met' : 'NOT met'})`);
if ([c, h, a, v, g].some((r) => r.status_errors + r.socket_errors > 0)) {
  console.log('ERRORS during the run (see above)');
  process.exitCode = 1;
}
EOF

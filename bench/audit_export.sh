#!/usr/bin/env bash
# `GET /api/organization/audit/export` in bounded memory: an organization's audit log grows to 1,000, 100,000 and
# 1,000,000 events, and at each size the whole log is exported (JSON Lines, streamed to /dev/null by curl) while
# byoc-api's resident memory is sampled every 100 ms. Prints, per size, the events exported, the time, events/s
# and MiB/s, and byoc-api's peak RSS during that export; then the ratio of the peak at 1,000,000 events to the peak
# at 1,000 (the baseline, same run, same process): bounded memory means a ratio near 1 while the export grows a
# thousandfold. Each export is checked to hold every event, newest first.
#
# Usage: bash bench/audit_export.sh [largest size, default 1000000]
#   BYOC_BENCH_SKIP_BUILD=1 as in bench/lib.sh.
# Needs the local Postgres (BYOC_TEST_DATABASE_URL), curl, psql; a fresh database is created and dropped.
# Events are written by the database's superuser in batches of 100,000 with their positions and placeholder
# links (the chain's trigger, which links each event to the one before, would take minutes for a million; the
# export reads the events, not their links).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

largest="${1:-1000000}"

build_release
configure_service
fresh_database export
export BYOC_MASTER_KEYS="1:$("$byoc_bin" keys generate)"
start_server
seed_owner "Export clinic"
say "byoc-api pid $server_pid on $base, database $database_name"

events=0
# grow_to N: appends events until the organization has N.
grow_to() {
    local wanted="$1" batch
    while [ "$events" -lt "$wanted" ]; do
        batch=$((wanted - events))
        [ "$batch" -gt 100000 ] && batch=100000
        psql --quiet "$DATABASE_URL" -v ON_ERROR_STOP=1 -c \
            "INSERT INTO credential_audit_log (org_id, seq, actor, action, credential_type, detail, prev_hash, hash)
             SELECT '$org_id', $events + n, 'service:bench', 'read', 'twilio',
                    jsonb_build_object('purpose', 'sms:hot_lead', 'number', $events + n),
                    '\\x00', sha256(($events + n)::text::bytea)
             FROM generate_series(1, $batch) AS n" >/dev/null
        events=$((events + batch))
    done
    # The statistics autovacuum would gather by itself a little later (the planner's estimates need them).
    psql --quiet "$DATABASE_URL" -c "ANALYZE credential_audit_log" >/dev/null
}

# export_all LABEL: exports everything, checks the line count and order, records time and peak RSS.
export_all() {
    local label="$1" started finished
    start_rss_sampler
    started="$(date +%s.%N)"
    curl --silent --fail --output "$workdir/export.jsonl" -H "Authorization: Bearer $token" \
        "$base/api/organization/audit/export" || die "the export failed"
    finished="$(date +%s.%N)"
    stop_rss_sampler
    python3 - "$workdir/export.jsonl" "$events" "$started" "$finished" "$rss_max_kib" "$label" <<'EOF' | tee -a "$workdir/results"
import json, sys
path, expected, started, finished, rss_kib, label = sys.argv[1:]
count, previous, size = 0, None, 0
with open(path, "rb") as file:
    for line in file:
        size += len(line)
        event = json.loads(line)
        assert previous is None or event["id"] < previous, "newest first, no duplicates"
        previous = event["id"]
        count += 1
assert count == int(expected), f"exported {count} of {expected} events"
seconds = float(finished) - float(started)
print(f"{label} {count} {seconds:.2f} {count / seconds:.0f} {size / seconds / 1048576:.1f} {int(rss_kib) / 1024:.1f}")
EOF
    rm -f "$workdir/export.jsonl"
}

: >"$workdir/results"
for size in 1000 100000 "$largest"; do
    [ "$size" -gt "$largest" ] && continue
    grow_to "$size"
    export_all "$size"
done

python3 - "$workdir/results" <<'EOF'
import sys
rows = [line.split() for line in open(sys.argv[1])]
print(f"{'events':>9} {'seconds':>8} {'events/s':>9} {'MiB/s':>6} {'peak RSS MiB':>12}")
for _label, count, seconds, rate, mib_s, rss in rows:
    print(f"{int(count):>9} {seconds:>8} {int(rate):>9} {mib_s:>6} {rss:>12}")
baseline, largest = float(rows[0][5]), float(rows[-1][5])
print(f"peak RSS at {int(rows[-1][1]):,} events / at {int(rows[0][1]):,} events (baseline, same run): "
      f"{largest / baseline:.2f}")
EOF

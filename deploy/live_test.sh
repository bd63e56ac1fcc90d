#!/usr/bin/env bash
# Live test of the alert rules and the dashboard: a real Prometheus scrapes a real byoc-api and evaluates
# deploy/prometheus/alerts.yml.
#
# Usage: bash deploy/live_test.sh
# Uses the fault tests' helpers (tests/fault/lib/common.sh): a private PostgreSQL 15 cluster on a free port (the
# shared cluster on 5432 is never touched), a fake Twilio, byoc-api (debug build by default; BYOC_FAULT_PROFILE,
# BYOC_FAULT_NO_BUILD and BYOC_FAULT_KEEP work as there) with BYOC_METRICS_TOKEN set. Then:
#   1. produces the series that appear only on use (credential operations, provider calls and a failure, a 429)
#      and checks with deploy/check_metrics.py that every metric the rules and the dashboard name is in the
#      service's /metrics (scraped with the token);
#   2. starts Prometheus (the Debian package's `prometheus`) on a free port, scraping the service every second
#      with the token as bearer and evaluating a test copy of alerts.yml every second, in which every `for:` is
#      shortened to 5 s (the expressions are the same); checks over the HTTP API that the rules are loaded and
#      evaluate without error, that every metric they and the dashboard name has series, that every dashboard
#      query runs, and that no alert fires;
#   3. stops PostgreSQL while something probes /readyz twice a second (as a load balancer does) and waits for
#      ByocDatabaseUnreachable and ByocChangeNotificationsLost to fire; starts it again and waits for
#      ByocChangeNotificationsLost to stop.
# Every wait is bounded; everything started is stopped on exit. Prints PASS/FAIL lines; exits non-zero on a FAIL.
set -euo pipefail
export BYOC_FAULT_PROFILE="${BYOC_FAULT_PROFILE:-debug}"
source "$(dirname "$0")/../tests/fault/lib/common.sh"

deploy="$root/deploy"
rules="$deploy/prometheus/alerts.yml"
dashboard="$deploy/grafana/byoc.json"
# How long the test copy of the rules waits before an alert fires (every `for:` in it).
test_for="5s"

command -v prometheus >/dev/null || { echo "FAIL live_test.sh: no prometheus (apt-get install prometheus)"; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.5 s until it succeeds; FAIL after SECONDS.
wait_for() {
    local seconds="$1" description="$2" started
    shift 2
    started="$(now_ms)"
    while ! "$@" >/dev/null 2>&1; do
        if [ $(( $(now_ms) - started )) -gt $((seconds * 1000)) ]; then
            fail "$description (not within ${seconds}s)"
            return 1
        fi
        sleep 0.5
    done
    pass "$description ($(( $(now_ms) - started )) ms)"
}

build_binaries
log "private PostgreSQL, fake Twilio, byoc-api ($profile)"
pg_init
make_secrets
start_fake_twilio
twilio_pid="${pids[-1]}"
BYOC_METRICS_TOKEN="live-test-$(openssl rand -hex 24)"
export BYOC_METRICS_TOKEN BYOC_SMS_PER_MINUTE=3 BYOC_PROVIDER_CALLS_PER_MINUTE=1000
"$cli_bin" migrate >"$workdir/migrate.log" 2>&1
seed_org "Alerting clinic"
start_api api
base="$api_base_api"
add_verified_twilio "$base" "Main"

echo "== 1. the metrics the rules and the dashboard name are exported"
check "test SMS (a cache miss)" 200 "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}' | cut -d' ' -f1)"
check "test SMS (a cache hit)" 200 "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}' | cut -d' ' -f1)"
kill "$twilio_pid"
wait "$twilio_pid" 2>/dev/null || true
check "test SMS with Twilio unreachable (a provider failure)" 424 \
    "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}' | cut -d' ' -f1)"
check "test SMS over BYOC_SMS_PER_MINUTE=3 (a rate-limit refusal)" 429 \
    "$(request POST "$base/api/sms/test" '{"to":"+14155550124"}' | cut -d' ' -f1)"
if python3 "$deploy/check_metrics.py" --metrics "$base/metrics" --rules "$rules" --dashboard "$dashboard" \
    >"$workdir/check_metrics.txt" 2>&1; then
    pass "check_metrics.py: $(tail -n 1 "$workdir/check_metrics.txt")"
else
    fail "check_metrics.py:"
    cat "$workdir/check_metrics.txt"
fi

echo "== 2. Prometheus scrapes byoc-api and evaluates the rules"
prom_dir="$workdir/prometheus"
mkdir -p "$prom_dir"
# The test copy of the rules: every `for:` shortened, nothing else changed.
sed -E "s/^( +for:).*/\1 $test_for/" "$rules" >"$prom_dir/alerts.yml"
(umask 077 && printf '%s' "$BYOC_METRICS_TOKEN" >"$prom_dir/metrics-token")
cat >"$prom_dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $prom_dir/alerts.yml
scrape_configs:
  - job_name: byoc-api
    authorization:
      type: Bearer
      credentials_file: $prom_dir/metrics-token
    static_configs:
      - targets: ["${base#http://}"]
EOF
promtool check config "$prom_dir/prometheus.yml" >"$prom_dir/check.log" 2>&1 \
    || { cat "$prom_dir/check.log"; fail "promtool check config"; }
prom_port="$(free_port)"
prom="http://127.0.0.1:$prom_port"
prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$workdir/prometheus.log" 2>&1 &
pids+=($!)
api() { python3 "$deploy/prom_api.py" "$prom" "$@"; }
wait_for 30 "Prometheus ready" curl -sf --max-time 2 "$prom/-/ready"
target_up() { [ "$(api value 'up{job="byoc-api"}')" = 1 ]; }
wait_for 30 "the byoc-api target is up" target_up
alerts_in_rules="$(grep -c -- '- alert:' "$rules")"
rules_ok() { [ "$(api rules)" = "$alerts_in_rules $alerts_in_rules" ]; }
wait_for 20 "all $alerts_in_rules alerting rules loaded and evaluated without error" rules_ok
# A few scrapes, so that rate() and increase() have two samples.
sleep 3
for name in $(python3 "$deploy/check_metrics.py" --list --rules "$rules" --dashboard "$dashboard"); do
    count="$(api series "count by (__name__) ({__name__=\"$name\", job=\"byoc-api\"})")"
    if [ "$count" = 1 ]; then pass "Prometheus has series of $name"; else fail "Prometheus has no series of $name ($count)"; fi
done
if api dashboard "$dashboard" >"$workdir/dashboard.txt"; then
    pass "every dashboard query runs ($(wc -l <"$workdir/dashboard.txt") queries, $(grep -vc '^ok 0 ' "$workdir/dashboard.txt") with data)"
else
    fail "a dashboard query fails:"
    grep '^error' "$workdir/dashboard.txt"
fi
check "no alert fires while the service is healthy" "" "$(api firing)"

echo "== 3. PostgreSQL stops: ByocDatabaseUnreachable and ByocChangeNotificationsLost fire"
pg_stop
stopped="$(now_ms)"
# A load balancer's readiness probe: /readyz twice a second (each answers 503 after at most 2 s), bounded.
(for _ in $(seq 1 120); do curl -s -o /dev/null --max-time 5 "$base/readyz" || true; sleep 0.5; done) &
prober=$!
pids+=("$prober")
firing() { api alert "$1" | grep -q '^firing'; }
wait_for 60 "ByocChangeNotificationsLost fires (for: $test_for in the test copy)" firing ByocChangeNotificationsLost
wait_for 60 "ByocDatabaseUnreachable fires (for: $test_for in the test copy)" firing ByocDatabaseUnreachable
log "$(api alert ByocDatabaseUnreachable), $(( $(now_ms) - stopped )) ms after PostgreSQL stopped"

echo "== PostgreSQL started again"
pg_start
kill "$prober" 2>/dev/null || true
wait "$prober" 2>/dev/null || true
not_firing() { ! firing "$1"; }
wait_for 30 "ByocChangeNotificationsLost stops once the listener is back" not_firing ByocChangeNotificationsLost
wait_for 10 "/readyz answers 200 again" curl -sf --max-time 3 "$base/readyz"

if grep -q "panicked" "$workdir/api.log"; then fail "byoc-api panicked"; else pass "no panic in the byoc-api log"; fi
if [ "$failures" -gt 0 ]; then
    echo "--- prometheus log (last 20 lines)"
    tail -n 20 "$workdir/prometheus.log"
fi
finish

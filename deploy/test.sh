#!/usr/bin/env bash
# Tests of deploy/: the alert rules and the dashboard.
#
# Usage: bash deploy/test.sh
#   1. promtool check rules deploy/prometheus/alerts.yml
#   2. promtool test rules deploy/prometheus/alerts.test.yml (a firing and a not-firing case per alert)
#   3. deploy/check_rules.py: severity, summary, description, a runbook_url whose anchor is a heading of
#      docs/operations.md, and both unit-test cases, for every alert
#   4. deploy/live_test.sh: byoc-api's /metrics has every metric the rules and the dashboard name, then a real
#      Prometheus scrapes it, evaluates the rules and fires ByocDatabaseUnreachable when PostgreSQL stops
# Needs Debian's `prometheus` package (promtool and prometheus; tests/run installs it when missing). The live
# test takes the fault tests' variables (tests/fault/README.md), e.g. BYOC_FAULT_NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in promtool prometheus; do
    command -v "$tool" >/dev/null || { echo "deploy/test.sh: $tool missing (apt-get install prometheus)" >&2; exit 1; }
done

echo "deploy/test.sh: promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
echo "deploy/test.sh: promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml
echo "deploy/test.sh: every alert has its labels, annotations, runbook section and tests"
python3 deploy/check_rules.py deploy/prometheus/alerts.yml deploy/prometheus/alerts.test.yml docs/operations.md
echo "deploy/test.sh: live test against a real Prometheus and byoc-api"
bash deploy/live_test.sh

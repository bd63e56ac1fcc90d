#!/usr/bin/env bash
# End-to-end tests of the settings page in headless Chromium, against a real byoc-api with a fake Twilio.
# Installs Chromium (and an emoji font for the status icons) when missing, installs playwright-core from the
# npm registry into tests/tools, builds byoc-api and byoc, runs tests/e2e/*.test.mjs with node's test runner,
# and prints "N passed, N failed". Exits non-zero when a test fails.
#
# BYOC_E2E_SCREENSHOTS=DIR also saves settings-desktop.png and settings-phone.png into DIR
# (e.g. BYOC_E2E_SCREENSHOTS=docs/screenshots tests/e2e/run.sh refreshes the committed screenshots).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "tests/e2e/run.sh: installing Chromium"
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver fonts-noto-color-emoji >/dev/null
fi
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium)}"

if [ ! -d tests/tools/node_modules/playwright-core ] || [ tests/tools/package-lock.json -nt tests/tools/node_modules ]; then
    npm ci --prefix tests/tools --no-audit --no-fund --loglevel=error
fi

cargo build --quiet -p byoc-api -p byoc
target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
export BYOC_BIN_DIR="$target_dir/debug"
if [ -n "${BYOC_E2E_SCREENSHOTS:-}" ]; then
    mkdir -p "$BYOC_E2E_SCREENSHOTS"
    BYOC_E2E_SCREENSHOTS="$(cd "$BYOC_E2E_SCREENSHOTS" && pwd)"
    export BYOC_E2E_SCREENSHOTS
fi

tap="$(mktemp)"
trap 'rm -f "$tap"' EXIT
status=0
node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    tests/e2e/*.test.mjs || status=$?

passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" | tail -n 1)"
failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" | tail -n 1)"
skipped="$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$tap" | tail -n 1)"
echo "e2e: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
if [ "$status" -ne 0 ] && [ "${failed:-0}" = "0" ]; then
    echo "e2e: the test runner exited with status $status"
fi
exit "$status"

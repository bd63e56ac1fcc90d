#!/usr/bin/env bash
# Cache-hit get_credential (Rust, criterion bench) against the original plan's design (decrypt + JSON.parse on
# every call, Node.js), in one run, with the ratio node / rust.
#
# Usage: bash bench/get_credential_vs_node.sh [node iterations, default 200000]
# Runs `cargo bench -p byoc-credential-store --bench credential_service -- cache_hit` (no database needed:
# the repository is mocked), reads the per-call p50 it prints and criterion's estimates.json, then runs
# bench/node/plan_get_credential.js with the machine's node. Set CARGO_TARGET_DIR as for the other cargo
# commands (criterion writes under $CARGO_TARGET_DIR/criterion).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
iterations="${1:-200000}"

command -v node >/dev/null || { echo "get_credential_vs_node.sh: node is not installed" >&2; exit 1; }
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "== rust: cargo bench -p byoc-credential-store --bench credential_service -- cache_hit"
CARGO_TARGET_DIR="$target_dir" cargo bench --quiet -p byoc-credential-store --bench credential_service -- cache_hit \
    2>&1 | tee "$log"
estimates="$target_dir/criterion/cache_hit/get_credential/new/estimates.json"
[ -f "$estimates" ] || { echo "get_credential_vs_node.sh: no $estimates" >&2; exit 1; }

echo "== node $(node --version): bench/node/plan_get_credential.js $iterations"
node_json="$(node bench/node/plan_get_credential.js "$iterations")"
echo "$node_json"

# Everything below is arithmetic on the two outputs; node does it (it is needed anyway).
node - "$log" "$estimates" "$node_json" <<'EOF'
const fs = require('fs');
const [log, estimatesFile, nodeJson] = process.argv.slice(2);
// Rust prints Durations with Debug: "620ns", "1.14µs", "6.81ms", "1.2s".
const units = { ns: 1, 'µs': 1e3, us: 1e3, ms: 1e6, s: 1e9 };
const duration = (text) => {
  const match = /^([0-9.]+)(ns|µs|us|ms|s)$/.exec(text);
  if (!match) throw new Error(`cannot read the duration ${text}`);
  return Number(match[1]) * units[match[2]];
};
const line = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('cache_hit/get_credential per call'));
if (!line) throw new Error('the bench did not print its per-call line');
const pick = (name) => duration(new RegExp(`${name} ([0-9.]+(?:ns|µs|us|ms|s))`).exec(line)[1]);
const rust = { p50: pick('p50'), p90: pick('p90'), p99: pick('p99') };
const estimates = JSON.parse(fs.readFileSync(estimatesFile, 'utf8'));
const rustMean = estimates.mean.point_estimate;
const rustMedian = estimates.median.point_estimate;
const plan = JSON.parse(nodeJson);
const f = (ns) => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
console.log('');
console.log('| measure | rust cache hit | plan (node decrypt + JSON.parse) | node ÷ rust |');
console.log('| --- | --- | --- | --- |');
for (const q of ['p50', 'p90', 'p99']) {
  const n = plan[`${q}_ns`];
  console.log(`| per-call ${q} | ${f(rust[q])} | ${f(n)} | ${(n / rust[q]).toFixed(1)}× |`);
}
console.log(`| back-to-back mean (criterion mean / node loop) | ${f(rustMean)} | ${f(plan.loop_mean_ns)} | ${(plan.loop_mean_ns / rustMean).toFixed(1)}× |`);
console.log(`(criterion median per call: ${f(rustMedian)})`);
console.log('');
console.log(`rust cache-hit p50 ${f(rust.p50)} (target <= 1 µs: ${rust.p50 <= 1000 ? 'met' : 'NOT met'}); ` +
  `ratio node p50 / rust p50 = ${(plan.p50_ns / rust.p50).toFixed(1)}`);
EOF

#!/usr/bin/env bash
# What a rate-limit admission costs with the buckets in Redis (BYOC_REDIS_URL: one script round trip) against
# this process's governor buckets, in one run, with the ratios redis ÷ in-process: per-admission latency one at a
# time (p50, p90, p99) and admissions per second with 64 in flight (bins/byoc-api/benches/admission.rs).
#
# Usage: bash bench/rate_limit_admission.sh
# Uses the Redis on BYOC_BENCH_REDIS_URL (default redis://127.0.0.1:6379); when that default answers nothing,
# starts a private redis-server on a free port (no persistence) and stops it on exit. Set CARGO_TARGET_DIR as for
# the other cargo commands.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

private_redis=""
cleanup() { if [ -n "$private_redis" ]; then kill "$private_redis" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -z "${BYOC_BENCH_REDIS_URL:-}" ] && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    command -v redis-server >/dev/null || { echo "rate_limit_admission.sh: redis-server is not installed" >&2; exit 1; }
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >/dev/null &
    private_redis=$!
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    export BYOC_BENCH_REDIS_URL="redis://127.0.0.1:$port"
fi

echo "== $(redis-cli -u "${BYOC_BENCH_REDIS_URL:-redis://127.0.0.1:6379}" info server | grep -E '^redis_version' | tr -d '\r'), $(nproc) cores"
echo "== cargo bench -p byoc-api --bench admission"
cargo bench --quiet -p byoc-api --bench admission

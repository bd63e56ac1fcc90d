#!/usr/bin/env bash
# Runs tests/events/receiver.py with the reference Standard Webhooks package from PyPI (and `cryptography`, which
# tests/audit/check_digests.sh uses to check audit digests independently), installed into
# $CARGO_TARGET_DIR/standardwebhooks-venv (target/ by default) the first time, as tests/run installs its other
# tools. With --install-only it installs and exits (tests/run calls it so that the byoc-api tests find it ready).
#
# Usage: bash tests/events/receiver.sh PORT SECRET OUT
#        bash tests/events/receiver.sh --install-only
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="$target_dir/standardwebhooks-venv"
version="1.1.0"
cryptography_version="48.0.0"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('standardwebhooks') == '$version' and m.version('cryptography') == '$cryptography_version'" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==$version" \
        "cryptography==$cryptography_version"
fi

if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi
exec "$venv/bin/python" "$root/tests/events/receiver.py" "$@"

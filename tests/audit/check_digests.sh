#!/usr/bin/env bash
# Runs tests/audit/check_digests.py with `cryptography` from PyPI, in the virtualenv of tests/events/receiver.sh
# (which installs it beside standardwebhooks).
#
# Usage: bash tests/audit/check_digests.sh PUBLIC_KEY_HEX FILE...
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/tests/events/receiver.sh" --install-only
exec "${CARGO_TARGET_DIR:-$root/target}/standardwebhooks-venv/bin/python" "$root/tests/audit/check_digests.py" "$@"

"""Checks byoc's signed audit digests with an independent Ed25519 implementation (`cryptography` from PyPI).

Usage: check_digests.py PUBLIC_KEY_HEX FILE...
Each FILE holds one digest, {"payload": "<JSON text>", "signature": "<hex>"}. For each, prints one JSON line
{"file", "valid", "payload"} (the parsed payload when the signature holds over exactly the payload's UTF-8 bytes);
exits 1 when any signature does not hold.
"""

import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def main() -> int:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(sys.argv[1]))
    all_valid = True
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as file:
            digest = json.load(file)
        try:
            key.verify(bytes.fromhex(digest["signature"]), digest["payload"].encode("utf-8"))
            record = {"file": path, "valid": True, "payload": json.loads(digest["payload"])}
        except (InvalidSignature, KeyError, ValueError) as error:
            record = {"file": path, "valid": False, "error": repr(error)}
            all_valid = False
        print(json.dumps(record), flush=True)
    return 0 if all_valid else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Deactivates a credential through one replica and measures how long another replica keeps using it.

Usage: deactivate_and_poll.py BASE_A BASE_B TOKEN CREDENTIAL_ID [INTERVAL_MS] [TIMEOUT_MS]

Sends DELETE BASE_A/api/organization/credentials/ID, then POSTs BASE_B/api/sms/test every INTERVAL_MS (default 20)
until replica B refuses with 409 `credential_not_configured`, and prints one JSON line:
  {"delete_ms": …, "refused_after_ms": …, "since_delete_sent_ms": …, "polls": …, "sent_after_delete": …,
   "other": {status: count}}
where refused_after_ms counts from the moment A answered the DELETE (the change is committed) and
since_delete_sent_ms from the moment it was sent. Exits 1 when B still uses the credential after TIMEOUT_MS
(default 10000) or A does not answer 200.
"""

import http.client
import json
import sys
import time
from urllib.parse import urlsplit


def connection(base):
    parts = urlsplit(base)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def call(conn, method, path, token, body=None):
    headers = {"Authorization": "Bearer " + token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data


def main():
    base_a, base_b, token, credential = sys.argv[1:5]
    interval = float(sys.argv[5] if len(sys.argv) > 5 else 20) / 1000.0
    timeout = float(sys.argv[6] if len(sys.argv) > 6 else 10000) / 1000.0
    a, b = connection(base_a), connection(base_b)
    sms = json.dumps({"to": "+14155550124"})

    # Open B's connection before the change so the first poll does not pay for a TCP handshake.
    status, _ = call(b, "GET", "/healthz", token)
    sent = time.monotonic()
    status, data = call(a, "DELETE", "/api/organization/credentials/" + credential, token)
    committed = time.monotonic()
    if status != 200:
        print(json.dumps({"error": "DELETE on A answered %d: %s" % (status, data.decode(errors="replace"))}))
        return 1
    polls, sent_after, other = 0, 0, {}
    while True:
        started = time.monotonic()
        status, data = call(b, "POST", "/api/sms/test", token, sms)
        polls += 1
        if status == 409 and b"credential_not_configured" in data:
            now = time.monotonic()
            print(json.dumps({
                "delete_ms": round((committed - sent) * 1000, 1),
                "refused_after_ms": round((now - committed) * 1000, 1),
                "since_delete_sent_ms": round((now - sent) * 1000, 1),
                "polls": polls,
                "sent_after_delete": sent_after,
                "other": other,
            }))
            return 0
        if status == 200:
            sent_after += 1
        else:
            other[str(status)] = other.get(str(status), 0) + 1
        if started - committed > timeout:
            print(json.dumps({"error": "B still answered %d after %.0f ms" % (status, timeout * 1000),
                              "polls": polls, "sent_after_delete": sent_after, "other": other}))
            return 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())

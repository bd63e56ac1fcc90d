"""A local receiver of byoc's credential events that checks every signature with the reference Standard Webhooks
package (`standardwebhooks` from PyPI).

Usage: receiver.py PORT SECRET OUT
Listens on 127.0.0.1:PORT, prints "ready" once listening, and for each POST verifies the body and the
webhook-id, webhook-timestamp and webhook-signature headers with `standardwebhooks.Webhook(SECRET).verify`:
a valid event is appended to OUT as one JSON line {"id": webhook-id, "payload": the verified JSON} and answered
204; anything else is answered 400 (and appended as {"rejected": reason}).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    port, secret, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    webhook = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                payload = webhook.verify(body, headers)
                record = {"id": headers["webhook-id"], "payload": payload}
                status = 204
            except (WebhookVerificationError, KeyError, ValueError) as error:
                record = {"rejected": str(error)}
                status = 400
            with open(out, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fake Twilio and Google APIs for the fault tests and schemathesis (standard library only).

Answers what byoc-api asks when it verifies and uses a Twilio credential:
  GET  /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json -> the number in FAKE_TWILIO_PHONE, SMS-capable
  POST /2010-04-01/Accounts/{sid}/Messages.json             -> a queued message with a fresh SM… sid
and a Google Calendar credential (GOOGLE_OAUTH_TOKEN_URL=BASE/token, GOOGLE_CALENDAR_API_BASE=BASE/calendar/v3/):
  POST /token                              -> an access token for an hour
  GET  /calendar/v3/users/me/calendarList  -> one calendar, the primary
  GET  /calendar/v3/calendars/{id}         -> that calendar
  POST /calendar/v3/freeBusy               -> no busy time in the asked calendar
  POST /calendar/v3/calendars/{id}/events  -> the event, as inserted (409 duplicate for an id it has)
  GET  /calendar/v3/calendars/{id}/events/{eventId}    -> that event, or 404
  DELETE /calendar/v3/calendars/{id}/events/{eventId}  -> 204 (410 when cancelled already), or 404
a Stripe key (STRIPE_API_BASE=BASE) and a HubSpot token (HUBSPOT_API_BASE=BASE):
  GET  /v1/balance                         -> a test-mode balance
  GET  /account-info/v3/details            -> an account
and, for the scripts:
  GET  /_stats -> {"messages": N}, the number of messages accepted so far.

Usage: fake_providers.py PORT_FILE   (binds 127.0.0.1 on a free port and writes the port to PORT_FILE)
"""

import json
import os
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PHONE = os.environ.get("FAKE_TWILIO_PHONE", "+14155550123")
ACCOUNT = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})(/[A-Za-z]+\.json)$")
EVENTS = re.compile(r"^/calendar/v3/calendars/[^/]+/events$")
EVENT = re.compile(r"^/calendar/v3/calendars/[^/]+/events/([^/]+)$")

lock = threading.Lock()
messages = 0
events = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_DELETE(self):
        match = EVENT.match(self.path.split("?", 1)[0])
        with lock:
            event = events.get(match.group(1)) if match else None
            if event is None:
                return self.answer(404, {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}})
            if event["status"] == "cancelled":
                return self.answer(410, {"error": {"code": 410, "message": "Resource has been deleted", "errors": [{"reason": "deleted"}]}})
            event["status"] = "cancelled"
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        match = EVENT.match(path)
        if match:
            with lock:
                event = events.get(match.group(1))
            if event is None:
                return self.answer(404, {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}})
            return self.answer(200, event)
        if path == "/v1/balance":
            return self.answer(200, {"object": "balance", "livemode": False, "available": [], "pending": []})
        if path == "/account-info/v3/details":
            return self.answer(200, {"portalId": 62515, "accountType": "STANDARD"})
        if path == "/_stats":
            with lock:
                return self.answer(200, {"messages": messages})
        if path == "/calendar/v3/users/me/calendarList":
            return self.answer(200, {"items": [{"id": "primary", "primary": True, "timeZone": "UTC"}]})
        if path.startswith("/calendar/v3/calendars/"):
            return self.answer(200, {"id": path.rsplit("/", 1)[1], "timeZone": "UTC"})
        match = ACCOUNT.match(path)
        if not match:
            return self.answer(404, {"code": 20404, "message": "not found", "status": 404})
        if match.group(2) == "/IncomingPhoneNumbers.json":
            return self.answer(200, {"incoming_phone_numbers": [{"phone_number": PHONE, "capabilities": {"sms": True}}]})
        return self.answer(404, {"code": 20404, "message": "not found", "status": 404})

    def do_POST(self):
        global messages
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path == "/token":
            return self.answer(200, {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"})
        if path == "/calendar/v3/freeBusy":
            try:
                asked = [item["id"] for item in json.loads(body or b"{}").get("items", [])]
            except (ValueError, AttributeError, KeyError, TypeError):
                asked = []
            return self.answer(200, {"calendars": {calendar: {"busy": []} for calendar in asked}})
        if EVENTS.match(path):
            try:
                event = json.loads(body or b"{}")
                event_id = event["id"]
            except (ValueError, KeyError, TypeError):
                return self.answer(400, {"error": {"code": 400, "message": "Bad Request", "errors": [{"reason": "badRequest"}]}})
            with lock:
                if event_id in events:
                    return self.answer(409, {"error": {"code": 409, "message": "The requested identifier already exists.", "errors": [{"reason": "duplicate"}]}})
                event["status"] = "confirmed"
                event["htmlLink"] = "https://calendar.google.com/event?eid=" + event_id
                events[event_id] = event
            return self.answer(200, event)
        match = ACCOUNT.match(path)
        if not match or match.group(2) != "/Messages.json":
            return self.answer(404, {"code": 20404, "message": "not found", "status": 404})
        with lock:
            messages += 1
        return self.answer(201, {"sid": "SM" + uuid.uuid4().hex, "status": "queued"})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1], "w", encoding="ascii") as port_file:
        port_file.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()

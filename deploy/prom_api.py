#!/usr/bin/env python3
"""Asks a running Prometheus over its HTTP API, for deploy/live_test.sh (standard library only).

Usage:
  prom_api.py BASE series EXPR     number of series EXPR returns now (an instant query); exits 1 on a query error
  prom_api.py BASE value EXPR      the value of the first series EXPR returns, or "none"
  prom_api.py BASE alert NAME      the state of alert NAME: firing, pending or inactive (with its labels)
  prom_api.py BASE firing          the alerts firing now, one a line
  prom_api.py BASE rules           "LOADED OK": alerting rules loaded, and how many evaluated without error
  prom_api.py BASE dashboard FILE  runs every query of a Grafana dashboard (variables replaced: $__rate_interval
                                   and $__interval by 1m, $__range by 1h, others by .*), one line each:
                                   "ok N EXPR" or "error MESSAGE EXPR"; exits 1 when one fails
"""

import json
import re
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from check_metrics import dashboard_expressions  # noqa: E402


def get(base, path, **params):
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)


def query(base, expression):
    answer = get(base, "/api/v1/query", query=expression)
    if answer.get("status") != "success":
        raise ValueError(answer.get("error", "no answer"))
    return answer["data"]["result"]


def substituted(expression):
    expression = expression.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    expression = expression.replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expression)


def main():
    base, command, argument = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
    if command == "series":
        try:
            print(len(query(base, argument)))
        except ValueError as error:
            print("error: %s" % error)
            return 1
    elif command == "value":
        result = query(base, argument)
        print(result[0]["value"][1] if result else "none")
    elif command == "alert":
        alerts = [a for a in get(base, "/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == argument]
        if not alerts:
            print("inactive")
        for alert in alerts:
            labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname",)}
            print("%s %s" % (alert["state"], json.dumps(labels, sort_keys=True)))
    elif command == "firing":
        for alert in get(base, "/api/v1/alerts")["data"]["alerts"]:
            if alert["state"] == "firing":
                print(alert["labels"]["alertname"], json.dumps(alert["labels"], sort_keys=True))
    elif command == "rules":
        rules = [r for g in get(base, "/api/v1/rules")["data"]["groups"] for r in g["rules"] if r["type"] == "alerting"]
        print(len(rules), sum(1 for r in rules if r.get("health") == "ok"))
    elif command == "dashboard":
        failures = 0
        for expression in dashboard_expressions(argument):
            text = substituted(expression)
            if text.startswith("label_values("):
                text = text[len("label_values("):].rsplit(",", 1)[0]
            try:
                print("ok %d %s" % (len(query(base, text)), text))
            except ValueError as error:
                failures += 1
                print("error %s %s" % (error, text))
        return 1 if failures else 0
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

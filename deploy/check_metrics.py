#!/usr/bin/env python3
"""Checks that every metric the alert rules and the dashboard name is one byoc-api exports (standard library only).

Usage:
  check_metrics.py --metrics URL_OR_FILE [--rules FILE]... [--dashboard FILE]...
      compares the names used with a /metrics scrape (a URL, fetched with the bearer in the environment variable
      BYOC_METRICS_TOKEN when it is set, so the per-organization series are there too; or a saved exposition)
      and prints one OK/MISSING line per name; exits 1 when a name is missing.
  check_metrics.py --list [--rules FILE]... [--dashboard FILE]...
      prints the names used, one a line.

Names: every `byoc_…` identifier in a rule's `expr` or in a dashboard query (`expr` of any target or template
variable). A histogram is used through its `_bucket`, `_sum` and `_count` series, which are the names a scrape
shows, so the comparison is with the sample names of the scrape. Any other metric selector (an identifier
followed by `{` or `[`) must be one Prometheus makes itself (`up`), or it is reported as not byoc-api's.
"""

import argparse
import json
import os
import re
import sys
import urllib.request

BYOC_NAME = re.compile(r"\bbyoc_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)")
TYPE_LINE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)")
# Metrics Prometheus writes itself for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Identifiers that may precede `{` or `[` without being a metric.
NOT_METRICS = {"__name__"}


def rule_expressions(path):
    """The `expr` of every rule in a Prometheus rule file, folded block scalars (`>-`, `|`) included."""
    expressions = []
    lines = open(path, encoding="utf-8").read().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        match = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", line)
        index += 1
        if not match:
            continue
        indent, rest = len(match.group(1)), match.group(2).strip()
        if rest and rest[0] not in ">|":
            expressions.append(rest.strip("'\""))
            continue
        block = []
        while index < len(lines) and (not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent):
            block.append(lines[index].strip())
            index += 1
        expressions.append(" ".join(block))
    return expressions


def dashboard_expressions(path):
    """Every `expr` of a Grafana dashboard's panels (rows' nested panels included) and the `query` of its
    template variables of type `query`."""
    dashboard = json.load(open(path, encoding="utf-8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            found.append(query)
    return found


def used_names(expressions):
    """(byoc names, other metric selectors) named in `expressions`."""
    byoc, other = set(), set()
    for expression in expressions:
        byoc.update(BYOC_NAME.findall(expression))
        # Strip label matchers and string literals first, so label names and values are not taken for metrics.
        bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
        for name in SELECTOR.findall(bare):
            if not name.startswith("byoc_") and name not in NOT_METRICS:
                other.add(name)
    return byoc, other


def exported(source):
    """(sample names, {family name: type}) of a scrape: a URL (with BYOC_METRICS_TOKEN as bearer) or a file."""
    if re.match(r"^https?://", source):
        request = urllib.request.Request(source)
        token = os.environ.get("BYOC_METRICS_TOKEN")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode("utf-8")
    else:
        text = open(source, encoding="utf-8").read()
    samples, types = set(), {}
    for line in text.splitlines():
        typed = TYPE_LINE.match(line)
        if typed:
            types[typed.group(1)] = typed.group(2)
        elif not line.startswith("#"):
            sample = SAMPLE.match(line)
            if sample:
                samples.add(sample.group(1))
    return samples, types


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", help="a /metrics URL or a saved exposition")
    parser.add_argument("--list", action="store_true", help="print the names used and exit")
    parser.add_argument("--rules", action="append", default=[], help="a Prometheus rule file")
    parser.add_argument("--dashboard", action="append", default=[], help="a Grafana dashboard (JSON)")
    arguments = parser.parse_args()
    expressions = []
    for path in arguments.rules:
        expressions += rule_expressions(path)
    for path in arguments.dashboard:
        expressions += dashboard_expressions(path)
    if not expressions:
        parser.error("no expressions found: give --rules and/or --dashboard")
    byoc, other = used_names(expressions)
    if arguments.list:
        print("\n".join(sorted(byoc)))
        return 0
    if not arguments.metrics:
        parser.error("--metrics or --list is required")
    samples, types = exported(arguments.metrics)
    failures = 0
    for name in sorted(byoc):
        if name in samples:
            print("OK      " + name)
            continue
        failures += 1
        hint = ""
        if types.get(name) == "histogram":
            hint = " (a histogram: use its _bucket, _sum or _count series)"
        elif name in types:
            hint = " (declared, but the scrape has no sample of it: produce one before checking)"
        print("MISSING " + name + hint)
    for name in sorted(other - PROMETHEUS_OWN):
        failures += 1
        print("UNKNOWN " + name + " (not a byoc-api metric, nor one Prometheus makes itself)")
    print("%d expression(s), %d byoc metric name(s), %d problem(s)" % (len(expressions), len(byoc), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

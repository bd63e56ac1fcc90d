#!/usr/bin/env python3
"""Checks the alert rules beyond what promtool does (standard library only).

Usage: check_rules.py RULES_FILE TESTS_FILE RUNBOOK_MARKDOWN

For every alert of RULES_FILE: a `severity` label of critical, warning or info; `summary`, `description` and
`runbook_url` annotations; a runbook_url `docs/operations.md#ANCHOR` whose anchor is a heading of
RUNBOOK_MARKDOWN (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens); and in TESTS_FILE at
least one evaluation where it fires (`exp_alerts` listed) and one where it does not (none listed). Prints one
line per alert and exits 1 on any failure.

The files are read line by line in the layout alerts.yml and alerts.test.yml use (one `- alert:` per rule, its
labels and annotations as `key: value` lines under it; `alertname:` lines under `alert_rule_test`).
"""

import re
import sys

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook_url")


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown_path):
    """The anchors of every heading of a Markdown file (outside fenced code)."""
    found, fenced = set(), False
    for line in open(markdown_path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"^#{1,6} ", line):
            found.add(github_anchor(line.lstrip("#")))
    return found


def alerts(rules_path):
    """{alert name: {key: value}} of the `key: value` lines under each `- alert:` line."""
    found, current = {}, None
    for line in open(rules_path, encoding="utf-8"):
        match = re.match(r"^\s*- alert:\s*(\S+)", line)
        if match:
            current = found.setdefault(match.group(1), {})
            continue
        if re.match(r"^\s*- (record|name):", line):
            current = None
            continue
        field = re.match(r"^\s+(\w+):\s*(.+?)\s*$", line)
        if current is not None and field:
            current[field.group(1)] = field.group(2).strip("'\"")
    return found


def test_cases(tests_path):
    """{alert name: [fires?, ...]}, one entry per evaluation in the unit tests."""
    cases, current = {}, None
    for line in open(tests_path, encoding="utf-8"):
        match = re.match(r"^\s+alertname:\s*(\S+)", line)
        if match:
            current = match.group(1)
            cases.setdefault(current, []).append(False)
        elif current and re.match(r"^\s+exp_alerts:\s*$", line):
            cases[current][-1] = True
        elif re.match(r"^\s+- eval_time:", line) or re.match(r"^  - ", line):
            current = None
    return cases


def main():
    if len(sys.argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    rules_path, tests_path, runbook_path = sys.argv[1:]
    known_anchors = anchors(runbook_path)
    cases = test_cases(tests_path)
    found = alerts(rules_path)
    failures = 0
    for name, fields in sorted(found.items()):
        problems = []
        if fields.get("severity") not in SEVERITIES:
            problems.append("severity label %r not one of %s" % (fields.get("severity"), sorted(SEVERITIES)))
        problems += ["no %s annotation" % key for key in ANNOTATIONS if not fields.get(key)]
        runbook = fields.get("runbook_url", "")
        anchor = runbook.partition("#")[2]
        if not runbook.startswith("docs/operations.md#") or anchor not in known_anchors:
            problems.append("runbook_url %r is not a heading of %s" % (runbook, runbook_path))
        evaluations = cases.get(name, [])
        if True not in evaluations:
            problems.append("no unit test where it fires")
        if False not in evaluations:
            problems.append("no unit test where it does not fire")
        if problems:
            failures += 1
            print("FAIL %s: %s" % (name, "; ".join(problems)))
        else:
            print("PASS %s: severity %s, runbook #%s, %d test evaluation(s)" % (
                name, fields["severity"], anchor, len(evaluations)))
    for name in sorted(set(cases) - set(found)):
        failures += 1
        print("FAIL %s: tested in %s but not a rule of %s" % (name, tests_path, rules_path))
    if not found:
        failures += 1
        print("FAIL no alert found in %s" % rules_path)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Framework mapping: declared once in the catalogue, read by CHECKS.md, the CSV, "By requirement" and OCSF."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

from include.checks.catalogue import CATALOGUE, CIS_AL2023, FRAMEWORKS, ISO, NIST, PCI, SOC2, check_meta, requirements_of
from include.report.build import build_report, by_requirement
from tests.factories import stored_item, verdicts

NOW = datetime(2026, 11, 23, 6, 30, tzinfo=timezone.utc)
ALLOWED = {  # the scope issue 17 names, per framework
    NIST: re.compile(r"AU-(2|3|4|5|6|9|11|12)"),
    PCI: re.compile(r"10\.(2\.\d(\.\d)?|3\.\d|5\.1|7\.\d)"),
    ISO: re.compile(r"A\.8\.15"),
    SOC2: re.compile(r"CC7\.2"),
    CIS_AL2023: re.compile(r"6\.3(\.\d+){1,2}"),
}


def _cis_referenced(check) -> set[str]:
    """The CIS AL2023 sections the check's own references name, ranges ("6.3.2.1–6.3.2.4") expanded."""
    out: set[str] = set()
    for ref in check.references:
        m = re.fullmatch(r"CIS Amazon Linux 2023 ([\d.]+)(?:–([\d.]+))?", ref)
        if not m:
            continue
        first, last = m.group(1), m.group(2) or m.group(1)
        stem, lo = first.rsplit(".", 1)
        hi = last.rsplit(".", 1)[1]
        out |= {first} if first == last else {f"{stem}.{n}" for n in range(int(lo), int(hi) + 1)}
    return out


def test_every_check_maps_to_known_frameworks_within_the_scope():
    for c in CATALOGUE:
        assert set(c.frameworks) <= set(FRAMEWORKS), c.id
        assert c.frameworks.get(NIST) and c.frameworks.get(PCI) and c.frameworks.get(ISO), c.id
        for fw, ids in c.frameworks.items():
            assert ids and len(set(ids)) == len(ids), (c.id, fw)
            for rid in ids:
                assert ALLOWED[fw].fullmatch(rid), (c.id, fw, rid)


def test_cis_sections_agree_with_the_checks_references():
    for c in CATALOGUE:
        mapped = set(c.frameworks.get(CIS_AL2023, ()))
        assert mapped <= _cis_referenced(c), c.id
        if _cis_referenced(c):
            assert mapped, f"{c.id} references CIS AL2023 but maps none"


def test_examples_from_the_issue_are_mapped():
    assert "NIST 800-53r5 AU-12" in requirements_of("auditd.running")
    assert {"PCI DSS 4.0.1 10.2.1", "PCI DSS 4.0.1 10.7.2"} <= set(requirements_of("auditd.running"))
    fresh = set(requirements_of("cwagent.log_stream_fresh"))
    assert {"NIST 800-53r5 AU-4", "NIST 800-53r5 AU-6", "NIST 800-53r5 AU-9", "PCI DSS 4.0.1 10.3.3",
            "PCI DSS 4.0.1 10.5.1"} <= fresh
    assert "NIST 800-53r5 AU-6" in requirements_of("cwagent.canary_delivered")
    assert "CIS AL2023 6.3.1.1" in requirements_of("auditd.installed")
    assert requirements_of("no.such.check") == []


def test_requirements_of_and_check_meta_say_the_same_as_the_field():
    meta = check_meta()
    for c in CATALOGUE:
        expected = [f"{fw} {rid}" for fw in FRAMEWORKS for rid in c.frameworks.get(fw, ())]
        assert requirements_of(c.id) == expected == meta[c.id]["requirements"]
        assert meta[c.id]["frameworks"] == {fw: list(ids) for fw, ids in c.frameworks.items()}


def test_checks_md_shows_each_checks_requirements():
    from include.checks.docs import render

    doc = render()
    for c in CATALOGUE:
        section = doc.split(f"## `{c.id}`", 1)[1].split("\n## ", 1)[0]
        line = next(x for x in section.splitlines() if x.startswith("- **Requirements evidenced:**"))
        for fw, ids in c.frameworks.items():
            assert f"{fw} {', '.join(ids)}" in line, c.id
    for req in {r for c in CATALOGUE for r in requirements_of(c.id)}:
        row = next(x for x in doc.splitlines() if x.startswith(f"| {req} |"))
        assert {m for m in re.findall(r"`([^`]+)`", row)} == {c.id for c in CATALOGUE if req in requirements_of(c.id)}


def item(iid, status, failed=(), advisory=(), name=""):
    return stored_item(iid, status, failed, audit_date="2026-11-23", run_id="run-1", name=name,
                       advisory_failed=list(advisory), region="us-east-1", checks=verdicts((*failed, *advisory)))


def records(items):
    """The items as the store's reads give them."""
    from include.evidence.records import EvidenceItem

    return [EvidenceItem.from_item(it) for it in items]


ITEMS = [item("i-1", "COMPLIANT"),
         item("i-2", "NON_COMPLIANT", ["auditd.running"], ["auditd.immutable"], name="web"),
         item("i-3", "NON_COMPLIANT", ["cwagent.log_stream_fresh", "auditd.running"]),
         item("i-4", "COMPLIANT", advisory=["auditd.immutable", "auditd.rules_cover_cis"]),
         item("i-5", "UNREACHABLE")]


def build(items=ITEMS):
    return build_report(records(items), audit_date="2026-11-23", discovered=len(items), run_id="run-1", mode="live",
                        generated_at=NOW, check_meta=check_meta())


def test_csv_requirements_column_is_last_and_lists_each_hosts_failing_requirements():
    text = build().csv
    header = next(csv.reader(io.StringIO(text)))
    assert header[-1] == "requirements" and header[:16][-1] == "transport"
    rows = {r["instance_id"]: r for r in csv.DictReader(io.StringIO(text))}
    for it in ITEMS:
        expected = set()
        for cid in it["failed_checks"] + it["advisory_failed"]:
            expected |= set(requirements_of(cid))
        got = rows[it["instance_id"]]["requirements"]
        assert set(filter(None, got.split(";"))) == expected, it["instance_id"]
        assert len(got.split(";")) == len(set(got.split(";")))  # each requirement once per host
    assert rows["i-1"]["requirements"] == "" and "SOC 2 CC7.2" in rows["i-3"]["requirements"]


def test_by_requirement_counts_hosts_independently_and_says_deciding_or_advisory():
    rows = {r["requirement"]: r for r in by_requirement(records(ITEMS), check_meta())}
    every = {r for c in CATALOGUE for r in requirements_of(c.id)}
    assert set(rows) == every  # a requirement nobody fails is still listed, with 0
    for req in every:
        deciding = sorted(i["instance_id"] for i in ITEMS
                          if any(req in requirements_of(c) for c in i["failed_checks"]))
        advisory = sorted(i["instance_id"] for i in ITEMS if i["instance_id"] not in deciding
                          and any(req in requirements_of(c) for c in i["advisory_failed"]))
        assert rows[req]["deciding"] == deciding, req
        assert rows[req]["advisory"] == advisory, req
        assert rows[req]["failing"] == len(deciding) + len(advisory)
    assert rows["NIST 800-53r5 AU-12"]["deciding"] == ["i-2", "i-3"]
    assert rows["NIST 800-53r5 AU-9"]["deciding"] == ["i-3"] and rows["NIST 800-53r5 AU-9"]["advisory"] == ["i-2", "i-4"]
    assert rows["CIS AL2023 6.3.3.20"]["advisory"] == ["i-2", "i-4"] and rows["CIS AL2023 6.3.3.20"]["deciding"] == []


def test_by_requirement_section_in_the_report_and_bounded_in_the_email():
    report = build()
    assert "By requirement" in report.html and "By requirement" in report.email_html
    assert "NIST 800-53r5 AU-12" in report.html and "i-2 (web)" in report.html
    many = [item(f"i-{n:04d}", "NON_COMPLIANT", ["auditd.running"]) for n in range(400)]
    big = build(many)
    section = big.email_html.split("By requirement", 1)[1].split("<h2", 1)[0]
    failing_reqs = len(requirements_of("auditd.running"))
    assert section.count("<tr>") == 1 + failing_reqs  # header + the requirements someone fails
    assert section.count("i-0") == 10 * failing_reqs and section.count("and 390 more") == failing_reqs
    assert "CIS AL2023 6.3.3.20" not in section  # the email keeps to requirements someone fails
    assert "CIS AL2023 6.3.3.20" in big.html.split("By requirement", 1)[1].split("<h2", 1)[0]

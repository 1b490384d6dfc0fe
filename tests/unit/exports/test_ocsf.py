"""OCSF export: every line is a Compliance Finding the pinned py-ocsf-models accepts, one per (host, check),
counts recomputed here from the evidence items, statuses, requirements and the evidence hash carried."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
from py_ocsf_models.objects.cloud import Cloud

from include.checks.catalogue import CANARY_CHECK, CATALOGUE, check_meta, requirements_of
from include.core.host import Host, HostOutcome
from include.core.status import Status, Verdict
from include.evidence.records import EvidenceItem
from include.evidence.store import instance_item
from include.exports.ocsf import ocsf_events, write_ocsf

DAY = "2026-11-23"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
CHECKED = datetime(2026, 11, 23, 6, 1, 2, tzinfo=timezone.utc)
ALWAYS = sorted(c.id for c in CATALOGUE if c.id != CANARY_CHECK)  # what runs on every host


def built(iid, status, verdicts, failed=(), advisory=(), waived=(), output=b"", detail=""):
    """An item as the verify step builds it (include/evidence/store.py: instance_item)."""
    host = Host(iid, "eu-west-1", "222222222222", "10.1.0.9", private_ip="10.1.0.9",
                tags={"Name": f"web-{iid}", "Environment": "prod"})
    outcome = HostOutcome(iid, None if verdicts else Status.UNREACHABLE, output=output, transport="ssm")
    return instance_item(host=host, outcome=outcome, status=status, failed=list(failed), verdicts=verdicts,
                         detail=detail, audit_date=DAY, run_id="run-7", checked_at=CHECKED, ttl_days=30,
                         advisory=list(advisory), waived=list(waived))


ALL_PASS = {c: Verdict.passed("ok") for c in ALWAYS}
ITEMS = [
    built("i-a", Status.COMPLIANT, ALL_PASS, output=b"script output a"),
    built("i-b", Status.NON_COMPLIANT, ALL_PASS | {"auditd.running": Verdict.failed("auditd is stopped"),
                                                   "auditd.immutable": Verdict.failed("-e 0"),
                                                   "cwagent.log_stream_fresh": Verdict.error("throttled")},
          failed=["auditd.running"], advisory=["auditd.immutable"], output=b"script output b"),
    built("i-c", Status.WAIVED, ALL_PASS | {"auditd.config": Verdict.failed("ignore on disk full"),
                                            CANARY_CHECK: Verdict.passed("canary found")},
          waived=["auditd.config"], output=b"script output c"),
    built("i-d", Status.UNREACHABLE, {}, detail="connection refused"),
    built("i-e", Status.NOT_APPLICABLE, {}, detail="windows"),
    built("i-f", Status.COMPLIANT, ALL_PASS | {"auditd.enabled_on_boot": Verdict.not_applicable("no systemd")},
          output=b"script output f"),
]
BY_ID = {it["instance_id"]: it for it in ITEMS}
RECORDS = [EvidenceItem.from_item(it) for it in ITEMS]  # as the store's reads give them


def events():
    return ocsf_events(RECORDS, check_meta(), NOW)


def key(event):
    return event["resources"][0]["uid"], event["compliance"]["control"]


def test_every_line_of_the_file_validates_against_the_pinned_model(tmp_path):
    path = write_ocsf(str(tmp_path / "reports"), DAY, events())
    assert path == str(tmp_path / "reports" / f"compliance-{DAY}.ocsf.jsonl")
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == len(events()) > 0
    for line in lines:
        raw = json.loads(line)
        finding = ComplianceFinding.model_validate(raw)  # the pinned model, not ours
        assert finding.class_uid == 2003 and finding.category_uid == 2 and finding.type_uid == 200301
        # nothing we wrote is outside the model (pydantic would drop it silently) but the Cloud profile's `cloud`
        assert finding.model_dump(mode="json", exclude_none=True) == {k: v for k, v in raw.items() if k != "cloud"}
        assert Cloud.model_validate(raw["cloud"]).model_dump(mode="json", exclude_none=True) == raw["cloud"]
        assert "cloud" in raw["metadata"]["profiles"] and raw["metadata"]["version"] == "1.5.0"


def test_one_event_per_host_and_check_recomputed_from_the_items():
    evs = events()
    expected = []
    for it in ITEMS:  # recorded verdicts; a host with none: every always-run check
        expected += [(it["instance_id"], c) for c in (it["checks"] or ALWAYS)]
    assert sorted(map(key, evs)) == sorted(expected)
    assert len(set(map(key, evs))) == len(evs)
    assert len({e["metadata"]["uid"] for e in evs}) == len(evs)  # event uids are unique
    assert ocsf_events(RECORDS, check_meta(), NOW) == evs  # pure: the same evidence gives the same file


def test_status_counts_match_an_independent_count():
    evs = events()
    recorded = Counter(v["status"] for it in ITEMS for v in it["checks"].values())
    unverified = sum(len(ALWAYS) for it in ITEMS if not it["checks"] and it["status"] != "NOT_APPLICABLE")
    not_applicable_hosts = sum(len(ALWAYS) for it in ITEMS if not it["checks"] and it["status"] == "NOT_APPLICABLE")
    assert Counter(e["status_code"] for e in evs) == recorded + Counter(
        {"NOT_EVALUATED": unverified, "NOT_APPLICABLE": not_applicable_hosts})
    by_compliance = Counter(e["compliance"]["status_id"] for e in evs)
    assert by_compliance == Counter({1: recorded["PASS"], 3: recorded["FAIL"], 2: recorded["ERROR"],
                                     99: recorded["NOT_APPLICABLE"] + not_applicable_hosts, 0: unverified})


def test_a_fail_is_a_failing_finding_and_a_waived_fail_is_suppressed():
    evs = {key(e): e for e in events()}
    fail = evs[("i-b", "auditd.running")]
    assert fail["compliance"]["status_id"] == 3 and fail["compliance"]["checks"][0]["status_id"] == 3
    assert fail["compliance"]["checks"][0]["status"] == "Fail"
    assert fail["status_id"] == 1 and fail["status"] == "New" and fail["status_code"] == "FAIL"
    assert fail["status_detail"] == "auditd is stopped" and fail["severity_id"] == 5
    assert fail["unmapped"]["listed_in"] == "failed_checks" and fail["device"]["is_compliant"] is False
    assert evs[("i-b", "auditd.immutable")]["unmapped"]["listed_in"] == "advisory_failed"
    assert evs[("i-b", "cwagent.log_stream_fresh")]["compliance"]["status_id"] == 2  # ERROR: Warning
    waived = evs[("i-c", "auditd.config")]
    assert waived["compliance"]["status_id"] == 3 and waived["status"] == "Suppressed"
    passed = evs[("i-a", "auditd.running")]
    assert passed["compliance"]["status_id"] == 1 and passed["status"] == "Resolved"
    assert passed["device"]["is_compliant"] is True
    na = evs[("i-f", "auditd.enabled_on_boot")]
    assert na["compliance"]["status_id"] == 99 and na["compliance"]["checks"][0]["status"] == "NOT_APPLICABLE"
    gap = evs[("i-d", "auditd.running")]
    assert gap["compliance"]["status_id"] == 0 and gap["status_code"] == "NOT_EVALUATED"
    assert "connection refused" in gap["status_detail"] and gap["unmapped"]["host_status"] == "UNREACHABLE"


def test_evidence_hash_run_time_resource_and_requirements_are_carried():
    meta = check_meta()
    for e in events():
        iid, cid = key(e)
        it = BY_ID[iid]
        assert e["evidences"][0]["data"]["output_sha256"] == it["output_sha256"]
        assert e["metadata"]["correlation_uid"] == it["run_id"] == e["unmapped"]["run_id"] == "run-7"
        assert e["time"] == int(CHECKED.timestamp() * 1000) and e["time_dt"] == "2026-11-23T06:01:02Z"
        assert e["compliance"]["requirements"] == requirements_of(cid)
        assert e["compliance"]["standards"] == list(meta[cid]["frameworks"])
        assert e["finding_info"]["title"] == meta[cid]["title"]
        assert e["severity"].lower() == meta[cid]["severity"]
        r = e["resources"][0]
        assert (r["uid"], r["region"], r["name"]) == (iid, "eu-west-1", f"web-{iid}")
        assert r["data"]["account_id"] == e["cloud"]["account"]["uid"] == "222222222222"
        assert r["data"]["private_ip"] == e["device"]["ip"] == "10.1.0.9"
        assert e["finding_info"]["uid"] == f"ec2-audit/222222222222/eu-west-1/{iid}/{cid}"  # stable across days
    hashes = {e["evidences"][0]["data"]["output_sha256"] for e in events() if key(e)[0] == "i-b"}
    import hashlib
    assert hashes == {hashlib.sha256(b"script output b").hexdigest()}


def test_write_ocsf_to_s3_goes_through_report_store(monkeypatch):
    from include.report import storage as report_store

    written = {}
    monkeypatch.setattr(report_store, "put", lambda url, data: written.update({url: data}))
    url = write_ocsf("s3://audit-bucket/reports", DAY, events()[:2])
    assert url == f"s3://audit-bucket/reports/compliance-{DAY}.ocsf.jsonl" and list(written) == [url]
    assert [json.loads(line) for line in written[url].decode().splitlines()] == events()[:2]


def test_the_generator_writes_the_same_file_as_the_list(tmp_path):
    from include.exports.ocsf import iter_ocsf_events

    a = write_ocsf(str(tmp_path / "a"), DAY, events())
    b = write_ocsf(str(tmp_path / "b"), DAY, iter_ocsf_events(RECORDS, check_meta(), NOW))
    assert open(a, "rb").read() == open(b, "rb").read()
    assert write_ocsf(str(tmp_path / "c"), DAY, []) and open(tmp_path / "c" / f"compliance-{DAY}.ocsf.jsonl").read() == ""


def test_shared_parts_turned_into_json_once_give_the_same_lines_as_each_event_dumped_whole():
    """iter_ocsf_events dumps a host's shared parts (cloud, device, resources, evidences) and a check's
    (compliance, remediation) once; the lines must be byte for byte what dumping every event whole gives."""
    from include.exports.ocsf import _event, _verdicts, iter_ocsf_events, to_jsonl

    meta = check_meta()
    whole = [_event(it, cid, status, detail, meta.get(cid, {}), NOW).model_dump(mode="json", exclude_none=True)
             for it in sorted(RECORDS, key=lambda i: i.instance_id) for cid, status, detail in _verdicts(it, meta)]
    assert to_jsonl(iter_ocsf_events(RECORDS, meta, NOW)) == to_jsonl(whole)

"""Verdicts an auditor can trust (pure parts): profiles, framing, rules that record, stream attribution,
odd hosts. The same paths over real sshd + moto are in tests/integration/verify/test_false_pass.py."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from devstack.standins.hosts.host_states import TEST_NONCE, render_output, sections_for, with_changes
from include.checks import parsers
from include.checks.probes import MARK, end_mark, file_mark, frame, section_mark
from include.checks.sections import FILE_MARK, render_sections, split_sections
from include.core.host import Host, HostOutcome
from include.core.scoring import hardening_summary, score_host
from include.core.status import CheckStatus, Status, Verdict
from include.fleet.inventory import Inventory
from include.settings.params import AuditParams
from include.verify.judge import Judgement, judge_host, settle_canaries
from include.verify.profiles import AUDIT_TRAIL_CHECKS, HARDENING_CHECKS, load_profile

NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)
HOST = Host("i-0abc", "us-east-1", "123", "10.0.0.5", private_ip="10.0.0.5", private_dns="ip-10-0-0-5.ec2.internal")
IDENTITY = {"hostname": "h", "instance_id": "i-0abc"}


class Fresh:
    def __init__(self):
        self.calls = []

    def describe(self, group, stream):
        self.calls.append((group, stream))
        return {"logStreamName": stream, "lastIngestionTime": int(NOW.timestamp() * 1000) - 60_000}


def judge(text: str, params: AuditParams | None = None, lookup=None, **outcome):
    out = HostOutcome("i-0abc", None, output=text.encode(), nonce=TEST_NONCE, **outcome)
    return judge_host(HOST, out, lookup or Fresh(), params or AuditParams(), now=lambda: NOW)


def output_with(profile: str = "compliant", **sections: str) -> str:
    s = sections_for(with_changes(profile), IDENTITY)
    s.update(sections)
    return render_sections(s, TEST_NONCE)


# ---------------------------------------------------------------- profiles

def test_audit_trail_profile_is_the_mission_and_cis_adds_hardening():
    assert load_profile(None).name == load_profile("audit-trail").name == "audit-trail"
    assert set(HARDENING_CHECKS) == {"auditd.rules_cover_cis", "auditd.immutable", "auditd.boot_params"}
    assert not set(HARDENING_CHECKS) & set(AUDIT_TRAIL_CHECKS)
    assert load_profile("cis").checks == set(AUDIT_TRAIL_CHECKS) | set(HARDENING_CHECKS)


@pytest.mark.parametrize("profile", ["not_immutable", "rules_incomplete", "no_boot_params"])
def test_a_host_meeting_the_policy_with_cis_gaps_is_compliant_and_the_gaps_are_advisory(profile):
    text = render_output(profile, IDENTITY)
    j = judge(text)
    assert j.status == Status.COMPLIANT and j.failed == [] and len(j.advisory) == 1
    gap = j.advisory
    assert set(gap) <= set(HARDENING_CHECKS)
    # Under cis the profile decides that check: the same gap is failed, and nothing is left advisory.
    j = judge(text, AuditParams(profile="cis"))
    assert j.status == Status.NON_COMPLIANT and j.failed == gap and j.advisory == []


def test_custom_profile_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "pci", "extends": "audit-trail", "add": ["auditd.immutable"],
                                "remove": ["auditd.config"]}))
    p = load_profile(str(path))
    assert p.name == "pci" and p.decides("auditd.immutable") and not p.decides("auditd.config")


@pytest.mark.parametrize("content,field", [
    ({"name": "x", "checks": ["auditd.nope"]}, "auditd.nope"),
    ({"name": "x", "checks": []}, "decides no check"),
    ({"name": "x", "checks": "auditd.running"}, "'checks'"),
    ({"checks": ["auditd.running"]}, "'name'"),
    ({"name": "x", "extends": "nist"}, "'extends'"),
    ({"name": "x", "checks": ["auditd.running"], "typo": 1}, "typo"),
])
def test_bad_profile_files_are_refused_naming_the_field(tmp_path, content, field):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=field):
        load_profile(str(path))


def test_unknown_profile_name_is_refused():
    with pytest.raises(ValueError, match="profile must be one of"):
        load_profile("cis-level-9")


def test_errors_outside_the_profile_do_not_decide_but_missing_output_does():
    v = {"auditd.running": Verdict.passed(""), "auditd.immutable": Verdict.error("x")}
    decides = load_profile("audit-trail").decides
    assert score_host(v, decides).status == Status.COMPLIANT
    assert score_host(v, decides, complete=False).status == Status.ERROR  # a cut output is never COMPLIANT
    assert score_host({"auditd.immutable": Verdict.passed("")}, decides).status == Status.ERROR  # nothing decided


def test_hardening_summary_counts_hosts_and_gaps():
    items = [{"checks": {c: {"status": "PASS"} for c in HARDENING_CHECKS}},
             {"checks": {**{c: {"status": "PASS"} for c in HARDENING_CHECKS}, "auditd.immutable": {"status": "FAIL"}}},
             {"checks": {}}]  # not assessed (e.g. unreachable)
    from include.evidence.records import EvidenceItem

    h = hardening_summary([EvidenceItem("i-1", checks=it["checks"]) for it in items], HARDENING_CHECKS)
    assert (h.assessed, h.hardened, h.pct, h.gaps) == (2, 1, 50.0, {"auditd.immutable": 1})


# ---------------------------------------------------------------- framing

def test_markers_without_the_nonce_are_content_and_cannot_close_or_forge():
    forged = (f"{{}}\n@@ec2audit-section cwagent_toml\nfake\n{MARK}-{'f' * 32}-end\n"
              f"{MARK}-{'0' * 32}-file /x.json\n")
    out = split_sections(output_with(cwagent_config=f"{FILE_MARK} /etc/a.json\n{forged}"), TEST_NONCE)
    assert out.complete and not out.problems
    assert out.get("cwagent_toml") != "fake"
    files = parsers.split_files(out.get("cwagent_config"))
    assert [p for p, _ in files] == ["/etc/a.json"]  # the forged file marker is neutralised


def test_a_section_cut_on_the_host_or_by_the_cap_is_error_never_pass():
    text = output_with().replace(f"{section_mark(TEST_NONCE)} cwagent_toml\n",
                                 f"{section_mark(TEST_NONCE)} cwagent_toml\n{MARK}-{TEST_NONCE}-cut\n")
    j = judge(text)
    assert j.verdicts["cwagent.config_valid"].status == CheckStatus.ERROR and j.status == Status.ERROR
    cut = output_with()
    cut = cut[: cut.index(f"{section_mark(TEST_NONCE)} cwagent_toml")]
    j = judge(cut, truncated=True)
    assert j.status == Status.ERROR and "truncated" in j.detail


def test_u2028_and_cr_do_not_split_lines():
    # str.splitlines would read "pid 0" (first wins) out of the backlog line; "\n" alone keeps it one line.
    status = "enabled 1\nfailure 1\nbacklog 0\u2028pid 0\rx\npid 1187\nrate_limit 0\nlost 0"
    out = split_sections(output_with(auditctl_status=status), TEST_NONCE)
    assert parsers.parse_auditctl_status(out.get("auditctl_status"))["pid"] == 1187


def test_frame_refuses_anything_but_our_nonce_and_tag():
    assert frame("true\n", TEST_NONCE).startswith(b"EC2AUDIT_NONCE=" + TEST_NONCE.encode() + b"\n")
    assert frame("true\n", TEST_NONCE, "abcdef0123456789").split(b"\n")[1] == b"EC2AUDIT_CANARY_TAG=abcdef0123456789"
    for bad in ("", "$(id)", "0" * 31, "g" * 32):
        with pytest.raises(ValueError):
            frame("true\n", bad)
    for bad in ("", "$(id);x", "0" * 15, "g" * 16, "A" * 16):
        with pytest.raises(ValueError):
            frame("true\n", TEST_NONCE, bad)
    assert section_mark(TEST_NONCE) != file_mark(TEST_NONCE) != end_mark(TEST_NONCE)


# ---------------------------------------------------------------- odd hosts

@pytest.mark.parametrize("logs", [
    {"logs_collected": {"files": {"collect_list": [{"file_path": "/var/log/audit/audit.log", "log_group_name": 7}]}}},
    {"logs_collected": {"files": {"collect_list": {"file_path": "/var/log/audit/audit.log"}}}},
    {"logs_collected": {"files": {"collect_list": "/var/log/audit/audit.log"}}},
    {"logs_collected": ["files"]},
])
def test_an_odd_agent_config_is_error_with_a_detail_never_a_crash(logs):
    config = f"{FILE_MARK} /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json\n" + json.dumps(
        {"logs": logs})
    j = judge(output_with(cwagent_config=config, cwagent_toml="toml: not found"), AuditParams(canary=False))
    assert j.verdicts["cwagent.ships_audit_log"].status == CheckStatus.ERROR
    assert j.verdicts["cwagent.log_stream_fresh"].status == CheckStatus.ERROR
    assert j.status == Status.ERROR or j.status == Status.NON_COMPLIANT  # config_valid may FAIL: no TOML


def test_an_odd_translated_config_is_error():
    j = judge(output_with(cwagent_toml="[inputs]\nlogfile = 5\n"))
    assert j.verdicts["cwagent.log_stream_fresh"].status == CheckStatus.ERROR


def test_judging_never_raises(monkeypatch):
    import include.verify.judge as verify

    monkeypatch.setattr(verify, "evaluate_host_checks", lambda *a, **k: 1 / 0)
    j = judge(output_with())
    assert j.status == Status.ERROR and "ZeroDivisionError" in j.detail


# ---------------------------------------------------------------- stream attribution

def toml(stream: str, group: str = "/ec2/audit") -> str:
    return ('[inputs]\n  [[inputs.logfile]]\n    [[inputs.logfile.file_config]]\n'
            f'      file_path = "/var/log/audit/audit.log"\n      log_group_name = "{group}"\n'
            f'      log_stream_name = "{stream}"\n')


@pytest.mark.parametrize("stream,group,own", [
    ("i-0abc", "/ec2/audit", True),
    ("audit", "/ec2/i-0abc/audit", True),  # the group identifies it
    ("10.0.0.5", "/ec2/audit", True),
    ("ip-10-0-0-5", "/ec2/audit", True),
    ("audit", "/ec2/audit", False),  # shared by every host of the image
    ("i-0abcd", "/ec2/audit", False),  # not a boundary match
    ("10.0.0.50", "/ec2/audit", False),
])
def test_only_a_stream_that_names_this_instance_counts(stream, group, own):
    lookup = Fresh()
    identity = "hostname: web-1\nID=amzn"
    v = judge(output_with(cwagent_toml=toml(stream, group), host_identity=identity),
              lookup=lookup).verdicts["cwagent.log_stream_fresh"]
    assert (v.status == CheckStatus.PASS) == own, v.detail
    if not own:
        assert "proves nothing for this host" in v.detail and lookup.calls == []


def verify_hostname_streams(monkeypatch, names: list[str]) -> tuple[list[str], dict[str, dict]]:
    """A run (on moto) of one batch of len(names) instances whose agents name their audit stream by the hostname
    each reports: verify_batch, then the run's end (store_summary, which sees every batch's evidence). Returns
    (instance ids in the order of `names`, {instance id: its cwagent.log_stream_fresh as stored at the end})."""
    import time

    import boto3
    from moto import mock_aws

    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach import choice
    from include.reach.ssh import SshSettings
    from include.tasks import audit as pipeline
    from include.verify import batch as verify

    with mock_aws():
        ec2, logs = boto3.client("ec2", region_name="us-east-1"), boto3.client("logs", region_name="us-east-1")
        image = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                     if "windows" not in f"{i.get('Platform', '')} {i.get('PlatformDetails', '')}".lower())
        started = ec2.run_instances(ImageId=image, MinCount=len(names), MaxCount=len(names))["Instances"]
        ids = [i["InstanceId"] for i in started]
        hostname_of = dict(zip(ids, names))
        logs.create_log_group(logGroupName="/ec2/audit")
        for name in set(names):
            logs.create_log_stream(logGroupName="/ec2/audit", logStreamName=name)
            logs.put_log_events(logGroupName="/ec2/audit", logStreamName=name,
                                logEvents=[{"timestamp": int(time.time() * 1000), "message": "type=USER msg=audit"}])
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "trust_hostnames")
        store.ensure_tables()

        class Transport:  # each host answers the script as its hostname and agent config say
            def __init__(self, *args, **kwargs):
                pass

            async def run(self, hosts, script, on_outcome):
                for h in hosts:
                    name = hostname_of[h.instance_id]
                    sections = sections_for(with_changes("compliant"), {"hostname": name, "instance_id": h.instance_id})
                    # the agent's translated config, {hostname} resolved on the host
                    text = render_sections({**sections, "cwagent_toml": toml(name)}, TEST_NONCE)
                    await on_outcome(h, HostOutcome(h.instance_id, None, output=text.encode(), nonce=TEST_NONCE))

        monkeypatch.setattr(choice, "SshTransport", Transport)
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: store)
        day, run_id, params = "2026-12-01", "run-hostnames", AuditParams(evidence_table="trust_hostnames")
        ctx = verify.RunContext(day, run_id, params, SshSettings(username="ec2-user", private_key="unused"))
        result = verify.verify_batch(Batch("us-east-1", ids), ctx, ec2, logs, store)
        pipeline.store_summary(params, Inventory.from_xcom({
            "audit_date": day, "run_id": run_id, "mode": "live", "instances": {"us-east-1": ids},
            "states": {"us-east-1": {"running": len(ids)}}}), [result])
        items = store.day_items(day)
    stream = {it.instance_id: it.checks["cwagent.log_stream_fresh"] for it in items}
    assert set(stream) == set(ids)
    return ids, stream


def test_a_hostname_only_this_host_s_agent_names_in_the_run_names_its_stream(monkeypatch):
    """Contract, cwagent.log_stream_fresh: a hostname specific to the host identifies its stream while no other
    discovered instance's agent names the same (group, stream)."""
    ids, stream = verify_hostname_streams(monkeypatch, ["web-1", "web-2"])
    for own in ids:
        assert stream[own]["status"] == "PASS", stream[own]


def test_a_hostname_another_discovered_instance_also_names_proves_nothing_for_either(monkeypatch):
    """Contract, cwagent.log_stream_fresh: a stream named by a hostname that another discovered instance's agent
    also names in the same run proves nothing for this host (AMI clones share their hostname)."""
    ids, stream = verify_hostname_streams(monkeypatch, ["web-1", "web-1", "web-2"])
    clone_a, clone_b, own = ids
    assert stream[own]["status"] == "PASS", stream[own]
    for clone in (clone_a, clone_b):
        assert stream[clone]["status"] == "FAIL" and "web-1" in stream[clone]["detail"], stream[clone]


def test_another_instances_id_is_named_in_the_detail():
    v = judge(output_with(cwagent_toml=toml("i-0123456789abcdef0"))).verdicts["cwagent.log_stream_fresh"]
    assert v.status == CheckStatus.FAIL and "i-0123456789abcdef0" in v.detail


def test_the_running_config_decides_over_the_json():
    # The JSON names the host's own stream; the translated config the agent runs ships audit.log nowhere.
    no_audit = '[inputs]\n  [[inputs.logfile]]\n    [[inputs.logfile.file_config]]\n      file_path = "/var/log/x"\n'
    v = judge(output_with(cwagent_toml=no_audit)).verdicts["cwagent.log_stream_fresh"]
    assert v.status == CheckStatus.FAIL and "translated" in v.detail


def test_a_canary_in_a_shared_stream_proves_delivery():
    class Logs:
        def get_paginator(self, name):
            class P:
                def paginate(self, **kw):
                    # FilterLogEvents names each event's stream: the canary counts in the stream the config names
                    yield {"events": [{"logStreamName": "audit",
                                       "message": "type=USER msg=audit(1.0:1): pid=1 uid=0 msg='text="
                                                  f"ec2-audit-canary {tag} 1234567890abcdef1234 res=success'"}]}
            return P()

    tag = "00000000000000aa"
    text = output_with(cwagent_toml=toml("audit"), canary=f"canary: ec2-audit-canary {tag} 1234567890abcdef1234")
    j = judge(text, AuditParams(canary=True))
    assert j.canary is not None and j.verdicts["cwagent.log_stream_fresh"].status == CheckStatus.FAIL
    settle_canaries([j], Logs(), tag, 0, 1, load_profile("audit-trail"))
    assert j.verdicts["cwagent.log_stream_fresh"].status == CheckStatus.PASS
    assert j.status == Status.COMPLIANT and isinstance(j, Judgement)


@pytest.mark.parametrize("rules", ["-a always,exit -F", "-w", "-a", "LIST_RULES: exit,always key", "-a never,task -F",
                                   "-a always,exit -S\n-w /etc/passwd -p wa -k identity"])
def test_broken_rule_lines_never_crash_the_rule_checks(rules):
    j = judge(output_with(auditctl_rules=rules))
    for cid in ("auditd.rules_loaded", "auditd.rules_cover_cis"):
        assert j.verdicts[cid].status in (CheckStatus.PASS, CheckStatus.FAIL, CheckStatus.ERROR)
        assert "parser failed" not in j.verdicts[cid].detail, j.verdicts[cid].detail


@pytest.mark.parametrize("hostname", ["localhost", "localhost.localdomain", "ip-10-0-0-9", "ubuntu"])
def test_a_stock_or_borrowed_hostname_never_makes_a_stream_this_hosts(hostname):
    v = judge(output_with(cwagent_toml=toml(hostname), host_identity=f"hostname: {hostname}\nID=amzn")
              ).verdicts["cwagent.log_stream_fresh"]
    assert v.status == CheckStatus.FAIL and "shared by hosts" in v.detail


def test_a_canary_line_naming_another_batch_s_tag_is_never_searched_for_and_fails():
    class Logs:
        def get_paginator(self, name):
            raise AssertionError("no search for a canary that is not this batch's")

    other = "00000000000000bb"
    text = output_with(cwagent_toml=toml("audit"), canary=f"canary: ec2-audit-canary {other} 1234567890abcdef1234")
    j = judge(text, AuditParams(canary=True))
    settle_canaries([j], Logs(), "00000000000000aa", 0, 1, load_profile("audit-trail"))
    v = j.verdicts["cwagent.canary_delivered"]
    assert v.status == CheckStatus.FAIL and other in v.detail and j.status != Status.COMPLIANT

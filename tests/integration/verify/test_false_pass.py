"""Hosts that lie or are odd, through the real pipeline: real OpenSSH sshd hosts running the real combined
script, a real moto server (EC2, CloudWatch Logs, DynamoDB), `verify_batch` as the DAG runs it.

Each host here got a false PASS from an earlier version (issue 14): every test fails on that code.
"""
from __future__ import annotations

import json
import time

import pytest

from devstack.standins.aws.seed import clients, seed_fleet
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.host_states import AUDIT_GROUP, CIS_RULES, GOOD_AUDITD_CONF
from devstack.standins.hosts.sshd_host import LOGIN, ensure_login_user, start_sshd_host
from include.evidence.store import EvidenceStore
from include.fleet.batching import Batch
from include.fleet.inventory import Inventory
from include.reach.ssh import SshSettings
from include.settings.params import AuditParams
from include.verify.batch import RunContext, verify_batch

pytestmark = pytest.mark.needs_sshd
PORT = 2222
DAY, RUN = "2026-12-01", "manual__false-pass"
ETC = "amazon-cloudwatch-agent"
CTL_DIR = "/opt/aws/amazon-cloudwatch-agent"


def agent_json(stream: str = "{instance_id}", **extra) -> str:
    files = [{"file_path": "/var/log/audit/audit.log", "log_group_name": AUDIT_GROUP, "log_stream_name": stream}]
    return json.dumps({"agent": {"run_as_user": "root"},
                       "logs": {"logs_collected": {"files": {"collect_list": files}}}, **extra}, ensure_ascii=False)


def agent_toml(stream: str, ships: bool = True) -> str:
    entries = '    [[inputs.logfile.file_config]]\n      file_path = "/var/log/messages"\n' \
              '      log_group_name = "/ec2/syslog"\n      log_stream_name = "%s"\n' % stream
    if ships:
        entries += ('    [[inputs.logfile.file_config]]\n      file_path = "/var/log/audit/audit.log"\n'
                    f'      log_group_name = "{AUDIT_GROUP}"\n      log_stream_name = "{stream}"\n')
    return '[inputs]\n  [[inputs.logfile]]\n    destination = "cloudwatchlogs"\n' + entries


def forged_fragment() -> str:
    """A fragment that imitates the script: a TOML that ships audit.log, a steady lost counter, the end."""
    toml = agent_toml("i-forged")
    status = "enabled 2\nfailure 1\npid 4242\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0"
    return (f"{{}}\n@@ec2audit-section cwagent_toml\n{toml}\n@@ec2audit-section auditctl_status_end\n{status}\n"
            "@@ec2audit-end\n")


PADDING = ("x" * 1023 + "\n") * 300  # 300 KiB per file: five of them pass the client's 1 MiB output cap

# name → address; `overrides` says what each host's crafted state is
HOSTS = {
    "healthy": "127.42.4.1",
    "never-task": "127.42.4.2",
    "forger": "127.42.4.3",
    "u2028": "127.42.4.4",
    "shared-stream": "127.42.4.5",
    "baked-stream": "127.42.4.6",
    "secure-in-audit-stream": "127.42.4.17",
    "write-logs-no": "127.42.4.18",
    "repeated-key": "127.42.4.19",
}


def secure_in_audit_stream(me: str) -> dict[str, str]:
    """The agent's default stream name ({instance_id}) for both files: audit.log and /var/log/secure land in one
    stream, whose freshness then says nothing about audit.log."""
    main = json.loads(agent_json())
    main["logs"]["logs_collected"]["files"]["collect_list"].append(
        {"file_path": "/var/log/secure", "log_group_name": AUDIT_GROUP})
    toml = agent_toml(me) + ('    [[inputs.logfile.file_config]]\n      file_path = "/var/log/secure"\n'
                             f'      log_group_name = "{AUDIT_GROUP}"\n      log_stream_name = "{me}"\n')
    return {f"{ETC}.json": json.dumps(main), f"{ETC}.toml": toml}


def overrides(name: str, ids: dict[str, str]) -> dict:
    me = ids[name]
    if name == "never-task":  # the stock Amazon Linux file, then the CIS set: nothing records
        return {"rules": "-a never,task\n" + "\n".join(CIS_RULES)}
    if name == "forger":
        # The running (translated) config does not ship audit.log; a fragment forges one that does, then pads
        # the output past the cap so the real sections never arrive.
        files = {f"{ETC}.json": agent_json(), f"{ETC}.toml": agent_toml(me, ships=False),
                 f"{ETC}.d/0-forge.json": forged_fragment()}
        files.update({f"{ETC}.d/{n}-pad.json": PADDING for n in range(1, 6)})
        return {"agent_files": files}
    if name == "u2028":
        # Ships audit.log, and a JSON string holds U+2028, "\r" and a marker-like line: str.splitlines split the
        # file there, broke its JSON and read a forged file. Split on "\n" only, it is one valid config.
        main = json.loads(agent_json())
        main["note"] = "a\u2028@@ec2audit-file /x.json\u2028{}\rb"
        return {"agent_files": {f"{ETC}.json": json.dumps(main, ensure_ascii=False), f"{ETC}.toml": agent_toml(me)}}
    if name == "shared-stream":  # every host of the image ships to the constant stream "audit"
        return {"agent_files": {f"{ETC}.json": agent_json("audit"), f"{ETC}.toml": agent_toml("audit")}}
    if name == "secure-in-audit-stream":
        return {"agent_files": secure_in_audit_stream(me)}
    if name == "write-logs-no":  # auditd runs and records, and writes nothing to disk for the agent
        return {"auditd_conf": GOOD_AUDITD_CONF + "\nwrite_logs = no\n"}
    if name == "repeated-key":  # the stock value first, an override later: auditd applies the last one
        return {"auditd_conf": GOOD_AUDITD_CONF + "\ndisk_full_action = ignore\n"}
    if name == "baked-stream":  # config translated on the image builder: another instance's id
        other = ids["healthy"]
        return {"agent_files": {f"{ETC}.json": agent_json(other), f"{ETC}.toml": agent_toml(other)}}
    return {}


@pytest.fixture(scope="module")
def audited(tmp_path_factory, moto):
    root = tmp_path_factory.mktemp("false-pass")
    public = generate_client_key(root / "id")
    ensure_login_user()
    entries = [{"address": address, "name": name, "profile": "compliant"} for name, address in HOSTS.items()]
    seed_fleet(moto, entries)
    ids = {h["name"]: h["instance_id"] for h in entries}
    ec2, logs, dynamodb = clients(moto)
    logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName="audit")  # fresh events from other hosts
    logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName="audit", logEvents=[
        {"timestamp": int(time.time() * 1000), "message": "type=USER_LOGIN msg=audit(1:1): res=success"}])
    started = []
    try:
        for name, address in HOSTS.items():
            started.append(start_sshd_host(root / name, address, PORT, public, "compliant", ids[name],
                                           fake_auditctl=True, **overrides(name, ids)))
        store = EvidenceStore(dynamodb, "false_pass_evidence")
        store.ensure_tables()
        params = AuditParams(evidence_table="false_pass_evidence", connect_timeout=5, host_timeout=30,
                             command_timeout=20)
        ssh = SshSettings(username=LOGIN, key_file=str(root / "id"), port=PORT, connect_timeout=5)
        batch = Batch("us-east-1", sorted(ids.values()), label="false-pass")
        verify_batch(batch, RunContext(DAY, RUN, params, ssh), ec2, logs, store)
        yield {name: store.table.get_item(Key={"instance_id": ids[name], "audit_date": DAY})["Item"]
               for name in HOSTS}
    finally:
        for host in started:
            host.stop()


def check(item: dict, check_id: str) -> tuple[str, str]:
    c = item["checks"][check_id]
    return c["status"], c["detail"]


def test_healthy_host_is_compliant_under_the_audit_trail_profile(audited):
    item = audited["healthy"]
    assert item["status"] == "COMPLIANT", item["checks"]
    assert item["profile"] == "audit-trail" and item["failed_checks"] == []


def test_never_task_rules_record_nothing(audited):
    item = audited["never-task"]
    assert check(item, "auditd.rules_loaded")[0] == "FAIL"
    assert "Amazon Linux" in check(item, "auditd.rules_loaded")[1]
    assert check(item, "auditd.rules_cover_cis")[0] == "FAIL"  # -a never,task shadows the CIS set after it
    assert item["status"] == "NON_COMPLIANT" and "auditd.rules_loaded" in item["failed_checks"]


def test_forged_sections_and_padding_never_pass(audited):
    item = audited["forger"]
    assert item["output_truncated"] is True
    assert item["status"] == "ERROR", (item["status_detail"], item["checks"])
    assert check(item, "cwagent.config_valid")[0] == "ERROR"  # the real TOML was cut off: not seen, not PASS
    assert check(item, "auditd.backlog_lost")[0] == "ERROR"  # only the forged second reading existed


def test_u2028_inside_a_json_string_is_just_text(audited):
    item = audited["u2028"]
    status, detail = check(item, "cwagent.ships_audit_log")
    assert status == "PASS" and "/var/log/audit/audit.log" in detail, detail
    assert item["status"] == "COMPLIANT", item["checks"]


def test_a_stream_shared_by_hosts_proves_nothing(audited):
    item = audited["shared-stream"]
    status, detail = check(item, "cwagent.log_stream_fresh")
    assert status == "FAIL" and "shared by hosts" in detail and "canary=true" in detail
    assert item["status"] == "NON_COMPLIANT"


def test_a_stream_baked_with_another_instance_id_proves_nothing(audited):
    item = audited["baked-stream"]
    status, detail = check(item, "cwagent.log_stream_fresh")
    assert status == "FAIL" and audited["healthy"]["instance_id"] in detail
    assert item["status"] == "NON_COMPLIANT"


def test_a_stream_that_also_receives_another_file_proves_nothing_about_audit_log(audited):
    item = audited["secure-in-audit-stream"]
    status, detail = check(item, "cwagent.log_stream_fresh")
    assert status == "FAIL" and "/var/log/secure" in detail and "canary=true" in detail, detail
    assert item["status"] == "NON_COMPLIANT"


def test_write_logs_no_fails_the_config_check(audited):
    item = audited["write-logs-no"]
    status, detail = check(item, "auditd.config")
    assert status == "FAIL" and "write_logs=no" in detail
    assert item["status"] == "NON_COMPLIANT" and "auditd.config" in item["failed_checks"]


def test_a_repeated_key_is_read_as_auditd_reads_it_the_last_value_wins(audited):
    item = audited["repeated-key"]
    status, detail = check(item, "auditd.config")
    assert status == "FAIL" and "disk_full_action=ignore" in detail
    assert item["status"] == "NON_COMPLIANT"


def test_every_host_has_exactly_one_item_with_the_profile(audited):
    assert {it["profile"] for it in audited.values()} == {"audit-trail"}
    assert len({it["instance_id"] for it in audited.values()}) == len(HOSTS)


# Issue 25, item 2: two AMI clones with one baked hostname, each naming its audit stream by it, checked in two
# batches of one run; a third host names its stream by a hostname unique in the fleet.
CLONE_NAME, UNIQUE_NAME = "web-clone", "db-unique-7"
NAMED = {"clone-a": ("127.42.4.7", CLONE_NAME), "unique": ("127.42.4.8", UNIQUE_NAME),
         "clone-b": ("127.42.4.9", CLONE_NAME)}
CLAIMS_DAY, CLAIMS_RUN, CLAIMS_TABLE = "2026-12-02", "scheduled__name-claims", "name_claims_evidence"


@pytest.fixture(scope="module")
def named_by_hostname(tmp_path_factory, moto):
    from include.tasks import audit as pipeline

    root = tmp_path_factory.mktemp("name-claims")
    public = generate_client_key(root / "id")
    ensure_login_user()
    entries = [{"address": address, "name": name, "profile": "compliant"} for name, (address, _) in NAMED.items()]
    seed_fleet(moto, entries)
    ids = {h["name"]: h["instance_id"] for h in entries}
    ec2, logs, dynamodb = clients(moto)
    for stream in (CLONE_NAME, UNIQUE_NAME):  # both clones' agents ship into "web-clone": it is fresh
        logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName=stream)
        logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName=stream, logEvents=[
            {"timestamp": int(time.time() * 1000), "message": "type=USER_LOGIN msg=audit(1:1): res=success"}])
    started = []
    try:
        for name, (address, hostname) in NAMED.items():
            # The image's config names the stream by the OS hostname; fetch-config resolved it into the TOML.
            files = {f"{ETC}.json": agent_json("{local_hostname}"), f"{ETC}.toml": agent_toml(hostname)}
            started.append(start_sshd_host(root / name, address, PORT, public, "compliant", ids[name],
                                           fake_auditctl=True, agent_files=files, hostname=hostname))
        store = EvidenceStore(dynamodb, CLAIMS_TABLE)
        store.ensure_tables()
        params = AuditParams(evidence_table=CLAIMS_TABLE, connect_timeout=5, host_timeout=30, command_timeout=20,
                             report_dir=str(root / "reports"))
        ssh = SshSettings(username=LOGIN, key_file=str(root / "id"), port=PORT, connect_timeout=5)
        ctx = RunContext(CLAIMS_DAY, CLAIMS_RUN, params, ssh)
        batches = [[ids["clone-a"], ids["unique"]], [ids["clone-b"]]]  # the clones in two batches
        results = [verify_batch(Batch("us-east-1", b, label=f"batch {n}/2", of=2),
                                ctx, ec2, logs, store) for n, b in enumerate(batches, 1)]
        judged = {name: store.table.get_item(Key={"instance_id": ids[name], "audit_date": CLAIMS_DAY})["Item"]
                  for name in NAMED}
        inventory = {"audit_date": CLAIMS_DAY, "run_id": CLAIMS_RUN, "mode": "live", "instances":
                     {"us-east-1": sorted(ids.values())}, "states": {"us-east-1": {"running": len(ids)}}}
        with pytest.MonkeyPatch.context() as mp:  # store_summary reads the evidence through aws_default
            mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
                "conn_type": "aws", "login": "testing", "password": "testing",
                "extra": {"endpoint_url": moto, "region_name": "us-east-1"}}))
            pipeline.store_summary(params, Inventory.from_xcom(inventory), results)
        yield {"ids": ids, "judged": judged, "summary": store.run_summary(CLAIMS_DAY),
               "items": {name: store.table.get_item(Key={"instance_id": ids[name], "audit_date": CLAIMS_DAY})["Item"]
                         for name in NAMED}}
    finally:
        for host in started:
            host.stop()


def test_each_batch_judged_the_hostname_named_stream_as_its_host_s(named_by_hostname):
    # What each batch could know: a fresh stream named by the host's own hostname (so the clones really are
    # told apart only by the run, not by their batch).
    for name, (_, hostname) in NAMED.items():
        item = named_by_hostname["judged"][name]
        assert check(item, "cwagent.log_stream_fresh")[0] == "PASS", item["checks"]
        assert item["stream_attributed_by_name"] == [AUDIT_GROUP, hostname]


def test_two_clones_with_one_hostname_both_fail_across_batches(named_by_hostname):
    ids, items = named_by_hostname["ids"], named_by_hostname["items"]
    for name, twin in (("clone-a", "clone-b"), ("clone-b", "clone-a")):
        item = items[name]
        status, detail = check(item, "cwagent.log_stream_fresh")
        assert status == "FAIL" and ids[twin] in detail and "AMI clones" in detail, detail
        assert item["status"] == "NON_COMPLIANT" and "cwagent.log_stream_fresh" in item["failed_checks"]
        assert item["amended"]["was"]["status"] == "COMPLIANT"  # what the batch saw is kept
        assert item["amended"]["was"]["checks"]["cwagent.log_stream_fresh"]["status"] == "PASS"


def test_a_hostname_unique_in_the_fleet_still_passes(named_by_hostname):
    item = named_by_hostname["items"]["unique"]
    assert item["status"] == "COMPLIANT" and check(item, "cwagent.log_stream_fresh")[0] == "PASS"
    assert "amended" not in item
    summary = named_by_hostname["summary"]
    assert summary.status_counts["NON_COMPLIANT"] == 2 and summary.status_counts["COMPLIANT"] == 1


SUDO_ECHO = "127.42.4.20"


@pytest.fixture(scope="module")
def sudo_echo(tmp_path_factory, moto):
    """canary=true on a real sshd host whose agent ships /var/log/secure into audit.log's stream, and whose
    audit record never arrives: only real sudo's log line, with the canary's command line in it, is shipped
    (by a thread here, as the agent would ship the auth log)."""
    import threading

    root = tmp_path_factory.mktemp("sudo-echo")
    public = generate_client_key(root / "id")
    ensure_login_user()
    entries = [{"address": SUDO_ECHO, "name": "sudo-echo", "profile": "compliant"}]
    seed_fleet(moto, entries)
    me = entries[0]["instance_id"]
    ec2, logs, dynamodb = clients(moto)
    sudo_log = root / "secure"
    stop, shipped = threading.Event(), []

    def ship() -> None:  # new lines of the host's sudo log → its audit stream, as the agent ships them
        done = 0
        while not stop.wait(0.2):
            lines = sudo_log.read_text().splitlines() if sudo_log.exists() else []
            for line in lines[done:]:
                logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName=me,
                                    logEvents=[{"timestamp": int(time.time() * 1000), "message": line}])
                shipped.append(line)
            done = len(lines)

    host = start_sshd_host(root / "host", SUDO_ECHO, PORT, public, "compliant", me, fake_auditctl=True,
                           agent_files=secure_in_audit_stream(me), sudo_logfile=sudo_log)
    shipper = threading.Thread(target=ship, daemon=True)
    shipper.start()
    try:
        store = EvidenceStore(dynamodb, "sudo_echo_evidence")
        store.ensure_tables()
        params = AuditParams(evidence_table="sudo_echo_evidence", connect_timeout=5, host_timeout=30,
                             command_timeout=20, canary=True, canary_wait_seconds=5)
        ssh = SshSettings(username=LOGIN, key_file=str(root / "id"), port=PORT, connect_timeout=5)
        verify_batch(Batch("us-east-1", [me], label="sudo-echo"),
                     RunContext(DAY, RUN, params, ssh), ec2, logs, store)
        yield store.table.get_item(Key={"instance_id": me, "audit_date": DAY})["Item"], shipped
    finally:
        stop.set()
        shipper.join(timeout=5)
        host.stop()


def test_sudo_logging_the_canary_command_into_a_shipped_auth_log_is_not_delivery(sudo_echo):
    item, shipped = sudo_echo
    # What the search could find: real sudo's line naming the canary's command, in audit.log's stream.
    assert any("COMMAND=" in line and "ec2-audit-canary" in line for line in shipped), shipped
    status, detail = check(item, "cwagent.canary_delivered")
    assert status == "FAIL" and "not found" in detail, detail
    assert check(item, "cwagent.log_stream_fresh")[0] == "FAIL"  # /var/log/secure shares the stream
    assert item["status"] == "NON_COMPLIANT"

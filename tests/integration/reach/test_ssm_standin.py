"""The SSM Run Command stand-in through the real boto3 SSM API: a moto server process with EC2AUDIT_SSM_DIR
(devstack/standins/aws/ssm.py), the simulated fleet process with its agent listeners and a real OpenSSH sshd host
reached with nsenter (devstack/standins/hosts/ssm_agents.py). What SSM runs is compared with what the same host answers
over SSH.

Every test sends its own commands and reads back only those; none changes what another reads (the registry
edits are to hosts only one test uses), so any order works. Loops are bounded; nothing asserts durations.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path

import asyncssh
import boto3
import pytest

from devstack.procs import wait_until
from devstack.stack import local_aws
from devstack.standins.aws.seed import seed_fleet
from devstack.standins.hosts import ssm_agents
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.host_states import render_output
from devstack.standins.hosts.sshd_host import CMDLINE, LOGIN, ensure_login_user
from include.checks.catalogue import SCRIPT
from include.checks.probes import frame, new_nonce
from include.checks.sections import split_sections
from include.tasks.params import validate as validate_params
from tests.integration.reach.stand import Stand

pytestmark = pytest.mark.needs_sshd
PORT, AGENT_PORT = 2222, 2223
BUCKET = "ssm-output"
ACCOUNT = "123456789012"  # moto's: the bucket's owner
TERMINAL = ("Success", "Failed", "TimedOut", "Cancelled")

# name → (address, fleet host entry, or None for the real sshd host; registry fields)
HOSTS = {
    "sim-ok": ("127.42.10.10", {"profile": "compliant"}, {}),
    "sim-ssm-only": ("127.42.10.11", {"profile": "agent_stopped", "behaviour": "ssm_only"}, {}),
    "sim-large": ("127.42.10.12", {"profile": "compliant", "behaviour": "large"}, {}),
    "sim-hang": ("127.42.10.13", {"profile": "compliant", "behaviour": "hang_command"}, {}),
    "sim-denied": ("127.42.10.14", {"profile": "compliant"}, {"deny_send": True}),
    "sim-lost": ("127.42.10.15", {"profile": "compliant"}, {"ping_status": "ConnectionLost"}),
    "sim-inactive": ("127.42.10.16", {"profile": "compliant"}, {"ping_status": "Inactive"}),
    "unmanaged": ("127.42.10.17", {"profile": "compliant"}, None),  # in EC2, no SSM agent registered
    "sshd": ("127.42.10.20", None, {"computer_name": "sshd-host.ec2.internal"}),
}
MANAGED = [n for n, h in HOSTS.items() if h[2] is not None]


class SsmStand(Stand):
    def __init__(self, root) -> None:
        self.ssm_dir = root / "ssm"
        super().__init__(root, {ssm_agents.SSM_DIR_ENV: str(self.ssm_dir)})

    def start(self) -> None:
        self.user_public = generate_client_key(self.root / "id")
        generate_client_key(self.root / "agent")  # the agent key: only the agent listeners accept it
        entries = [{"address": a, "name": n, "profile": (spec or {}).get("profile", "compliant")}
                   for n, (a, spec, _) in HOSTS.items()]
        seed_fleet(self.endpoint, entries)
        self.ids = {e["name"]: e["instance_id"] for e in entries}
        sim = [{"address": a, "port": PORT, "agent_port": AGENT_PORT, "instance_id": self.ids[n],
                "profile": spec["profile"], "behaviour": spec.get("behaviour", "ok"), "identity": {"hostname": n}}
               for n, (a, spec, _) in HOSTS.items() if spec is not None]
        self.start_fleet(sim, "--authorized-key", str(self.root / "id.pub"),
                         "--ssm-agent-key", str(self.root / "agent.pub"))
        ensure_login_user()
        sshd = self.start_sshd(self.root / "sshd", HOSTS["sshd"][0], PORT, self.user_public, "compliant",
                               self.ids["sshd"], fake_auditctl=True)
        self.sshd = sshd
        for name, (address, spec, fields) in HOSTS.items():
            if fields is None:
                continue
            if spec is None:
                ssm_agents.register_sshd_host(self.ssm_dir, self.ids[name], sshd, **fields)
            else:
                ssm_agents.register_fleet_host(self.ssm_dir, self.ids[name], address, AGENT_PORT,
                                               self.root / "agent", **fields)
        kwargs = dict(endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
        self.ssm, self.s3 = boto3.client("ssm", **kwargs), boto3.client("s3", **kwargs)
        self.s3.create_bucket(Bucket=BUCKET)

    def send(self, names, commands, **kwargs) -> str:
        return self.ssm.send_command(InstanceIds=[self.ids[n] for n in names], DocumentName="AWS-RunShellScript",
                                     Parameters={"commands": commands, **kwargs.pop("parameters", {})},
                                     **kwargs)["Command"]["CommandId"]

    def finished(self, command_id: str, limit_s: float = 60) -> dict[str, dict]:
        """Poll ListCommandInvocations (Details, paginated) until every invocation is terminal (bounded)."""
        for _ in range(int(limit_s / 0.2)):
            pages = self.ssm.get_paginator("list_command_invocations").paginate(
                CommandId=command_id, Details=True, PaginationConfig={"PageSize": 2})
            invocations = {i["InstanceId"]: i for page in pages for i in page["CommandInvocations"]}
            if invocations and all(i["Status"] in TERMINAL for i in invocations.values()):
                return invocations
            time.sleep(0.2)
        raise AssertionError(f"command {command_id} not finished: {invocations}")

    def stdout_in_s3(self, invocation: dict) -> str:
        url = invocation["CommandPlugins"][0]["StandardOutputUrl"]
        prefix = f"https://s3.us-east-1.amazonaws.com/{BUCKET}/"
        assert url.startswith(prefix), url
        return self.s3.get_object(Bucket=BUCKET, Key=url[len(prefix):])["Body"].read().decode()

    def over_ssh(self, name: str, script: bytes) -> str:
        async def run():
            async with asyncssh.connect(HOSTS[name][0], PORT, username=LOGIN, client_keys=[str(self.root / "id")],
                                        known_hosts=None, agent_path=None, config=None, connect_timeout=10) as conn:
                return (await conn.run("/bin/sh -s", input=script.decode(), timeout=30, check=True)).stdout

        return asyncio.run(run())


make_stand = SsmStand  # the `stand` fixture (tests/integration/reach/conftest.py)


def test_describe_instance_information_lists_the_managed_instances_with_their_ping_status(stand):
    pages = list(stand.ssm.get_paginator("describe_instance_information").paginate(PaginationConfig={"PageSize": 5}))
    listed = {i["InstanceId"]: i for page in pages for i in page["InstanceInformationList"]}
    assert len(pages) == 2 and len(pages[0]["InstanceInformationList"]) == 5  # 8 managed, 5 a page
    assert set(listed) == {stand.ids[n] for n in MANAGED}  # not the unmanaged instance
    assert listed[stand.ids["sim-lost"]]["PingStatus"] == "ConnectionLost"
    assert listed[stand.ids["sim-inactive"]]["PingStatus"] == "Inactive"
    sshd = listed[stand.ids["sshd"]]
    assert (sshd["PingStatus"], sshd["PlatformType"], sshd["ResourceType"], sshd["IPAddress"], sshd["ComputerName"]) == \
           ("Online", "Linux", "EC2Instance", HOSTS["sshd"][0], "sshd-host.ec2.internal")
    assert sshd["AgentVersion"] == ssm_agents.DEFAULT_AGENT_VERSION and sshd["IsLatestVersion"] is True
    assert listed[stand.ids["sim-lost"]]["LastPingDateTime"] < sshd["LastPingDateTime"]

    online = stand.ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["Online"]}])
    assert {i["InstanceId"] for i in online["InstanceInformationList"]} == \
           {stand.ids[n] for n in MANAGED if n not in ("sim-lost", "sim-inactive")}
    asked = [stand.ids["sshd"], stand.ids["unmanaged"], stand.ids["sim-lost"]]
    for answer in (stand.ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": asked}]),
                   stand.ssm.describe_instance_information(
                       InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": asked}])):
        assert sorted(i["InstanceId"] for i in answer["InstanceInformationList"]) == \
               sorted([stand.ids["sshd"], stand.ids["sim-lost"]])


def test_the_audit_script_over_ssm_answers_what_the_host_answers_over_ssh(stand):
    nonce = new_nonce()
    script = frame(SCRIPT, nonce)
    names = ["sim-ok", "sim-ssm-only", "sshd"]
    command_id = stand.send(names, [script.decode()], OutputS3BucketName=BUCKET, OutputS3KeyPrefix="audit")
    invocations = stand.finished(command_id)
    outputs = {}
    for name in names:
        inv = invocations[stand.ids[name]]
        plugin = inv["CommandPlugins"][0]
        assert (inv["Status"], plugin["Status"], plugin["ResponseCode"], plugin["Name"]) == \
               ("Success", "Success", 0, "aws:runShellScript"), inv
        full = stand.stdout_in_s3(inv)
        assert f"audit/{command_id}/{stand.ids[name]}/awsrunShellScript/0.awsrunShellScript/stdout" in \
               plugin["StandardOutputUrl"]
        assert plugin["Output"] == full[:2500]
        got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids[name])
        assert (got["Status"], got["ResponseCode"], got["StandardOutputContent"]) == ("Success", 0, full[:24000])
        assert got["ExecutionStartDateTime"] and got["ExecutionEndDateTime"]
        parsed = split_sections(full, nonce)
        assert parsed.complete and not parsed.problems and "auditctl_rules" in parsed.sections, name
        outputs[name] = full
    assert outputs["sim-ok"] == stand.over_ssh("sim-ok", script)
    assert outputs["sshd"] == stand.over_ssh("sshd", script)  # root through nsenter = the login user with sudo
    # No inbound SSH at all; its agent still answers as the host (its own profile, the nonce it was sent).
    assert outputs["sim-ssm-only"] == render_output(
        "agent_stopped", {"instance_id": stand.ids["sim-ssm-only"], "hostname": "sim-ssm-only", "nonce": nonce})
    with pytest.raises(OSError):
        stand.over_ssh("sim-ssm-only", script)
    command = stand.ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert (command["Status"], command["CompletedCount"], command["ErrorCount"], sorted(command["InstanceIds"])) == \
           ("Success", 3, 0, sorted(stand.ids[n] for n in names))


def test_the_nsenter_channel_runs_on_that_host_as_root(stand):
    command_id = stand.send(["sshd"], ["id -u", "cat /proc/cmdline", "ls /opt/.sshd-test/", "exit 5"])
    inv = stand.finished(command_id)[stand.ids["sshd"]]
    got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids["sshd"])
    assert (inv["Status"], got["Status"], got["StatusDetails"], got["ResponseCode"]) == ("Failed", "Failed", "Failed", 5)
    # The host's own /proc/cmdline and /opt, bind-mounted in its namespace only.
    assert got["StandardOutputContent"].split("\n")[:3] == ["0", CMDLINE["compliant"], "authorized_keys"]
    assert stand.ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Failed"


def test_output_over_24000_characters_is_cut_by_get_command_invocation_but_whole_in_s3(stand):
    nonce = new_nonce()
    script = frame(SCRIPT, nonce)
    command_id = stand.send(["sim-large"], [script.decode()], OutputS3BucketName=BUCKET)
    large = stand.stdout_in_s3(stand.finished(command_id)[stand.ids["sim-large"]])
    assert len(large) > 40_000 and large == stand.over_ssh("sim-large", script)
    parsed = split_sections(large, nonce)
    assert parsed.complete and not parsed.problems
    got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids["sim-large"])
    assert got["StandardOutputContent"] == large[:24000]
    assert not split_sections(got["StandardOutputContent"], nonce).complete  # what the cut leaves: unusable
    # A real shell's output: the same cut, the whole of it in S3, under no prefix.
    command_id = stand.send(["sshd"], ["seq 1 20000"], OutputS3BucketName=BUCKET)
    seq = stand.stdout_in_s3(stand.finished(command_id)[stand.ids["sshd"]])
    assert seq == "".join(f"{i}\n" for i in range(1, 20001))
    got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids["sshd"])
    assert got["StandardOutputContent"] == seq[:24000] and len(seq) > 24000
    assert got["StandardOutputUrl"].endswith(f"/{BUCKET}/{command_id}/{stand.ids['sshd']}/awsrunShellScript/"
                                             "0.awsrunShellScript/stdout")


def test_stderr_is_kept_apart_and_capped_at_8000_characters(stand):
    command_id = stand.send(["sshd"], ["echo out", "seq 1 5000 >&2"], OutputS3BucketName=BUCKET)
    stand.finished(command_id)
    got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids["sshd"])
    errors = "".join(f"{i}\n" for i in range(1, 5001))
    assert (got["StandardOutputContent"], got["StandardErrorContent"]) == ("out\n", errors[:8000])
    key = got["StandardErrorUrl"].split(f"/{BUCKET}/", 1)[1]
    assert stand.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode() == errors


def test_a_denied_instance_refuses_the_whole_call(stand):
    before = len(stand.ssm.list_commands()["Commands"])
    with pytest.raises(stand.ssm.exceptions.ClientError) as refused:
        stand.send(["sim-ok", "sim-denied"], ["true"])
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "ssm:SendCommand" in error["Message"] and f"instance/{stand.ids['sim-denied']}" in error["Message"]
    assert len(stand.ssm.list_commands()["Commands"]) == before  # nothing was sent to sim-ok either


@pytest.mark.parametrize("name", ["sim-lost", "sim-inactive", "unmanaged"])
def test_an_instance_that_is_not_online_refuses_the_whole_call(stand, name):
    with pytest.raises(stand.ssm.exceptions.InvalidInstanceId) as refused:
        stand.send(["sim-ok", name], ["true"])
    message = refused.value.response["Error"]["Message"]
    assert f"[[{stand.ids[name]}]]" in message and "not in a valid state" in message


def test_send_command_validates_the_document_and_the_instance_count(stand):
    with pytest.raises(stand.ssm.exceptions.InvalidDocument):
        stand.ssm.send_command(InstanceIds=[stand.ids["sim-ok"]], DocumentName="AWS-RunPowerShellScript",
                               Parameters={"commands": ["true"]})
    with pytest.raises(stand.ssm.exceptions.ClientError) as refused:
        stand.ssm.send_command(InstanceIds=[f"i-{n:017x}" for n in range(51)], DocumentName="AWS-RunShellScript",
                               Parameters={"commands": ["true"]})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(stand.ssm.exceptions.InvocationDoesNotExist):
        stand.ssm.get_command_invocation(CommandId="00000000-0000-0000-0000-000000000000", InstanceId=stand.ids["sshd"])


def test_a_hung_host_times_out_at_the_execution_timeout(stand):
    command_id = stand.send(["sim-hang"], ["true"], parameters={"executionTimeout": ["2"]})
    inv = stand.finished(command_id)[stand.ids["sim-hang"]]
    plugin = inv["CommandPlugins"][0]
    assert (inv["Status"], plugin["StatusDetails"], plugin["ResponseCode"]) == ("TimedOut", "ExecutionTimedOut", -1)
    got = stand.ssm.get_command_invocation(CommandId=command_id, InstanceId=stand.ids["sim-hang"])
    assert (got["Status"], got["StatusDetails"], got["ResponseCode"]) == ("TimedOut", "ExecutionTimedOut", -1)
    command = stand.ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert (command["Status"], command["ErrorCount"]) == ("TimedOut", 1)


def test_max_concurrency_one_runs_the_instances_one_after_the_other(stand):
    names = ["sim-ok", "sim-ssm-only", "sshd"]
    command_id = stand.send(names, ["sleep 0.3; echo done"], MaxConcurrency="1")
    spans = sorted((p["ResponseStartDateTime"], p["ResponseFinishDateTime"])
                   for inv in stand.finished(command_id).values() for p in inv["CommandPlugins"])
    assert len(spans) == 3
    assert all(finish <= start for (_, finish), (start, _) in zip(spans, spans[1:]))  # never overlapping


def gone(pid: int) -> bool:
    """Whether the process has ended (bounded wait: a killed orphan is reaped shortly after)."""
    for _ in range(100):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_stopping_the_server_ends_the_scripts_it_is_running(stand, tmp_path):
    registry, pid_file = tmp_path / "ssm", tmp_path / "sleep.pid"
    with local_aws.moto(tmp_path / "moto.log", {ssm_agents.SSM_DIR_ENV: str(registry)}) as endpoint:
        entry = {"address": "127.42.10.30", "name": "again", "profile": "compliant"}
        seed_fleet(endpoint, [entry])
        ssm_agents.register_sshd_host(registry, entry["instance_id"], stand.sshd)  # the same host, another moto
        boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").send_command(
            InstanceIds=[entry["instance_id"]], DocumentName="AWS-RunShellScript",
            Parameters={"commands": [f"sleep 3600 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"]})
        wait_until(pid_file.exists, 30, "the script on the sshd host")
        pid = int(pid_file.read_text())
        assert Path(f"/proc/{pid}").exists()
    assert gone(pid)  # the server's SIGTERM ended its agent's script too


def test_the_server_counts_ssm_calls_per_action(stand):
    def calls() -> dict[str, int]:
        with urllib.request.urlopen(f"{stand.endpoint}/moto-api/ec2audit/ssm-calls", timeout=10) as answer:
            return json.loads(answer.read())["calls"]

    before = calls()
    stand.ssm.describe_instance_information()
    stand.ssm.describe_instance_information()
    stand.ssm.list_command_invocations(InstanceId=stand.ids["sshd"])
    after = calls()
    assert after.get("DescribeInstanceInformation", 0) - before.get("DescribeInstanceInformation", 0) == 2
    assert after.get("ListCommandInvocations", 0) - before.get("ListCommandInvocations", 0) == 1


# ------------------------------------------------------------------ the transport (include/reach/ssm.py)
# verify_batch with transport ssm / auto on this stand-in: the verdicts, the statuses of hosts SSM cannot run
# on, and the evidence. Each test has its own audit day.

TABLE = "ssm_evidence"


def verify(stand, day: str, transport: str, names: list[str], bucket: str | None = None,
           document: str | None = None, s3=None) -> dict[str, dict]:
    from devstack.standins.aws.seed import clients
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.reach.ssm import SsmSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(stand.endpoint)
    store = EvidenceStore(dynamodb, TABLE)
    store.ensure_tables()
    params = AuditParams(evidence_table=TABLE, connect_timeout=3, host_timeout=20, command_timeout=5,
                         transport=transport, ssm_output_bucket=bucket, ssm_document=document)
    validate_params(params)
    ssh = None if transport == "ssm" else SshSettings(username=LOGIN, key_file=str(stand.root / "id"), port=PORT,
                                                      connect_timeout=3, backoff=0.1, host_key_policy="insecure")
    ssm = SsmSettings(command_timeout=5, delivery_timeout=30, output_bucket=bucket, poll_s=0.2, document=document,
                      output_bucket_owner=ACCOUNT if bucket else None)
    batch = Batch("us-east-1", sorted(stand.ids[n] for n in names), label=f"ssm-{day}")
    verify_batch(batch, RunContext(day, f"manual__{transport}-{day}", params, ssh, ssm), ec2, logs, store,
                 ssm_client=stand.ssm, s3_client=(s3 or stand.s3) if bucket else None)
    return {n: store.table.get_item(Key={"instance_id": stand.ids[n], "audit_date": day})["Item"] for n in names}


def verdicts(item: dict) -> dict[str, str]:
    return {c: v["status"] for c, v in item["checks"].items()}


def test_transport_ssm_judges_hosts_as_ssh_does_and_says_why_it_could_not_reach_the_rest(stand):
    names = ["sim-ok", "sim-ssm-only", "sshd", "sim-lost", "sim-inactive", "unmanaged", "sim-denied", "sim-hang"]
    over_ssm = verify(stand, "2026-12-11", "ssm", names)
    over_ssh = verify(stand, "2026-12-12", "ssh", ["sim-ok", "sshd"])
    for name in ("sim-ok", "sshd"):  # the same host states: the same verdicts, check by check
        assert over_ssm[name]["status"] == over_ssh[name]["status"] == "COMPLIANT", over_ssm[name]["status_detail"]
        assert verdicts(over_ssm[name]) == verdicts(over_ssh[name])
        assert over_ssm[name]["advisory_failed"] == over_ssh[name]["advisory_failed"]
        assert over_ssm[name]["transport"] == "ssm" and over_ssh[name]["transport"] == "ssh"
        evidence = over_ssm[name]["transport_evidence"]
        assert evidence["ssm_ping_status"] == "Online" and evidence["ssm_agent_version"] == ssm_agents.DEFAULT_AGENT_VERSION
        assert evidence["ssm_command_id"] and over_ssm[name]["output_sha256"]
    # No inbound SSH: judged on what its agent ran (its agent is stopped).
    assert over_ssm["sim-ssm-only"]["status"] == "NON_COMPLIANT"
    assert over_ssm["sim-ssm-only"]["failed_checks"] == ["cwagent.running"]
    expected = {"sim-lost": ("UNREACHABLE", "ConnectionLost"), "sim-inactive": ("UNREACHABLE", "Inactive"),
                "unmanaged": ("UNREACHABLE", "not managed by SSM"),
                "sim-denied": ("AUTH_FAILED", "ssm:SendCommand refused: AccessDeniedException"),
                "sim-hang": ("ERROR", "timedout")}
    for name, (status, words) in expected.items():
        assert over_ssm[name]["status"] == status, (name, over_ssm[name]["status_detail"])
        assert words.lower() in over_ssm[name]["status_detail"].lower(), over_ssm[name]["status_detail"]
        assert over_ssm[name]["checks"] == {} and over_ssm[name]["transport"] == "ssm"


def test_oversized_output_is_error_inline_and_judged_whole_from_s3(stand):
    cut = verify(stand, "2026-12-13", "ssm", ["sim-large"])["sim-large"]
    assert cut["status"] == "ERROR" and "output truncated by SSM" in cut["status_detail"], cut["status_detail"]
    whole = verify(stand, "2026-12-14", "ssm", ["sim-large"], bucket=BUCKET)["sim-large"]
    over_ssh = verify(stand, "2026-12-15", "ssh", ["sim-large"])["sim-large"]
    assert whole["status"] == over_ssh["status"] == "COMPLIANT", whole["status_detail"]
    assert verdicts(whole) == verdicts(over_ssh)
    assert whole["output_bytes"] == over_ssh["output_bytes"] > 40_000  # all of it (the nonces differ, not the size)
    assert whole["transport_evidence"]["ssm_output"].startswith(f"s3://{BUCKET}/ec2-audit-ssm/")


class PeerWrites:
    """The batch's S3 client, with a peer host's role at work: before the audit reads the victim's output
    object, the peer's own (real, framed, compliant) output of this run is written over it — what an instance
    role allowed to PutObject in the bucket could do. Every read's ExpectedBucketOwner is recorded."""

    def __init__(self, s3, victim: str, peer: str, since) -> None:
        self.s3, self.victim, self.peer, self.since = s3, victim, peer, since
        self.owners: list[str | None] = []

    def _peer_object(self) -> bytes:
        for _ in range(150):  # bounded: the peer's command runs beside the victim's
            listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="ec2-audit-ssm/").get("Contents", [])
            ours = sorted((o for o in listed if f"/{self.peer}/" in o["Key"] and o["Key"].endswith("/stdout")
                           and o["LastModified"] >= self.since), key=lambda o: o["LastModified"])
            if ours:
                return self.s3.get_object(Bucket=BUCKET, Key=ours[-1]["Key"])["Body"].read()
            time.sleep(0.2)
        raise AssertionError("the peer's output never reached the bucket")

    def get_object(self, **kwargs):
        self.owners.append(kwargs.get("ExpectedBucketOwner"))
        if f"/{self.victim}/" in kwargs["Key"]:
            self.s3.put_object(Bucket=BUCKET, Key=kwargs["Key"], Body=self._peer_object())
        return self.s3.get_object(**kwargs)


def test_an_output_object_written_by_a_peer_host_is_never_judged_as_this_hosts(stand):
    """Issue 25 item 9: sim-ssm-only (its CloudWatch agent stopped: NON_COMPLIANT) has its S3 output replaced
    by sim-ok's (COMPLIANT). A nonce per host makes the planted object unusable: ERROR, not sim-ok's verdict."""
    from datetime import datetime, timezone

    since = datetime.now(timezone.utc).replace(microsecond=0)
    peer = PeerWrites(stand.s3, stand.ids["sim-ssm-only"], stand.ids["sim-ok"], since)
    got = verify(stand, "2026-12-21", "ssm", ["sim-ok", "sim-ssm-only"], bucket=BUCKET, s3=peer)
    assert got["sim-ok"]["status"] == "COMPLIANT", got["sim-ok"]["status_detail"]
    victim = got["sim-ssm-only"]
    assert victim["status"] == "ERROR", (victim["status"], victim["status_detail"])
    assert {v["status"] for v in victim["checks"].values()} <= {"ERROR", "NOT_APPLICABLE"}  # nothing judged
    assert peer.owners and set(peer.owners) == {ACCOUNT}  # every read named the bucket's owner


def test_auto_takes_ssm_where_the_agent_is_online_and_ssh_for_the_rest(stand):
    names = ["sim-ok", "sim-ssm-only", "sim-lost", "unmanaged"]
    got = verify(stand, "2026-12-16", "auto", names)
    assert {n: got[n]["transport"] for n in names} == {"sim-ok": "ssm", "sim-ssm-only": "ssm", "sim-lost": "ssh",
                                                       "unmanaged": "ssh"}
    assert {n: got[n]["status"] for n in names} == {"sim-ok": "COMPLIANT", "sim-ssm-only": "NON_COMPLIANT",
                                                    "sim-lost": "COMPLIANT", "unmanaged": "COMPLIANT"}
    assert got["sim-lost"]["host_key_fingerprint"] and not got["sim-ok"]["host_key_fingerprint"]


def create_document(stand, name: str, body: dict) -> None:
    stand.ssm.create_document(Name=name, Content=json.dumps(body), DocumentType="Command", DocumentFormat="JSON")


def test_the_audit_document_runs_the_same_checks_and_a_tampered_one_runs_nowhere(stand):
    from include.reach import ssm_document

    create_document(stand, "EC2Audit-ReadOnlyChecks", ssm_document.content(SCRIPT))
    names = ["sim-ok", "sshd", "sim-large"]
    got = verify(stand, "2026-12-17", "ssm", names, bucket=BUCKET, document="EC2Audit-ReadOnlyChecks")
    plain = verify(stand, "2026-12-18", "ssm", names, bucket=BUCKET)
    for name in names:
        assert got[name]["status"] == plain[name]["status"] == "COMPLIANT", got[name]["status_detail"]
        assert verdicts(got[name]) == verdicts(plain[name])
        assert got[name]["transport_evidence"]["ssm_document"] == "EC2Audit-ReadOnlyChecks:1"
        assert "/awsrunShellScript/ec2auditChecks/stdout" in got[name]["transport_evidence"]["ssm_output"]
    inline = verify(stand, "2026-12-19", "ssm", ["sim-ok"], document="EC2Audit-ReadOnlyChecks")["sim-ok"]
    assert inline["status"] == "COMPLIANT", inline["status_detail"]  # GetCommandInvocation with the step's name

    tampered = ssm_document.content(SCRIPT)
    tampered["mainSteps"][0]["inputs"]["runCommand"].append("touch /tmp/ec2audit-was-here")
    create_document(stand, "EC2Audit-Tampered", tampered)
    before = len(stand.ssm.list_commands()["Commands"])
    refused = verify(stand, "2026-12-20", "ssm", ["sim-ok", "sshd"], document="EC2Audit-Tampered")
    for item in refused.values():
        assert item["status"] == "ERROR" and "does not hold this release's audit script" in item["status_detail"]
    assert len(stand.ssm.list_commands()["Commands"]) == before  # nothing was sent


class LostUpload:
    """The batch's S3 client where one host's agent could not upload its output: its object is missing."""

    def __init__(self, s3, lost: str) -> None:
        self.s3, self.lost = s3, lost

    def get_object(self, **kwargs):
        if f"/{self.lost}/" in kwargs["Key"]:
            kwargs = {**kwargs, "Key": kwargs["Key"] + ".never-uploaded"}  # a real NoSuchKey from moto's S3
        return self.s3.get_object(**kwargs)


def test_with_the_bucket_outputs_come_from_s3_and_a_missing_object_alone_is_read_inline(stand):
    """Issue 29: with ssm_output_bucket no host costs a GetCommandInvocation, except one whose object is missing
    (bounded per batch): that host is judged from SSM's inline copy, as over SSH, and says where its output came from."""
    def calls() -> dict[str, int]:
        with urllib.request.urlopen(f"{stand.endpoint}/moto-api/ec2audit/ssm-calls", timeout=10) as answer:
            return json.loads(answer.read())["calls"]

    before = calls().get("GetCommandInvocation", 0)
    got = verify(stand, "2026-12-22", "ssm", ["sim-ok", "sshd"], bucket=BUCKET,
                 s3=LostUpload(stand.s3, stand.ids["sshd"]))
    assert calls().get("GetCommandInvocation", 0) - before == 1  # the missing object's host only
    assert got["sim-ok"]["status"] == got["sshd"]["status"] == "COMPLIANT", got["sshd"]["status_detail"]
    assert got["sim-ok"]["transport_evidence"]["ssm_output"].startswith(f"s3://{BUCKET}/ec2-audit-ssm/")
    fallback = got["sshd"]["transport_evidence"]["ssm_output"]
    assert fallback.startswith("GetCommandInvocation (s3://") and "NoSuchKey" in fallback

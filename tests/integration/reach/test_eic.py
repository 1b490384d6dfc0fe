"""transport=eic through `verify_batch` on real components: a real moto server process whose
SendSSHPublicKey records the key for 60 s (devstack/standins/aws/ec2.py), the simulated fleet process and real
OpenSSH sshd hosts that authorize those keys (AuthorizedKeysCommand) — no standing key in the connection.

Each test has its own audit day (or its own stand-in); none changes what another reads, so any order works.
"""
from __future__ import annotations

import asyncio
import json

import asyncssh
import boto3
import pytest

from devstack.standins.aws.fault_proxy import FaultProxy
from devstack.standins.aws.seed import clients, seed_fleet
from devstack.standins.hosts import eic_keys
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.sshd_host import LOGIN, ensure_login_user
from include.evidence.store import EvidenceStore
from include.fleet.batching import Batch
from include.reach.ssh import SshSettings
from include.settings.params import AuditParams
from include.tasks.params import validate as validate_params
from include.verify.batch import RunContext, verify_batch
from tests.integration.reach.stand import Stand

pytestmark = pytest.mark.needs_sshd
PORT = 2222
TABLE = "eic_evidence"
SEND_KEY = "AWSEC2InstanceConnectService.SendSSHPublicKey"

# name → (address, fleet host entry or None for a real sshd host)
FLEET = {
    "sim-healthy": ("127.42.9.10", {"profile": "compliant"}),
    "sim-failing": ("127.42.9.11", {"profile": "agent_stopped"}),
    "sim-reject": ("127.42.9.12", {"profile": "compliant", "behaviour": "auth_reject"}),
    "sim-down": ("127.42.9.13", {"profile": "compliant", "behaviour": "down"}),
    # The address answers as another instance (the bystander, not audited): a key pushed for this instance
    # is not that instance's key.
    "sim-other": ("127.42.9.14", {"profile": "compliant"}),
    "sshd-healthy": ("127.42.9.20", None),
    "sshd-nokey": ("127.42.9.21", None),  # the client key is not in its authorized_keys
    "sshd-other": ("127.42.9.22", None),  # answers as the bystander's instance
    "bystander": ("127.42.9.40", {"profile": "compliant", "behaviour": "down"}),  # in EC2, never audited
    "ttl-sim": ("127.42.9.30", {"profile": "compliant"}),  # the expiry test's own stand-in
    "ttl-sshd": ("127.42.9.31", None),
}
CLAIMS = {"sim-other": "bystander", "sshd-other": "bystander"}
AUDITED = [n for n in FLEET if n not in ("bystander", "ttl-sim", "ttl-sshd")]


class EicStand(Stand):
    """One moto (with its key directory), its fleet process and sshd hosts, for the hosts named."""

    def __init__(self, root, names, ttl: str | None = None) -> None:
        self.names = names
        self.key_dir = root / "eic"
        self.key_dir.mkdir(parents=True)
        env = {eic_keys.KEY_DIR_ENV: str(self.key_dir)}
        if ttl is not None:
            env[eic_keys.TTL_ENV] = ttl
        super().__init__(root, env)

    def start(self) -> None:
        self.public = generate_client_key(self.root / "id")
        entries = [{"address": FLEET[n][0], "name": n, "profile": (FLEET[n][1] or {}).get("profile", "compliant")}
                   for n in self.names]
        seed_fleet(self.endpoint, entries)
        self.ids = {e["name"]: e["instance_id"] for e in entries}
        sim = []
        for e in entries:
            spec = FLEET[e["name"]][1]
            if spec is not None:
                claimed = self.ids.get(CLAIMS.get(e["name"], ""), e["instance_id"])
                sim.append({"address": e["address"], "port": PORT, "instance_id": claimed, "profile": spec["profile"],
                            "behaviour": spec.get("behaviour", "ok"), "identity": {"hostname": e["name"]}})
        if sim:
            self.start_fleet(sim, "--authorized-key", str(self.root / "id") + ".pub", "--eic-key-dir", str(self.key_dir))
        ensure_login_user()
        for name in self.names:
            if FLEET[name][1] is None:
                claimed = self.ids.get(CLAIMS.get(name, ""), self.ids[name])
                self.start_sshd(self.root / name, FLEET[name][0], PORT,
                                "" if name == "sshd-nokey" else self.public, "compliant", claimed,
                                fake_auditctl=True, eic_key_dir=self.key_dir)
        self.ec2, self.logs, dynamodb = clients(self.endpoint)
        self.store = EvidenceStore(dynamodb, TABLE)
        self.store.ensure_tables()

    def eic_client(self, endpoint: str | None = None):
        return boto3.client("ec2-instance-connect", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def run(self, day: str, transport: str, names=None, eic_endpoint: str | None = None) -> dict[str, dict]:
        names = names or [n for n in self.names if n != "bystander"]
        params = AuditParams(evidence_table=TABLE, connect_timeout=5, host_timeout=30, command_timeout=20,
                             transport=transport)
        validate_params(params)
        if transport == "eic":  # the connection holds no key at all: login, port and host-key policy only
            ssh = SshSettings(username=LOGIN, port=PORT, connect_timeout=5, backoff=0.1, transport="eic")
        else:
            ssh = SshSettings(username=LOGIN, key_file=str(self.root / "id"), port=PORT, connect_timeout=5, backoff=0.1)
        batch = Batch("us-east-1", sorted(self.ids[n] for n in names), label=f"eic-{day}")
        verify_batch(batch, RunContext(day, f"manual__{transport}-{day}", params, ssh), self.ec2, self.logs,
                     self.store, self.eic_client(eic_endpoint) if transport == "eic" else None)
        return {n: self.store.table.get_item(Key={"instance_id": self.ids[n], "audit_date": day})["Item"]
                for n in names}


def make_stand(root) -> EicStand:
    """The `stand` fixture's (tests/integration/reach/conftest.py): the audited hosts and the bystander."""
    return EicStand(root, AUDITED + ["bystander"])


@pytest.fixture(scope="module")
def over_both(stand):
    """The same hosts over ssh (the connection's standing key), then over eic (no standing key)."""
    return stand.run("2026-12-02", "ssh"), stand.run("2026-12-03", "eic")


SAME = ["sim-healthy", "sim-failing", "sim-reject", "sim-down", "sshd-healthy"]


def test_healthy_hosts_get_the_same_verdicts_over_eic_as_over_ssh(over_both):
    ssh, eic = over_both
    assert {n: ssh[n]["status"] for n in SAME} == {
        "sim-healthy": "COMPLIANT", "sim-failing": "NON_COMPLIANT", "sim-reject": "AUTH_FAILED",
        "sim-down": "UNREACHABLE", "sshd-healthy": "COMPLIANT"}
    for name in SAME:
        assert eic[name]["status"] == ssh[name]["status"], (name, eic[name]["status_detail"])
        assert eic[name]["failed_checks"] == ssh[name]["failed_checks"]
        assert {c: v["status"] for c, v in eic[name]["checks"].items()} == \
               {c: v["status"] for c, v in ssh[name]["checks"].items()}
        assert ssh[name]["transport"] == "ssh" and eic[name]["transport"] == "eic"
    for name in ("sim-healthy", "sshd-healthy"):  # the same host key, checked against the pin
        assert eic[name]["host_key_fingerprint"] == ssh[name]["host_key_fingerprint"]


def test_a_host_without_the_standing_key_still_passes_with_eic(over_both):
    ssh, eic = over_both
    assert ssh["sshd-nokey"]["status"] == "AUTH_FAILED"
    assert eic["sshd-nokey"]["status"] == "COMPLIANT", eic["sshd-nokey"]["status_detail"]
    assert eic["sshd-nokey"]["transport"] == "eic"


def test_a_key_pushed_for_another_instance_does_not_authorize(stand, over_both):
    ssh, eic = over_both
    assert not list((stand.key_dir / stand.ids["bystander"]).glob("*/*.pub"))  # nothing was pushed for it
    for name in ("sim-other", "sshd-other"):
        # The standing key opens a session (its output names another instance); the pushed key is not this host's.
        assert ssh[name]["status"] not in ("AUTH_FAILED", "UNREACHABLE", "ERROR"), ssh[name]["status_detail"]
        assert eic[name]["status"] == "AUTH_FAILED", (name, eic[name]["status_detail"])


def test_the_stand_in_records_the_key_for_that_instance_and_user_for_60_seconds(stand):
    import time

    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode().strip()
    target = stand.ids["sshd-nokey"]
    before = time.time()
    answer = stand.eic_client().send_ssh_public_key(InstanceId=target, InstanceOSUser="audit-probe",
                                                    SSHPublicKey=public)
    after = time.time()
    assert answer["Success"] is True
    pushed = list((stand.key_dir / target / "audit-probe").glob("*.pub"))
    assert [p.read_text().strip() for p in pushed] == [public]
    expires = int(pushed[0].name.split("-", 1)[0])
    assert int(before) + 59 <= expires <= after + 60
    assert eic_keys.valid_keys(stand.key_dir, target, "audit-probe", now=expires - 1) == [public]
    assert eic_keys.valid_keys(stand.key_dir, target, "audit-probe", now=expires) == []
    with pytest.raises(stand.eic_client().exceptions.EC2InstanceNotFoundException):
        stand.eic_client().send_ssh_public_key(InstanceId="i-00000000000000000", InstanceOSUser=LOGIN,
                                               SSHPublicKey=public)

    async def login(address: str):  # the pushed key (for another user): the sshd host refuses it for LOGIN
        try:
            async with asyncssh.connect(address, PORT, username=LOGIN, client_keys=[key], known_hosts=None,
                                        agent_path=None, config=None, connect_timeout=5):
                return "in"
        except asyncssh.PermissionDenied:
            return "denied"

    assert asyncio.run(login(FLEET["sshd-nokey"][0])) == "denied"


class DeniedKeyPush(FaultProxy):
    """SendSSHPublicKey is refused as IAM refuses it (no policy, or an `ec2:osuser` it does not allow)."""

    pushes = 0

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        if self.headers.get("X-Amz-Target", "") != SEND_KEY:
            return self.forward(body)
        DeniedKeyPush.pushes += 1
        message = ("User: arn:aws:iam::123456789012:user/audit is not authorized to perform: "
                   "ec2-instance-connect:SendSSHPublicKey on resource: instance because no identity-based policy "
                   "allows the ec2-instance-connect:SendSSHPublicKey action")
        return 400, json.dumps({"__type": "AccessDeniedException", "Message": message}).encode(), {
            "Content-Type": "application/x-amz-json-1.1"}


def test_a_denied_send_ssh_public_key_is_auth_failed(stand):
    server, proxied = DeniedKeyPush.start(stand.endpoint)
    try:
        items = stand.run("2026-12-04", "eic", ["sim-healthy", "sshd-healthy"], eic_endpoint=proxied)
    finally:
        server.shutdown()
    for name, item in items.items():
        assert item["status"] == "AUTH_FAILED", (name, item["status_detail"])
        assert "AccessDeniedException" in item["status_detail"] and "SendSSHPublicKey" in item["status_detail"]
        assert item["transport"] == "eic"
    assert DeniedKeyPush.pushes == 2  # one per host, never retried


def test_a_pushed_key_that_has_expired_does_not_authorize(tmp_path):
    """A stand-in whose pushed keys live 0 s: pushed, recorded, already expired when the host looks."""
    with EicStand(tmp_path, ["ttl-sim", "ttl-sshd"], ttl="0") as s:
        ssh = s.run("2026-12-05", "ssh")
        eic = s.run("2026-12-06", "eic")
        pushed = {p.parent.parent.name for p in s.key_dir.glob("*/*/*.pub")}
    assert {n: i["status"] for n, i in ssh.items()} == {"ttl-sim": "COMPLIANT", "ttl-sshd": "COMPLIANT"}
    assert {n: i["status"] for n, i in eic.items()} == {"ttl-sim": "AUTH_FAILED", "ttl-sshd": "AUTH_FAILED"}
    assert pushed == set(s.ids.values())  # the keys were pushed: only their age refused them

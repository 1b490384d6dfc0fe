"""Host keys fail closed, with real components: OpenSSH sshd, asyncssh servers, a moto server, the fault proxy.

- a host pinned with ed25519 that now offers only RSA is HOST_KEY_MISMATCH (it used to fail key exchange and
  be recorded UNREACHABLE);
- pins answered as UnprocessedKeys (throttling) never become "first use": those hosts are ERROR, not connected;
- a first-sight pin that loses the conditional-write race to another key is HOST_KEY_MISMATCH.
Loopback 127.42.6.x only.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import asyncssh
import pytest

from devstack.procs import free_port
from devstack.stack import local_aws
from devstack.standins.aws.fault_proxy import FaultProxy
from include.core.host import Host
from include.core.status import Status
from include.reach.hostkeys import HostKeys, Pin, PinStore
from include.reach.ssh import SshSettings, check_host, fan_out

BATCH_GET = "DynamoDB_20120810.BatchGetItem"
EVIDENCE = "hk_evidence"
PINS = f"{EVIDENCE}_host_keys"


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def pin_of(key: asyncssh.SSHKey) -> Pin:
    return Pin(public(key), key.get_fingerprint("sha256"))


# ---------------------------------------------------------------- a real sshd that switched key type

@pytest.fixture(scope="module")
def rsa_only_sshd(tmp_path_factory):
    from devstack.standins.hosts.fleet import generate_client_key
    from devstack.standins.hosts.sshd_host import ensure_login_user, start_sshd_host

    root = tmp_path_factory.mktemp("hk-sshd")
    client_public = generate_client_key(root / "id")
    ensure_login_user()
    sshd = start_sshd_host(root / "rsa", "127.42.6.1", 2222, client_public, "compliant", "i-switched",
                           fake_auditctl=True, host_key_type="rsa")
    try:
        yield root, sshd
    finally:
        sshd.stop()


@pytest.mark.needs_sshd
def test_pinned_ed25519_host_now_offering_only_rsa_is_mismatch(rsa_only_sshd, tmp_path):
    from devstack.standins.hosts.sshd_host import LOGIN

    root, sshd = rsa_only_sshd
    ed25519 = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.42.6.1]:2222 {public(ed25519)}\n")
    target = Host("i-switched", "r", "a", "127.42.6.1")

    def check(pin: Pin | None, **kw):
        s = SshSettings(username=LOGIN, key_file=str(root / "id"), port=2222, connect_timeout=5, backoff=0.1, **kw)
        return asyncio.run(check_host(target, s, s.load_key(), b"echo hi\n", pin))

    control = check(None)  # the host is up and lets us in: only the key decides below
    assert control.transport_status is None and control.host_key_fingerprint == sshd.host_key_fingerprint
    tofu = check(pin_of(ed25519))
    strict = check(None, host_key_policy="strict", known_hosts=str(known))
    for outcome in (tofu, strict):
        assert outcome.transport_status == Status.HOST_KEY_MISMATCH, outcome.transport_detail
        assert outcome.attempts == 1 and outcome.output == b""  # never retried, nothing ran
        assert outcome.host_key_fingerprint == sshd.host_key_fingerprint
        assert "ssh-rsa" in outcome.transport_detail and sshd.host_key_fingerprint in outcome.transport_detail
    assert ed25519.get_fingerprint("sha256") in tofu.transport_detail and "ssh-ed25519" in tofu.transport_detail


# ---------------------------------------------------------------- moto + a proxy that throttles pin reads

class ThrottlingPins(FaultProxy):
    """BatchGetItem on the pins table: keys of i-throttled-* always come back as UnprocessedKeys."""

    unprocessed = Counter()
    lock = threading.Lock()

    def answer(self, body: bytes) -> tuple[int, bytes, dict]:
        if self.headers.get("X-Amz-Target", "") != BATCH_GET:
            return self.forward(body)
        request = json.loads(body)
        spec = request["RequestItems"].get(PINS)
        if spec is None:
            return self.forward(body)
        held = [k for k in spec["Keys"] if k["instance_id"]["S"].startswith("i-throttled")]
        passed = [k for k in spec["Keys"] if k not in held]
        with self.lock:
            self.unprocessed.update(k["instance_id"]["S"] for k in held)
        if passed:
            status, data, headers = self.forward(json.dumps(
                {**request, "RequestItems": {**request["RequestItems"], PINS: {**spec, "Keys": passed}}}).encode())
            reply = json.loads(data)
        else:
            status, headers, reply = 200, {"Content-Type": "application/x-amz-json-1.0"}, {"Responses": {PINS: []}}
        if held and status == 200:
            reply.setdefault("UnprocessedKeys", {})[PINS] = {**spec, "Keys": held}
        return status, json.dumps(reply).encode(), headers


@pytest.fixture(scope="module")
def moto():
    with local_aws.moto_behind(ThrottlingPins) as (direct, proxied):
        resource(direct).meta.client.create_table(
            TableName=PINS, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}])
        yield direct, proxied


resource = local_aws.dynamodb


class Fleet:
    """asyncssh servers, one per loopback address, counting TCP connections and authenticated sessions."""

    def __init__(self, client_key: asyncssh.SSHKey) -> None:
        self.client_key, self.port = client_key, free_port()
        self.connections: Counter[str] = Counter()
        self.sessions: Counter[str] = Counter()
        self.servers: list = []

    async def add(self, address: str, host_key: asyncssh.SSHKey) -> None:
        fleet = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn):
                fleet.connections[address] += 1

        async def handle(proc):
            fleet.sessions[address] += 1
            await proc.stdin.read()
            proc.stdout.write("ok\n")
            proc.exit(0)

        self.servers.append(await asyncssh.listen(
            address, self.port, server_host_keys=[host_key], server_factory=Server, process_factory=handle,
            authorized_client_keys=asyncssh.import_authorized_keys(public(self.client_key))))

    def settings(self) -> SshSettings:
        return SshSettings(username="audit", private_key=self.client_key.export_private_key().decode(),
                           port=self.port, connect_timeout=3, backoff=0.1, attempts=1)

    def close(self) -> None:
        for server in self.servers:
            server.close()


def test_throttled_pin_reads_are_error_and_nothing_connects_to_those_hosts(moto):
    direct, proxied = moto
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    genuine, intruder, readable = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(3))
    writer = PinStore(resource(direct), EVIDENCE)
    assert writer.pin("i-throttled-mitm", public(genuine), genuine.get_fingerprint("sha256"), "127.42.6.11")
    assert writer.pin("i-readable", public(readable), readable.get_fingerprint("sha256"), "127.42.6.13")
    hosts = [Host("i-throttled-mitm", "r", "a", "127.42.6.11"),  # pinned; a man in the middle answers now
             Host("i-throttled-new", "r", "a", "127.42.6.12"),  # never pinned, its read throttled too
             Host("i-readable", "r", "a", "127.42.6.13")]
    keys = HostKeys("tofu", PinStore(resource(proxied), EVIDENCE, load_budget_s=3, base_delay=0.01, max_delay=0.2),
                    run_id="run-t")
    outcomes = {}

    async def go():
        fleet = Fleet(client_key)
        for h, key in zip(hosts, (intruder, asyncssh.generate_private_key("ssh-ed25519"), readable)):
            await fleet.add(h.address, key)

        async def on_outcome(h, outcome):
            await asyncio.to_thread(keys.settle, h, outcome)
            outcomes[h.instance_id] = outcome

        try:
            errors = keys.prepare([h.instance_id for h in hosts])
            # The verifier's part: hosts whose pin could not be read are recorded ERROR, not connected to.
            await fan_out([h for h in hosts if h.instance_id not in errors], fleet.settings(), "true\n",
                          keys.transport_pins, 3, on_outcome)
            before = dict(fleet.connections)
            # And a verifier that connected anyway would still learn nothing and trust nothing.
            await fan_out([h for h in hosts if h.instance_id in errors], fleet.settings(), "true\n",
                          keys.transport_pins, 3, on_outcome)
        finally:
            fleet.close()
        return errors, before, fleet

    errors, connected_first, fleet = asyncio.run(go())
    assert sorted(errors) == ["i-throttled-mitm", "i-throttled-new"], errors
    assert all(d.startswith("host-key pin could not be read") for d in errors.values())
    assert ThrottlingPins.unprocessed["i-throttled-mitm"] > 8  # retried past today's 8 quick tries
    assert connected_first == {"127.42.6.13": 1}  # only the host whose pin was read
    assert outcomes["i-readable"].transport_status is None
    for iid in errors:
        assert outcomes[iid].transport_status == Status.ERROR and outcomes[iid].output == b""
    assert fleet.sessions == Counter({"127.42.6.13": 1})  # no script ever reached the others
    assert writer.get("i-throttled-new") is None  # and no pin was taken on "first use"
    assert writer.get("i-throttled-mitm").fingerprint == genuine.get_fingerprint("sha256")


def test_pin_race_lost_to_another_key_is_mismatch(moto):
    direct, _ = moto
    client_key, host_key, other = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(3))
    store = PinStore(resource(direct), EVIDENCE)
    keys = HostKeys("tofu", store, run_id="run-r")
    hosts = [Host("i-race", "r", "a", "127.42.6.21"), Host("i-race-same", "r", "a", "127.42.6.22")]
    outcomes = {}

    async def go():
        fleet = Fleet(client_key)
        for h in hosts:
            await fleet.add(h.address, host_key)

        async def on_outcome(h, outcome):
            await asyncio.to_thread(keys.settle, h, outcome)
            outcomes[h.instance_id] = outcome

        try:
            assert keys.prepare([h.instance_id for h in hosts]) == {}
            assert keys.pin_for("i-race") is None  # first use for this worker…
            # …while another worker pins both: i-race with a different key, i-race-same with the same one.
            assert PinStore(resource(direct), EVIDENCE).pin("i-race", public(other), other.get_fingerprint("sha256"), "x")
            assert PinStore(resource(direct), EVIDENCE).pin("i-race-same", public(host_key),
                                                            host_key.get_fingerprint("sha256"), "x")
            await fan_out(hosts, fleet.settings(), "true\n", keys.transport_pins, 2, on_outcome)
        finally:
            fleet.close()

    asyncio.run(go())
    race = outcomes["i-race"]
    assert race.transport_status == Status.HOST_KEY_MISMATCH and race.output == b""
    assert other.get_fingerprint("sha256") in race.transport_detail
    assert host_key.get_fingerprint("sha256") in race.transport_detail
    assert store.get("i-race").fingerprint == other.get_fingerprint("sha256")  # the first pin stands
    assert outcomes["i-race-same"].transport_status is None

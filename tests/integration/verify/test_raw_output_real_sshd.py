"""The raw output kept for a host is what the real combined script printed on a REAL sshd host, and holds no secret.

A moto server holds the instance and the evidence tables; `verify_batch` runs the real combined script over a real
OpenSSH session to a real sshd host (devstack/standins/hosts/sshd_host.py: its own mount namespace, the real /etc,
real sudo with the audit's allowlist) and stores the item and its raw output. The kept bytes are read back from
DynamoDB's T_raw chunk items by hand (not through the store's reader): they decompress to exactly the bytes whose
SHA-256 is the item's `output_sha256`, and they contain no private key, none of the AWS secrets in the
environment of the worker and of sshd, and no password hash of /etc/shadow.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import uuid
from pathlib import Path

import pytest
from boto3.dynamodb.conditions import Key

from devstack import procs
from devstack.stack import local_aws
from devstack.standins.aws.seed import REGION, clients, seed_fleet
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.sshd_host import LOGIN, ensure_login_user, start_sshd_host

pytestmark = pytest.mark.needs_sshd
ADDRESS, PORT = "127.42.15.27", 2222  # inside the seeded subnet (127.42.0.0/20)
DAY = "2031-07-08"
RUN = uuid.uuid4().hex[:12]
# Secrets in the environment of the worker and of the sshd host: a script that printed its environment (or a
# process's) would show them.
PLANTED = {"AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30), "AWS_SESSION_TOKEN": secrets.token_urlsafe(60),
           "EC2AUDIT_TEST_PASSWORD": secrets.token_urlsafe(20)}
PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
CRYPT_HASH = re.compile(rb"\$(?:1|2[abxy]?|5|6|7|y|gy)\$[./A-Za-z0-9$=,]{8,}")
SHADOW_LINE = re.compile(rb"(?m)^[a-z_][a-z0-9_.-]*\$?:[^:\n]*:[0-9]*:[0-9]*:[0-9]*:[0-9]*:[0-9]*:[0-9]*:")


@pytest.fixture(scope="module")
def real_host(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw-output")
    public = generate_client_key(root / "id")
    ensure_login_user()
    started, hosts = [], []
    with pytest.MonkeyPatch.context() as env:
        try:
            moto, endpoint = local_aws.spawn_moto()
            started.append(moto)
            instance_id = seed_fleet(endpoint, [{"address": ADDRESS, "name": "raw-output", "environment": "test",
                                                 "profile": "compliant"}], REGION)[ADDRESS]
            for name, value in PLANTED.items():  # from here on: the worker's and sshd's environment
                env.setenv(name, value)
            # fake_auditctl: the kernel's audit state is not this test's subject (and is left untouched).
            hosts.append(start_sshd_host(root / "host", ADDRESS, PORT, public, "compliant", instance_id,
                                         fake_auditctl=True))
            yield {"endpoint": endpoint, "instance_id": instance_id, "root": root, "sshd": hosts[0]}
        finally:
            for host in hosts:
                host.stop()
            procs.stop_groups(started)


def stored_chunks(dynamodb, table: str, instance_id: str) -> list[dict]:
    kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(instance_id), "ConsistentRead": True}
    found = []
    while True:
        page = dynamodb.Table(table).query(**kwargs)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def private_key_bodies(*paths: Path) -> list[bytes]:
    """The base64 lines of each private key file: none of them may appear in any output."""
    return [line for p in paths for line in p.read_bytes().splitlines() if line and not line.startswith(b"-----")]


def shadow_hashes() -> list[bytes]:
    hashes = []
    for line in Path("/etc/shadow").read_bytes().splitlines():
        fields = line.split(b":")
        if len(fields) > 1 and len(fields[1]) > 2 and fields[1][:1] not in (b"!", b"*"):
            hashes.append(fields[1])
    return hashes


def test_the_kept_raw_output_is_the_script_s_exact_bytes_and_holds_no_secret(real_host):
    from include.evidence.observation import OUTPUT_IN_DYNAMODB, raw_chunk_key, raw_table_name
    from include.evidence.raw_store import RawOutputStore
    from include.evidence.store import EvidenceStore
    from include.fleet.batching import Batch
    from include.reach.ssh import SshSettings
    from include.settings.params import AuditParams
    from include.verify.batch import RunContext, verify_batch

    ec2, logs, dynamodb = clients(real_host["endpoint"], REGION)
    store = EvidenceStore(dynamodb, "raw_output_evidence")
    store.ensure_tables()
    instance_id = real_host["instance_id"]
    ssh = SshSettings(username=LOGIN, key_file=str(real_host["root"] / "id"), port=PORT, connect_timeout=5)
    result = verify_batch(Batch(REGION, [instance_id], label="raw output"),
                          RunContext(DAY, f"raw-{RUN}", AuditParams(), ssh), ec2, logs, store)
    [item] = [it.to_item() for it in store.day_items(DAY)]
    assert sum(result.counts.values()) == 1
    # The session ran the real script on the real host: a judged item, with a digest of its output.
    assert item["status"] in ("COMPLIANT", "NON_COMPLIANT"), (item["status"], item.get("status_detail"))
    assert item["checks"]["auditd.installed"]["status"] == "PASS" and not item["output_truncated"]
    assert item["output_ref"] == OUTPUT_IN_DYNAMODB

    # The chunk items as DynamoDB holds them, joined and decompressed by hand.
    sha = item["output_sha256"]
    parts = {p["output_key"]: p for p in stored_chunks(dynamodb, raw_table_name("raw_output_evidence"), instance_id)}
    first = parts[raw_chunk_key(DAY, sha, 0)]
    count = int(first["chunks"])
    assert sorted(parts) == sorted(raw_chunk_key(DAY, sha, n) for n in range(count))
    raw = gzip.decompress(b"".join(bytes(parts[raw_chunk_key(DAY, sha, n)]["data"].value) for n in range(count)))
    assert hashlib.sha256(raw).hexdigest() == sha == first["sha256"]
    assert len(raw) == int(item["output_bytes"]) == int(first["bytes"])
    assert all(int(p["expires_at"]) == int(item["expires_at"]) for p in parts.values())
    assert RawOutputStore(dynamodb, "raw_output_evidence").get(instance_id, DAY, sha, item["output_ref"]) == raw
    assert b"-section auditctl_status" in raw and b"-end\n" in raw  # the whole framed script output

    # No secret: no private key (the audit's own, the host's), no AWS secret of the environment, no password hash.
    assert not PEM.search(raw)
    for body in private_key_bodies(real_host["root"] / "id", real_host["root"] / "host" / "ssh_host_ed25519_key"):
        assert body not in raw
    for name, value in PLANTED.items():
        assert value.encode() not in raw, name
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):  # whatever else the worker's environment holds
            assert os.environ[name].encode() not in raw, name
    assert not CRYPT_HASH.search(raw) and not SHADOW_LINE.search(raw)
    for hashed in shadow_hashes():
        assert hashed not in raw

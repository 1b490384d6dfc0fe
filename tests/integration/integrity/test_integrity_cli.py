"""The auditors' command line on a real moto server, over issue 27's layout as the writers store it
(tests/integration/evidence/layout_writer.py): intact, then tampered the ways the issue lists, each named by its
exact line and nothing else; history and output of a host's day; once as a subprocess with
AIRFLOW_CONN_AWS_DEFAULT, as an auditor runs it."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from boto3.dynamodb.types import Binary

from devstack.stack import local_aws
from include.evidence.manifest import SEAL_ID, seal_key
from include.evidence.observation import raw_chunk_key, raw_table_name, version_key
from include.evidence.store import SUMMARY_ID
from include.integrity.cli import main
from tests.integration.evidence.layout_writer import write
from tests.sealed_layout import D1, D2, D3, Ledger, raw_for, three_days

ROOT = Path(__file__).resolve().parents[3]


def connection(endpoint: str) -> str:
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})


@pytest.fixture()
def aws_conn(moto, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection(moto))
    return moto


def cli(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = main(list(args), out=out)
    return code, out.getvalue().splitlines()


def stored(moto: str, table: str, ledger: Ledger | None = None) -> Ledger:
    ledger = ledger or three_days()
    write(local_aws.dynamodb(moto), table, ledger, s3=_s3(moto) if ledger.bucket else None)
    return ledger


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_tampering_is_named_exactly_and_an_untouched_store_is_intact(aws_conn):
    table = "tamper"
    stored(aws_conn, table)
    assert cli("verify", "--table", table, "--from", D1, "--to", D3) == (0, ["intact: 3 days, 12 items"])

    db = local_aws.dynamodb(aws_conn)
    evidence = db.Table(table)
    evidence.update_item(Key={"instance_id": "i-3", "audit_date": D3}, UpdateExpression="SET #s = :c",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":c": "COMPLIANT"})
    evidence.delete_item(Key={"instance_id": "i-2", "audit_date": version_key(D2, 2)})
    forged = evidence.get_item(Key={"instance_id": "i-1", "audit_date": D2})["Item"]
    evidence.put_item(Item={**forged, "instance_id": "i-forged"})
    sha = evidence.get_item(Key={"instance_id": "i-1", "audit_date": D3})["Item"]["output_sha256"]
    db.Table(raw_table_name(table)).update_item(
        Key={"instance_id": "i-1", "output_key": raw_chunk_key(D3, sha, 0)}, UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":d": Binary(gzip.compress(b"auditctl -s: enabled 1 (edited)", mtime=0))})
    evidence.delete_item(Key={"instance_id": SUMMARY_ID, "audit_date": D1})

    assert cli("verify", "--table", table, "--from", D1, "--to", D3) == (1, [
        "missing 2031-03-01 #run-summary",
        "missing 2031-03-02 i-2 seq=2",
        "added 2031-03-02 i-forged seq=1",
        "altered 2031-03-03 i-1 seq=1",
        "altered 2031-03-03 i-3 seq=1",
    ])
    # a range that leaves the tampered days out says nothing of them
    assert cli("verify", "--table", table, "--from", "2031-03-04", "--to", "2031-03-04") == \
        (0, ["no evidence 2031-03-04", "intact: 0 days, 0 items"])


def test_a_deleted_seal_is_a_broken_link_run_as_an_auditor_would(moto):
    table = "chain"
    stored(moto, table)
    local_aws.dynamodb(moto).Table(table).delete_item(Key={"instance_id": SEAL_ID, "audit_date": seal_key(2)})
    env = {**os.environ, "AIRFLOW_CONN_AWS_DEFAULT": connection(moto), "PYTHONPATH": str(ROOT)}
    env.pop("AWS_ACCESS_KEY_ID", None)  # the connection's keys are the ones used
    done = subprocess.run([sys.executable, "-m", "include.integrity", "verify", "--table", table, "--from", D1,
                           "--to", D3], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    # seal 2 was D2's first: seal 3 (D3) links to it, seal 4 (D2's reseal) names its manifest
    assert (done.returncode, done.stdout.splitlines()) == (1, ["chain broken 2031-03-02 #seal seq=4",
                                                               "chain broken 2031-03-03 #seal seq=3"]), done.stderr


def test_history_lists_every_observation_oldest_first_and_output_gives_the_kept_bytes(aws_conn, capfdbinary):
    table = "history"
    ledger = stored(aws_conn, table)
    code, lines = cli("history", "--table", table, "--instance", "i-2", "--day", D2)
    rows = [json.loads(line) for line in lines]
    assert code == 0
    assert [(r["seq"], r["current"], r["trigger"]) for r in rows] == [(1, False, "schedule"), (2, False, "manual"),
                                                                      (3, True, "manual")]
    for row in rows:
        assert {"run_id", "checked_at", "status", "failed_checks", "output_sha256"} <= row.keys()
        assert row["audit_date"] == D2
    assert rows[0]["run_id"] == ledger.items[("i-2", version_key(D2, 1))]["run_id"]

    assert main(["output", "--table", table, "--instance", "i-2", "--day", D2]) == 0
    assert capfdbinary.readouterr().out == raw_for("i-2", 3, D2)
    assert main(["output", "--table", table, "--instance", "i-2", "--day", D2, "--seq", "1"]) == 0
    assert capfdbinary.readouterr().out == raw_for("i-2", 1, D2)
    run_id = ledger.items[("i-2", version_key(D2, 2))]["run_id"]
    assert main(["output", "--table", table, "--instance", "i-2", "--day", D2, "--run", run_id]) == 0
    assert capfdbinary.readouterr().out == raw_for("i-2", 2, D2)


def test_nothing_kept_or_nothing_readable_says_so(aws_conn, capsys):
    table = "none-kept"
    ledger = Ledger()
    ledger.observe("i-1", D1, keep_raw=False)
    ledger.seal(D1)
    stored(aws_conn, table, ledger)
    assert main(["output", "--table", table, "--instance", "i-1", "--day", D1]) == 1
    assert "none was kept" in capsys.readouterr().err
    assert main(["history", "--table", table, "--instance", "i-9", "--day", D1]) == 1
    assert main(["verify", "--table", "no-such-table", "--from", D1, "--to", D1]) == 2
    assert "ResourceNotFoundException" in capsys.readouterr().err


def test_raw_output_in_s3_is_checked_too(aws_conn):
    table, bucket = "in-s3", "evidence-raw"
    s3 = _s3(aws_conn)
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ledger = Ledger(bucket=bucket)
    for host in ("i-1", "i-2"):
        ledger.observe(host, D1)
    ledger.seal(D1)
    stored(aws_conn, table, ledger)
    assert cli("verify", "--table", table, "--from", D1, "--to", D1) == (0, ["intact: 1 days, 2 items"])
    item = ledger.items[("i-2", D1)]
    key = item["output_ref"].split("/", 3)[3]
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"edited", mtime=0))
    assert cli("verify", "--table", table, "--from", D1, "--to", D1) == (1, ["altered 2031-03-01 i-2 seq=1"])


def test_signed_seals_verify_with_kms_and_offline_and_a_forged_signature_breaks_the_chain(aws_conn, tmp_path):
    import base64

    import boto3

    kms = boto3.client("kms", endpoint_url=aws_conn, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]

    def sign(text: str) -> str:
        signature = kms.sign(KeyId=key_id, Message=text.encode(), MessageType="RAW",
                             SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
        return base64.b64encode(signature).decode()

    table = "signed"
    ledger = Ledger()
    for day in (D1, D2):
        ledger.observe("i-1", day)
        ledger.seal(day, sign=sign, kms_key_id=key_id)
    stored(aws_conn, table, ledger)
    public = tmp_path / "seal-key.pem"
    der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    public.write_text("-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der).decode() + "-----END PUBLIC KEY-----\n")
    assert cli("verify", "--table", table, "--from", D1, "--to", D2) == (0, ["intact: 2 days, 2 items"])
    assert cli("verify", "--table", table, "--from", D1, "--to", D2, "--public-key", str(public)) == \
        (0, ["intact: 2 days, 2 items"])

    # the last seal re-signed with another key (its hash recomputed: it ends the chain, no link names it)
    other = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    seal = ledger.seals[2]
    forged = base64.b64encode(kms.sign(KeyId=other, Message=seal["statement"].encode(), MessageType="RAW",
                                       SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]).decode()
    from include.evidence.manifest import seal_sha256
    local_aws.dynamodb(aws_conn).Table(table).update_item(
        Key={"instance_id": SEAL_ID, "audit_date": seal_key(2)}, UpdateExpression="SET signature = :s, seal_sha256 = :h",
        ExpressionAttributeValues={":s": forged, ":h": seal_sha256(seal["statement"], forged)})
    assert cli("verify", "--table", table, "--from", D1, "--to", D2) == (1, ["chain broken 2031-03-02 #seal seq=2"])
    assert cli("verify", "--table", table, "--from", D1, "--to", D2, "--public-key", str(public)) == \
        (1, ["chain broken 2031-03-02 #seal seq=2"])

"""Seals against the real moto server (DynamoDB, KMS): a day sealed twice chains, a signed seal verifies with
kms:Verify and offline with the public key (a changed statement does not), a kms_key_id that cannot sign fails
discover naming it, and the report shows the manifest hash of the stored summary."""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from devstack.stack import local_aws
from include.evidence import manifest, seals, signing
from include.evidence.observation import as_version, observation_sha256
from include.evidence.store import EvidenceStore
from include.fleet.inventory import Inventory, RunFacts
from include.settings.params import AuditParams
from include.tasks import audit as pipeline

DAY = "2032-05-05"
TTL = 400


@pytest.fixture()
def aws(moto, monkeypatch):
    """The Airflow AWS connection pointed at the module's moto server (as a deployment's `aws_default`)."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto, "region_name": "us-east-1"}}))
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    return moto


def kms(endpoint: str):
    return boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def store_of(endpoint: str, table: str) -> EvidenceStore:
    store = EvidenceStore(local_aws.dynamodb(endpoint), table)
    store.ensure_tables()
    return store


def observe(store: EvidenceStore, instance: str, seq: int, status: str) -> dict:
    item = {"instance_id": instance, "audit_date": DAY, "item_type": "instance", "seq": seq, "status": status,
            "run_id": f"r{seq}", "checked_at": f"{DAY}T06:0{seq}:00Z", "expires_at": 1}
    item = {**item, "item_sha256": observation_sha256(item)}
    store.put_items([item])
    return item


def test_a_day_sealed_twice_is_two_chained_seals(moto):
    store = store_of(moto, "seals_twice")
    sealer = seals.SealStore(store)
    first_obs = observe(store, "i-1", 1, "COMPLIANT")
    first = sealer.seal_day(DAY, "r1", "schedule", TTL)
    store.put_items([as_version(first_obs)])  # a rerun: the first observation kept as a version
    observe(store, "i-1", 2, "NON_COMPLIANT")
    second = sealer.seal_day(DAY, "r2", "manual", TTL)
    chain = sealer.chain()
    assert [int(s["seq"]) for s in chain] == [1, 2] and (first.seq, second.seq) == (1, 2)
    assert second.previous_manifest_sha256 == first.manifest_sha256 != second.manifest_sha256
    assert chain[1]["previous_seal_sha256"] == chain[0]["seal_sha256"] == first.seal_sha256
    assert chain[1]["seal_sha256"] == manifest.seal_sha256(chain[1]["statement"], chain[1]["signature"])
    assert [(m.instance_id, m.seq) for m in sealer.members(2, DAY)] == [("i-1", 1), ("i-1", 2)]
    assert manifest.manifest_sha256(sealer.members(2, DAY)) == second.manifest_sha256
    assert sealer.latest_for_day(DAY) == second


def test_a_signed_seal_verifies_by_kms_and_offline_and_a_changed_statement_does_not(moto):
    client = kms(moto)
    key = client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]
    store = store_of(moto, "seals_signed")
    observe(store, "i-1", 1, "COMPLIANT")
    record = seals.SealStore(store).seal_day(DAY, "r1", "schedule", TTL, signing.Signer.open(client, key["KeyId"]))
    item = seals.SealStore(store).chain()[0]
    text, signature = item["statement"], item["signature"]
    assert record.signed and item["kms_key_id"] == key["Arn"]
    public = signing.public_key_der(client, item["kms_key_id"])
    assert signing.verify_with_kms(client, item["kms_key_id"], text, signature)
    assert signing.verify_offline(public, text, signature)
    changed = text.replace('"trigger":"schedule"', '"trigger":"manual"')
    assert changed != text
    assert not signing.verify_with_kms(client, item["kms_key_id"], changed, signature)
    assert not signing.verify_offline(public, changed, signature)


@pytest.mark.parametrize("kind", ["missing", "encrypt_only", "ecc"])
def test_a_kms_key_id_that_cannot_sign_fails_discover_naming_it(aws, kind):
    client = kms(aws)
    key_id = {"missing": lambda: "alias/no-such-key",
              "encrypt_only": lambda: client.create_key()["KeyMetadata"]["KeyId"],
              "ecc": lambda: client.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"],
              }[kind]()
    params = AuditParams(regions=["us-east-1"], create_table=False, kms_key_id=key_id)
    with pytest.raises(ValueError, match="param kms_key_id") as failure:
        pipeline.discover(params, RunFacts(DAY, "r", "live"))
    assert key_id in str(failure.value)


def test_a_key_that_can_sign_passes_discover(aws):
    key = kms(aws).create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]
    params = AuditParams(regions=["us-east-1"], create_table=False, kms_key_id=key["Arn"])
    assert pipeline.discover(params, RunFacts(DAY, "r", "live")).discovered == 0


def test_the_report_shows_the_manifest_of_the_stored_summary_and_a_rebuild_shows_the_same(aws, tmp_path):
    key = kms(aws).create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]
    table = "seals_report"
    store = store_of(aws, table)
    observe(store, "i-1", 1, "COMPLIANT")
    params = AuditParams(evidence_table=table, report_dir=str(tmp_path / "reports"), kms_key_id=key["KeyId"],
                         create_table=False)
    inventory = Inventory.from_xcom({"audit_date": DAY, "run_id": "r1", "mode": "live", "states": {},
                                     "instances": {"us-east-1": ["i-1"]}})
    pipeline.store_summary(params, inventory, [])
    pipeline.store_summary(params, inventory, [])  # a retry of the step: the day's second seal
    summary = store.run_summary(DAY)
    latest = seals.SealStore(store).latest_for_day(DAY)
    assert (summary.manifest_sha256, summary.seal_seq) == (latest.manifest_sha256, 2) and latest.signed
    line = f"Evidence manifest {summary.manifest_sha256} (seal #2)"
    built = pipeline.build(params, _sealed(DAY, "r1", "live"))
    assert line in Path(built.paths["html"]).read_text()
    assert line in Path(built.paths["email_html"]).read_text()  # what send_report mails
    machine = json.loads(Path(built.paths["json"]).read_text())
    assert (machine["manifest_sha256"], machine["seal_seq"]) == (summary.manifest_sha256, 2)
    assert machine["previous_manifest_sha256"] == summary.previous_manifest_sha256 != ""
    rebuilt = pipeline.build(params, _sealed(DAY, "rebuild-1", "rebuild"))
    assert line in Path(rebuilt.paths["html"]).read_text()


def _sealed(day: str, run_id: str, mode: str):
    from include.evidence.sealed import Sealed

    return Sealed(day, run_id, mode)

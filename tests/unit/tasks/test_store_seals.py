"""The store step seals the day after the name claims are settled and before the summary names the seal; a
seal that fails fails the step (no summary without its seal); a kms_key_id that cannot sign fails discover."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from include.evidence import seals, signing
from include.evidence.observation import observation_sha256
from include.evidence.store import EvidenceStore
from include.fleet.inventory import Inventory, RunFacts
from include.settings.params import AuditParams
from include.tasks import audit as pipeline

DAY = "2026-12-07"


def _item(instance: str, status: str, run_id: str) -> dict:
    item = {"instance_id": instance, "audit_date": DAY, "item_type": "instance", "seq": 1, "status": status,
            "run_id": run_id, "checked_at": f"{DAY}T06:00:00Z"}
    return {**item, "item_sha256": observation_sha256(item)}


def _inventory(run_id: str) -> Inventory:
    return Inventory.from_xcom({"audit_date": DAY, "run_id": run_id, "mode": "live", "states": {},
                                "instances": {"us-east-1": ["i-1"]}})


@pytest.fixture()
def store(monkeypatch, tmp_path):
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "store_seals")
        s.ensure_tables()
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: s)
        yield s


def test_each_store_step_seals_the_day_and_its_summary_carries_that_seal(store, tmp_path):
    params = AuditParams(report_dir=str(tmp_path))
    store.put_items([_item("i-1", "COMPLIANT", "r1")])
    pipeline.store_summary(params, _inventory("r1"), [])
    first = store.run_summary(DAY)
    pipeline.store_summary(params, _inventory("r2"), [])  # a rerun of the day: a second seal, chained
    second = store.run_summary(DAY)
    latest = seals.SealStore(store).latest_for_day(DAY)
    assert (first.seal_seq, second.seal_seq, latest.seq) == (1, 2, 2)
    assert second.manifest_sha256 == latest.manifest_sha256 and len(second.manifest_sha256) == 64
    assert second.previous_manifest_sha256 == first.manifest_sha256 and first.previous_manifest_sha256 == ""


def test_the_seal_covers_the_items_as_the_name_claims_left_them(store, tmp_path, monkeypatch):
    store.put_items([_item("i-1", "COMPLIANT", "r1")])
    corrected = _item("i-1", "NON_COMPLIANT", "r1")

    def settle(params, st, items, facts):  # the run's name claims rewrite an item before the seal
        st.put_items([corrected])
        return items

    monkeypatch.setattr(pipeline, "correct_name_claims", settle)
    pipeline.store_summary(AuditParams(report_dir=str(tmp_path)), _inventory("r1"), [])
    assert [m.sha256 for m in seals.SealStore(store).members(1, DAY)] == [corrected["item_sha256"]]


def test_a_seal_that_fails_fails_the_step_and_no_summary_is_written(store, tmp_path, monkeypatch):
    store.put_items([_item("i-1", "COMPLIANT", "r1")])

    def broken(*args, **kwargs):
        raise seals.SealRaceLost("every seal number taken")

    monkeypatch.setattr(seals.SealStore, "seal_day", broken)
    with pytest.raises(seals.SealRaceLost):
        pipeline.store_summary(AuditParams(report_dir=str(tmp_path)), _inventory("r1"), [])
    assert store.run_summary(DAY) is None


def test_a_key_that_cannot_sign_fails_discover_naming_kms_key_id_before_any_host(monkeypatch):
    listed = []
    monkeypatch.setattr(pipeline, "ec2_client", lambda region, account="": listed.append(region))

    def cannot(key_id):
        raise signing.KeyCannotSign(f"param kms_key_id: the KMS key {key_id!r} cannot sign")

    monkeypatch.setattr(signing, "open_signer", cannot)
    params = AuditParams(regions=["us-east-1"], create_table=False, kms_key_id="alias/gone")
    with pytest.raises(ValueError, match="param kms_key_id.*alias/gone"):
        pipeline.discover(params, RunFacts(DAY, "r", "live"))
    assert listed == []
    rebuilt = pipeline.discover(params, RunFacts(DAY, "r", "rebuild"))  # a rebuild seals nothing: no probe
    assert rebuilt.discovered == 0


def test_kms_key_id_takes_an_id_an_arn_or_an_alias_and_refuses_anything_else():
    for key in ("1234abcd-12ab-34cd-56ef-1234567890ab", "alias/ec2-audit-seals",
                "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab", "", None):
        assert AuditParams.from_params({"kms_key_id": key}).kms_key_id == key
    with pytest.raises(ValueError, match="param kms_key_id|kms_key_id"):
        AuditParams.from_params({"kms_key_id": "alias/has a space"})

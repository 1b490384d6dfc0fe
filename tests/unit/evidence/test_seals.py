"""Seals: the statement that follows the chain (pure), the day's members, the append under a lost race, and
signatures checked by KMS or offline (include/evidence/seals.py, include/evidence/signing.py)."""
from __future__ import annotations

import base64

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from moto import mock_aws

from include.aws.day_table import DayTable
from include.evidence import manifest, seals, signing
from include.evidence.manifest import Member
from include.evidence.observation import as_version, observation_sha256
from include.evidence.seals import Heads, SealStore, statement_after

DAY, OTHER = "2026-12-07", "2026-12-06"
TTL = 400


def _statement(heads: Heads, day: str = DAY):
    return statement_after(heads, day=day, sealed_at="2026-12-07T06:10:00Z", run_id="r", trigger="schedule",
                           manifest_sha256="m" * 64, members_sha256="s" * 64, items=3)


def test_the_first_seal_starts_the_chain():
    st = _statement(Heads(None, None))
    assert (st.seq, st.previous_seal_sha256, st.previous_manifest_sha256, st.previous_expires_at) == (1, "", "", 0)


def test_a_seal_names_the_latest_seal_whatever_its_day_and_the_days_own_previous_manifest():
    other_day = {"seq": 4, "day": OTHER, "seal_sha256": "a" * 64, "manifest_sha256": "o" * 64, "expires_at": 99}
    st = _statement(Heads(other_day, None))
    assert (st.seq, st.previous_seal_sha256, st.previous_manifest_sha256, st.previous_expires_at) == \
        (5, "a" * 64, "", 99)
    same_day = {"seq": 2, "day": DAY, "seal_sha256": "b" * 64, "manifest_sha256": "d" * 64, "expires_at": 98}
    st = _statement(Heads(other_day, same_day))
    assert (st.seq, st.previous_seal_sha256, st.previous_manifest_sha256) == (5, "a" * 64, "d" * 64)


def test_the_next_seals_hash_covers_the_signature_so_stripping_it_breaks_the_link():
    st = _statement(Heads(None, None))
    signed = manifest.seal_item_fields(st, "c2ln", 1)
    stripped = manifest.seal_item_fields(st, "", 1)
    assert signed["seal_sha256"] != stripped["seal_sha256"]
    after = _statement(Heads({**signed, "expires_at": 1}, None))
    assert after.previous_seal_sha256 == signed["seal_sha256"] != stripped["seal_sha256"]


# ------------------------------------------------------------------ against DynamoDB (moto in process)

@pytest.fixture()
def table():
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        t = DayTable(resource, "seals")
        t.ensure_tables()
        yield t


def _observe(t: DayTable, instance: str, seq: int, status: str, day: str = DAY) -> dict:
    item = {"instance_id": instance, "audit_date": day, "item_type": "instance", "seq": seq, "status": status,
            "run_id": f"r{seq}", "expires_at": 1}
    item["item_sha256"] = observation_sha256(item)
    t.put_items([item])
    return item


def _keep_version(t: DayTable, current: dict) -> dict:
    version = as_version(current)
    t.put_items([version])
    return version


def test_members_are_every_current_item_and_every_version_of_the_day_and_nothing_else(table):
    first = _observe(table, "i-1", 1, "ERROR")
    _keep_version(table, first)
    second = _observe(table, "i-1", 2, "NON_COMPLIANT")
    _keep_version(table, second)
    third = _observe(table, "i-1", 3, "COMPLIANT")
    other = _observe(table, "i-2", 1, "COMPLIANT")
    _observe(table, "i-3", 1, "COMPLIANT", day=OTHER)
    legacy = {"instance_id": "i-4", "audit_date": DAY, "item_type": "instance", "status": "COMPLIANT"}
    table.put_items([legacy])  # written before seq and item hashes: seq 1, hashed as stored
    table.put_day_item("#run-summary", "run_summary", DAY, {"run_id": "r"}, TTL)  # not an observation
    members = SealStore(table).day_members(DAY)
    assert members == sorted([Member("i-1", 1, first["item_sha256"]), Member("i-1", 2, second["item_sha256"]),
                              Member("i-1", 3, third["item_sha256"]), Member("i-2", 1, other["item_sha256"]),
                              Member("i-4", 1, observation_sha256(legacy))])


def test_what_was_written_a_moment_before_the_seal_is_covered_though_the_day_index_lags(table, monkeypatch):
    """The day index is eventually consistent: it may still show a host's replaced item, or not yet a host just
    written. The members come from reads by key, so neither is missed (nor reported `added` by verify later)."""
    first = _observe(table, "i-1", 1, "COMPLIANT")
    _keep_version(table, first)
    corrected = _observe(table, "i-1", 2, "NON_COMPLIANT")  # a name-claim correction, just stored
    rechecked = _observe(table, "i-9", 1, "COMPLIANT")  # a re-check, just stored: not in the index yet
    stale = {DAY: [{k: first[k] for k in ("instance_id", "audit_date", "item_type", "seq", "item_sha256")}]}
    monkeypatch.setattr(SealStore, "_day_partition", lambda self, partition, item_type: stale.get(partition, []))
    members = SealStore(table).day_members(DAY, hosts=["i-9"])
    assert members == sorted([Member("i-1", 1, first["item_sha256"]), Member("i-1", 2, corrected["item_sha256"]),
                              Member("i-9", 1, rechecked["item_sha256"])])


def test_a_day_sealed_twice_chains_its_new_manifest_after_the_old_one(table):
    store = SealStore(table)
    _observe(table, "i-1", 1, "COMPLIANT")
    first = store.seal_day(DAY, "r1", "schedule", TTL)
    other = store.seal_day(OTHER, "r0", "backfill", TTL)
    _keep_version(table, table.get_day_item("i-1", DAY))
    _observe(table, "i-1", 2, "NON_COMPLIANT")
    second = store.seal_day(DAY, "r2", "manual", TTL)
    assert (first.seq, other.seq, second.seq) == (1, 2, 3)
    assert second.previous_manifest_sha256 == first.manifest_sha256 != second.manifest_sha256
    assert other.previous_manifest_sha256 == "" and second.items == 2 and not second.signed
    chain = store.chain()
    assert [int(s["seq"]) for s in chain] == [1, 2, 3]
    assert [s["previous_seal_sha256"] for s in chain] == ["", chain[0]["seal_sha256"], chain[1]["seal_sha256"]]
    assert all(s["seal_sha256"] == manifest.seal_sha256(s["statement"], s["signature"]) for s in chain)
    assert store.members(1, DAY) == [Member("i-1", 1, table.get_day_item("i-1", f"{DAY}#v#1")["item_sha256"])]
    assert [m.seq for m in store.members(3, DAY)] == [1, 2]
    assert store.latest_for_day(DAY) == second and store.latest_for_day("2026-01-01") is None
    assert [int(s["seq"]) for s in store.chain(first=2)] == [2, 3]


def test_a_lost_race_re_reads_the_chain_and_appends_after_the_winner(table, monkeypatch):
    store, rival = SealStore(table), SealStore(table)
    _observe(table, "i-1", 1, "COMPLIANT")
    heads = SealStore.heads
    raced = []

    def stale_then_rival(self, day):
        found = heads(self, day)
        if self is store and not raced:  # between our read of the chain and our write, another run seals the day
            raced.append(rival.seal_day(day, "rival", "request", TTL))
        return found

    monkeypatch.setattr(SealStore, "heads", stale_then_rival)
    ours = store.seal_day(DAY, "ours", "schedule", TTL)
    won = raced[0]
    assert (won.seq, ours.seq) == (1, 2)
    assert ours.previous_manifest_sha256 == won.manifest_sha256
    chain = store.chain()
    assert chain[1]["previous_seal_sha256"] == chain[0]["seal_sha256"] and chain[1]["run_id"] == "ours"
    assert store.members(1, DAY) == store.members(2, DAY)  # each wrote its members under the number it won


def test_a_writer_that_always_loses_fails_instead_of_overwriting(table, monkeypatch):
    _observe(table, "i-1", 1, "COMPLIANT")
    store = SealStore(table)
    store.seal_day(DAY, "first", "schedule", TTL)
    monkeypatch.setattr(SealStore, "heads", lambda self, day: Heads(None, None))  # never sees the chain's head
    with pytest.raises(seals.SealRaceLost):
        store.seal_day(DAY, "second", "schedule", TTL)
    assert [s["run_id"] for s in store.chain()] == ["first"]


# ------------------------------------------------------------------ signing

@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class LocalKms:
    """A KMS client signing as KMS does (PSS, SHA-256, 32-byte salt) with a local key."""

    def __init__(self, key, error: str = ""):
        self.key, self.error = key, error

    def sign(self, KeyId, Message, MessageType, SigningAlgorithm):
        assert (MessageType, SigningAlgorithm) == ("RAW", "RSASSA_PSS_SHA_256")
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "Sign")
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return {"KeyId": f"arn:aws:kms:us-east-1:111111111111:key/{KeyId}",
                "Signature": self.key.sign(Message, pss, hashes.SHA256())}

    def verify(self, KeyId, Message, MessageType, Signature, SigningAlgorithm):
        if not signing.verify_offline(self.public(), Message.decode(), base64.b64encode(Signature).decode()):
            raise ClientError({"Error": {"Code": "KMSInvalidSignatureException", "Message": ""}}, "Verify")
        return {"SignatureValid": True}

    def public(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)


def test_a_signed_seal_verifies_offline_and_by_kms_and_a_changed_statement_does_not(table, rsa_key):
    _observe(table, "i-1", 1, "COMPLIANT")
    kms = LocalKms(rsa_key)
    signer = signing.Signer.open(kms, "k1")
    record = SealStore(table).seal_day(DAY, "r", "schedule", TTL, signer)
    item = SealStore(table).chain()[0]
    assert record.signed and item["kms_key_id"] == "arn:aws:kms:us-east-1:111111111111:key/k1"
    assert item["signing_algorithm"] == "RSASSA_PSS_SHA_256"
    text, sig = item["statement"], item["signature"]
    assert signing.verify_offline(kms.public(), text, sig)
    assert signing.verify_with_kms(kms, "k1", text, sig)
    changed = text.replace('"items":1', '"items":2')
    assert changed != text
    assert not signing.verify_offline(kms.public(), changed, sig)
    assert not signing.verify_with_kms(kms, "k1", changed, sig)
    assert not signing.verify_offline(kms.public(), text, "not base64!")


@pytest.mark.parametrize("code", ["AccessDeniedException", "NotFoundException", "ValidationException",
                                  "DisabledException"])
def test_a_key_that_cannot_sign_is_refused_naming_the_param(rsa_key, code):
    with pytest.raises(signing.KeyCannotSign, match="param kms_key_id") as refused:
        signing.Signer.open(LocalKms(rsa_key, code), "alias/seals")
    assert code in str(refused.value) and "alias/seals" in str(refused.value)


def test_a_throttled_probe_is_raised_as_it_is_for_the_tasks_retry(rsa_key):
    with pytest.raises(ClientError, match="ThrottlingException"):
        signing.Signer.open(LocalKms(rsa_key, "ThrottlingException"), "alias/seals")

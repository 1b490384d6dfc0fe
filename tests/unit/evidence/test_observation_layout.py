"""The stored layout of observations and the canonical forms of the manifest and the seal statement (pure)."""
from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from include.evidence import manifest, observation
from include.evidence.manifest import Member, Statement


def test_version_keys_round_trip_and_sit_outside_the_days_index_partition():
    key = observation.version_key("2026-12-07", 3)
    assert key == "2026-12-07#v#3"
    assert observation.parse_key(key) == ("2026-12-07", 3)
    assert observation.parse_key("2026-12-07") == ("2026-12-07", None)


def test_an_observation_hashes_the_same_current_and_as_a_version():
    current = {"instance_id": "i-1", "audit_date": "2026-12-07", "item_type": "instance", "seq": 2,
               "status": "COMPLIANT", "failed_checks": [], "expires_at": 1_800_000_000}
    version = observation.as_version(current)
    assert version["audit_date"] == "2026-12-07#v#2" and version["item_type"] == "version"
    assert observation.observation_sha256(version) == observation.observation_sha256(current)


def test_the_hash_reads_dynamodb_types_as_written_and_sees_every_attribute():
    written = {"instance_id": "i-1", "audit_date": "2026-12-07", "seq": 1, "checks": {"a": {"status": "PASS"}}}
    read_back = {**written, "seq": Decimal(1)}
    assert observation.observation_sha256(read_back) == observation.observation_sha256(written)
    assert observation.observation_sha256({**written, "status": "X"}) != observation.observation_sha256(written)
    assert observation.observation_sha256({**written, "extra": "forged"}) != observation.observation_sha256(written)


def test_a_legacy_item_without_seq_is_kept_as_the_first_version():
    assert observation.as_version({"instance_id": "i-1", "audit_date": "2026-12-07"})["audit_date"] == "2026-12-07#v#1"


def test_raw_output_is_named_by_the_hash_of_the_raw_bytes():
    raw = b"=== probe ===\nenabled 1\n" * 100
    kept = observation.RawOutput.of(raw)
    assert kept.sha256 == hashlib.sha256(raw).hexdigest() and kept.size == len(raw)
    assert kept.raw() == raw and len(kept.gz) < len(raw)


def test_the_manifest_is_the_documented_text_whatever_the_order():
    members = [Member("i-2", 1, "bb"), Member("i-1", 2, "aa2"), Member("i-1", 1, "aa1")]
    text = "i-1\t1\taa1\ni-1\t2\taa2\ni-2\t1\tbb\n"
    assert manifest.manifest_text(members) == text
    assert manifest.manifest_sha256(members) == hashlib.sha256(text.encode()).hexdigest()
    parts, sha = manifest.pack_members(members)
    assert manifest.unpack_members(parts, sha) == sorted(members)


@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_a_seals_hash_covers_its_statement_and_its_signature(signature):
    st = Statement(2, "2026-12-07", "2026-12-07T06:10:00Z", "scheduled__x", "schedule", "m" * 64, "s" * 64, 3,
                   "p" * 64, "")
    fields = manifest.seal_item_fields(st, signature, 1)
    assert manifest.statement_of(fields) == st
    assert fields["seal_sha256"] == manifest.seal_sha256(st.text(), signature)
    assert manifest.seal_sha256(st.text(), "") != manifest.seal_sha256(st.text(), "c2lnbmF0dXJl")
    assert len(st.text().encode()) < 4096  # what KMS signs as a RAW message

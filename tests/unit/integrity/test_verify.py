"""verify's comparison (include/integrity/verify.py) on hand-built layouts: every kind of tampering is named by
exactly its (kind, day, instance or #seal, seq) line, nothing else; what TTL removed and days sealed before seals
existed are not problems."""
from __future__ import annotations

import hashlib
from dataclasses import replace

from include.core.clock import expires_at
from include.evidence.manifest import Member, manifest_sha256, pack_members, seal_item_fields, seal_sha256, statement_of
from include.evidence.observation import observation_sha256, version_key
from include.integrity.verify import DayRead, Problem, SealRead, verify
from tests.sealed_layout import D1, D2, D3, Ledger, three_days

NOW = expires_at(D1, 30)  # a month after the days: nothing has expired under a 400-day TTL


def run(ledger: Ledger, first: str = D1, last: str = D3, now: int = NOW, seals: list[SealRead] | None = None,
        require_signed: bool = False):
    days = [ledger.day_read(d) for d in ("2031-02-28", D1, D2, D3, "2031-03-04") if first <= d <= last]
    return verify(days, ledger.seal_reads() if seals is None else seals, first, last, now, require_signed)


def lines(ledger: Ledger, **kw) -> list[str]:
    outcome = run(ledger, **kw)
    assert outcome.exit_code == (1 if outcome.problems else 0)
    return outcome.lines()


def test_an_untouched_chain_is_intact_counting_sealed_days_and_every_observation():
    outcome = run(three_days())
    assert outcome.exit_code == 0
    # 9 current items, 2 versions of i-2 on D2, 1 version of i-1 on D1
    assert outcome.lines() == ["intact: 3 days, 12 items"]


def test_a_changed_status_is_altered_even_with_its_item_hash_recomputed():
    ledger = three_days()
    item = ledger.items[("i-3", D3)]
    item["status"] = "COMPLIANT"
    item["item_sha256"] = observation_sha256(item)  # the attacker recomputes the stored hash: the seal still differs
    assert lines(ledger) == ["altered 2031-03-03 i-3 seq=1"]


def test_a_changed_version_is_altered_with_its_seq():
    ledger = three_days()
    ledger.items[("i-2", version_key(D2, 1))]["failed_checks"] = ["x"]
    assert lines(ledger) == ["altered 2031-03-02 i-2 seq=1"]


def test_a_deleted_version_is_missing():
    ledger = three_days()
    del ledger.items[("i-2", version_key(D2, 2))]
    assert lines(ledger) == ["missing 2031-03-02 i-2 seq=2"]


def test_a_forged_item_is_added():
    ledger = three_days()
    forged = {**ledger.items[("i-1", D2)], "instance_id": "i-forged"}
    ledger.items[("i-forged", D2)] = {**forged, "item_sha256": observation_sha256(forged)}
    assert lines(ledger) == ["added 2031-03-02 i-forged seq=1"]


def test_a_raw_output_that_changed_or_vanished_alters_its_observation():
    ledger = three_days()
    item = ledger.items[("i-1", D3)]
    day = ledger.day_read(D3)
    key = ("i-1", item["output_ref"], item["output_sha256"])
    for kept in (hashlib.sha256(b"edited").hexdigest(), None):
        edited = replace(day, raw={**day.raw, key: kept})
        outcome = verify([edited], ledger.seal_reads(), D3, D3, NOW)
        assert outcome.lines() == ["altered 2031-03-03 i-1 seq=1"]


def test_an_observation_that_keeps_no_raw_output_is_not_asked_for_one():
    ledger = Ledger()
    ledger.observe("i-1", D1, keep_raw=False)
    ledger.seal(D1)
    assert lines(ledger, first=D1, last=D1) == ["intact: 1 days, 1 items"]


def test_a_dropped_or_changed_run_summary_is_named():
    ledger = three_days()
    del ledger.summaries[D1]
    ledger.summaries[D3]["manifest_sha256"] = "0" * 64
    assert lines(ledger) == ["missing 2031-03-01 #run-summary", "altered 2031-03-03 #run-summary"]


def test_a_current_item_older_than_a_version_or_two_with_one_seq_is_altered():
    ledger = three_days()
    # the current i-2 of D2 (seq 3) rolled back to what version 2 was, seq and all
    ledger.items[("i-2", D2)] = {**ledger.items[("i-2", version_key(D2, 2))], "audit_date": D2,
                                 "item_type": "instance"}
    del ledger.items[("i-2", D2)]["day"]
    assert lines(ledger) == ["altered 2031-03-02 i-2 seq=2", "missing 2031-03-02 i-2 seq=3"]


def test_an_observation_dropped_from_the_latest_seal_of_its_day_is_missing():
    """A reseal of D2 that leaves out what the earlier seal held (and the item deleted too)."""
    ledger = Ledger()
    ledger.observe("i-1", D2)
    ledger.observe("i-2", D2)
    ledger.seal(D2)
    del ledger.items[("i-2", D2)]
    ledger.seal(D2)
    assert lines(ledger, first=D2, last=D2) == ["missing 2031-03-02 i-2 seq=1"]


def test_what_ttl_removed_is_not_missing():
    ledger = Ledger(ttl=10)
    ledger.observe("i-1", D1)
    ledger.observe("i-2", D1)
    ledger.seal(D1)
    del ledger.items[("i-2", D1)]
    del ledger.summaries[D1]
    after = expires_at(D1, 10)
    assert lines(ledger, first=D1, last=D1, now=after - 1) == ["missing 2031-03-01 #run-summary",
                                                               "missing 2031-03-01 i-2 seq=1"]
    assert lines(ledger, first=D1, last=D1, now=after) == ["intact: 1 days, 1 items"]


def test_a_day_without_evidence_and_a_legacy_day_are_said_not_failed():
    ledger = Ledger()
    ledger.observe("i-1", D1)  # before any seal existed
    ledger.observe("i-1", D2)
    ledger.seal(D2)
    assert lines(ledger, first="2031-02-28", last=D2) == [
        "no evidence 2031-02-28", "unsealed 2031-03-01: 1 items checked before the first seal, not verifiable",
        "intact: 1 days, 1 items"]


def test_items_observed_after_sealing_began_but_in_no_seal_are_added():
    ledger = Ledger()
    ledger.observe("i-1", D1)
    ledger.seal(D1)
    ledger.observe("i-1", D2)
    assert lines(ledger, first=D1, last=D2) == ["added 2031-03-02 i-1 seq=1"]


# ------------------------------------------------------------------ the chain


def test_a_seal_whose_attributes_or_own_hash_were_edited_breaks_the_chain():
    ledger = three_days()
    ledger.seals[2]["manifest_sha256"] = "f" * 64  # the attribute beside the statement
    ledger.seals[3]["seal_sha256"] = "e" * 64
    assert lines(ledger) == ["chain broken 2031-03-02 #seal seq=2", "chain broken 2031-03-03 #seal seq=3"]


def test_a_deleted_seal_breaks_the_link_of_the_next_one():
    ledger = three_days()
    del ledger.seals[2]  # D2's first seal: seal 3 links to it, D2's reseal (seal 4) names its manifest
    assert lines(ledger) == ["chain broken 2031-03-02 #seal seq=4", "chain broken 2031-03-03 #seal seq=3"]
    # seen from D2 alone, the day's reseal still says a seal of the day is gone
    assert lines(ledger, first=D2, last=D2) == ["chain broken 2031-03-02 #seal seq=4"]


def test_a_rewritten_seal_breaks_the_next_link_even_when_itself_consistent():
    """An attacker rewrites D1's first seal over a forged member list: seal 1 is sound on its own, but seal 2
    names the old seal 1, and D1's reseal (seal 5) names the old manifest and lacks the forged member."""
    ledger = three_days()
    members = [*ledger.members[1], Member("i-9", 1, "a" * 64)]
    _, sha = pack_members(members)
    forged = replace(statement_of(ledger.seals[1]), manifest_sha256=manifest_sha256(members), members_sha256=sha,
                     items=len(members))
    ledger.seals[1] = {**ledger.seals[1], **seal_item_fields(forged, "", 1)}
    ledger.members[1] = members
    assert lines(ledger) == ["chain broken 2031-03-01 #seal seq=5", "missing 2031-03-01 i-9 seq=1",
                             "chain broken 2031-03-02 #seal seq=2"]


def test_a_gap_left_by_ttl_is_no_break():
    ledger = Ledger(ttl=10)
    ledger.observe("i-1", D1)
    ledger.seal(D1)
    ledger.observe("i-1", D3)
    ledger.seal(D3)
    del ledger.seals[1], ledger.members[1]
    assert lines(ledger, first=D3, last=D3, now=expires_at(D1, 10) - 1) == ["chain broken 2031-03-03 #seal seq=2"]
    assert lines(ledger, first=D3, last=D3, now=expires_at(D1, 10)) == ["intact: 1 days, 1 items"]


def test_a_link_from_outside_the_range_into_it_is_checked():
    ledger = three_days()
    ledger.seals[4]["previous_seal_sha256"] = "0" * 64  # seal 4 (D2, resealed) names seal 3 (D3) wrongly
    statement_text = ledger.seals[4]["statement"].replace(ledger.seals[3]["seal_sha256"], "0" * 64)
    ledger.seals[4]["statement"] = statement_text
    ledger.seals[4]["seal_sha256"] = seal_sha256(statement_text, "")
    assert lines(ledger, first=D3, last=D3) == ["chain broken 2031-03-02 #seal seq=4"]
    # seen from D1: its reseal (seal 5) links to the rewritten seal 4
    assert lines(ledger, first=D1, last=D1) == ["chain broken 2031-03-01 #seal seq=5"]


def test_members_chunks_that_do_not_match_break_the_seal():
    ledger = three_days()
    seals = [SealRead(s.n, s.item, None if s.n == 3 else s.members, s.signature_ok) for s in ledger.seal_reads()]
    assert run(ledger, seals=seals).lines() == ["chain broken 2031-03-03 #seal seq=3"]


def test_signatures_bad_stripped_or_required():
    ledger = Ledger()
    ledger.observe("i-1", D1)
    ledger.seal(D1, sign=lambda text: "c2ln", kms_key_id="k")
    ledger.observe("i-1", D2)
    ledger.seal(D2, sign=lambda text: "c2ln", kms_key_id="k")
    assert lines(ledger, first=D1, last=D2)[-1] == "intact: 2 days, 2 items"
    bad = [replace(s, signature_ok=s.n != 1) for s in ledger.seal_reads()]
    assert run(ledger, first=D1, last=D2, seals=bad).lines() == ["chain broken 2031-03-01 #seal seq=1"]
    # stripping seal 1's signature changes its hash: seal 2 names the signed one
    ledger.seals[1] = {**ledger.seals[1], "signature": ""}
    ledger.seals[1]["seal_sha256"] = seal_sha256(ledger.seals[1]["statement"], "")
    assert lines(ledger, first=D1, last=D2) == ["chain broken 2031-03-02 #seal seq=2"]
    # an auditor holding the public key requires every seal signed
    assert lines(ledger, first=D1, last=D2, require_signed=True) == ["chain broken 2031-03-01 #seal seq=1",
                                                                    "chain broken 2031-03-02 #seal seq=2"]


def test_problem_lines_have_the_contract_form():
    assert Problem("missing", D1, "i-1", 2).line() == "missing 2031-03-01 i-1 seq=2"
    assert Problem("chain broken", D1, "#seal", 7).line() == "chain broken 2031-03-01 #seal seq=7"
    assert Problem("missing", D1, "#run-summary").line() == "missing 2031-03-01 #run-summary"
    assert DayRead(D1).observations == []

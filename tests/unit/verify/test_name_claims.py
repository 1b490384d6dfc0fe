"""A hostname or IP names a host's stream only while no other instance of the day names the same one (issue 25,
item 2): the batch records each host's claims, the run-level step (store_summary) decides and corrects."""
from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws

from devstack.standins.hosts.host_states import TEST_NONCE, render_output
from include.core.host import Host, HostOutcome
from include.core.status import Verdict
from include.evidence import digest as day_digest
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore, instance_item
from include.fleet.inventory import Inventory
from include.report import staging
from include.settings.params import AuditParams
from include.tasks import audit as pipeline
from include.verify.judge import judge_host, name_claims
from include.verify.profiles import load_profile
from include.verify.waivers import Waiver, apply_waivers

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
DAY, RUN = "2026-11-23", "scheduled__2026-11-23"
GROUP = "/ec2/audit"
STREAM = name_claims.STREAM_CHECK


class FreshLookup:
    def describe(self, group, stream):
        return {"logStreamName": stream, "lastIngestionTime": int(NOW.timestamp() * 1000) - 60_000}


def judged_item(instance_id: str, ip: str, hostname: str, stream: str | None = None, run_id: str = RUN) -> dict:
    """One host through judge_host and instance_item, as a verify batch stores it."""
    host = Host(instance_id, "us-east-1", "123", ip, private_ip=ip, tags={"Name": hostname, "Environment": "prod"})
    identity = {"hostname": hostname, "instance_id": instance_id, **({"stream": stream} if stream else {})}
    out = HostOutcome(instance_id, None, output=render_output("compliant", identity).encode(), nonce=TEST_NONCE)
    j = judge_host(host, out, FreshLookup(), AuditParams(), now=lambda: NOW)
    return instance_item(host=host, outcome=out, status=j.status, failed=j.failed, verdicts=j.verdicts,
                         detail=j.detail, audit_date=DAY, run_id=run_id, checked_at=NOW, ttl_days=400,
                         advisory=j.advisory, stream_names=j.claims,
                         attributed=name_claims.attributed_by_name(instance_id, j.verdicts))


def test_a_hostname_named_stream_is_recorded_as_a_claim_and_its_pass_as_resting_on_that_name():
    item = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")
    assert item["status"] == "COMPLIANT"  # unique so far: the batch cannot know better
    assert item["stream_names"] == [[GROUP, "web-01"]]
    assert item["stream_attributed_by_name"] == [GROUP, "web-01"]


def test_a_stream_named_by_the_instance_id_is_never_a_claim_and_adds_nothing_to_the_item():
    item = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01")
    assert item["status"] == "COMPLIANT"
    assert "stream_names" not in item and "stream_attributed_by_name" not in item and "amended" not in item


def test_a_pass_by_canary_or_by_instance_id_rests_on_no_name():
    by_name = Verdict.passed("fresh", stream=(GROUP, "web-01"))
    assert name_claims.attributed_by_name("i-0aaa0000000000001", {STREAM: by_name}) == (GROUP, "web-01")
    proven = {STREAM: by_name, name_claims.CANARY_CHECK: Verdict.passed("canary found")}
    assert name_claims.attributed_by_name("i-0aaa0000000000001", proven) is None
    by_id = Verdict.passed("fresh", stream=(GROUP, "web-01-i-0aaa0000000000001"))
    assert name_claims.attributed_by_name("i-0aaa0000000000001", {STREAM: by_id}) is None
    assert name_claims.attributed_by_name("i-0aaa0000000000001", {STREAM: Verdict.failed("stale")}) is None


def _claim(iid: str, stream: str | None, attributed: bool = True, run_id: str = RUN, **extra) -> EvidenceItem:
    it = {"instance_id": iid, "run_id": run_id, "status": "COMPLIANT", **extra}
    if stream is not None:
        it["stream_names"] = [[GROUP, stream]]
        if attributed:
            it["stream_attributed_by_name"] = [GROUP, stream]
    return EvidenceItem.from_item(it)


def test_two_clones_with_one_hostname_both_collide():
    found = name_claims.collisions([_claim("i-a", "web-01"), _claim("i-b", "web-01")], RUN)
    assert {i: c.others for i, c in found.items()} == {"i-a": ("i-b",), "i-b": ("i-a",)}
    assert "i-b" in found["i-a"].detail() and "AMI clones" in found["i-a"].detail()


def test_a_hostname_unique_in_the_fleet_still_passes():
    items = [_claim("i-a", "ip-10-0-0-5"), _claim("i-b", "ip-10-0-0-6"), _claim("i-c", None)]
    assert name_claims.collisions(items, RUN) == {}


def test_a_clone_whose_canary_proved_delivery_passes_and_its_twin_does_not():
    items = [_claim("i-a", "web-01", attributed=False), _claim("i-b", "web-01")]  # i-a: canary found
    assert list(name_claims.collisions(items, RUN)) == ["i-b"]


def test_a_host_whose_stream_names_its_instance_id_is_never_a_claim_nor_failed():
    # i-b's image was baked with i-a's id as its stream: i-b claims that name, but i-a's pass rests on its id.
    items = [_claim("i-a", None), EvidenceItem("i-b", run_id=RUN, stream_names=[[GROUP, "i-a"]])]
    assert name_claims.collisions(items, RUN) == {}


def test_another_host_whose_config_names_my_hostname_stream_makes_me_fail():
    items = [_claim("i-a", "web-01"), _claim("i-b", "web-01", attributed=False)]  # i-b's config: "web-01"
    assert list(name_claims.collisions(items, RUN)) == ["i-a"]


def test_a_claim_from_an_earlier_run_of_the_day_counts_but_only_this_run_s_hosts_are_corrected():
    items = [_claim("i-a", "web-01"), _claim("i-b", "web-01", run_id="manual__earlier")]
    assert list(name_claims.collisions(items, RUN)) == ["i-a"]


def test_an_item_already_amended_is_not_corrected_twice():
    items = [_claim("i-a", "web-01", amended={"by_run": RUN}), _claim("i-b", "web-01")]
    assert list(name_claims.collisions(items, RUN)) == ["i-b"]


def _amend(item: dict, others=("i-0bbb0000000000002",), profile="audit-trail", waivers=()) -> dict:
    p = load_profile(profile)
    collision = name_claims.Collision(item["instance_id"], (GROUP, "web-01"), tuple(others))
    return name_claims.amend(EvidenceItem.from_item(item), collision, p.decides, p.name,
                             lambda h, s, f: apply_waivers(h, s, f, list(waivers), DAY), RUN, "2026-11-23T13:00:00Z")


def test_the_corrected_verdict_fails_the_check_rescored_and_keeps_what_was_observed():
    item = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")
    new = _amend(item)
    assert new["status"] == "NON_COMPLIANT" and new["failed_checks"] == [STREAM]
    assert new["checks"][STREAM]["status"] == "FAIL" and "i-0bbb0000000000002" in new["checks"][STREAM]["detail"]
    assert "{instance_id}" in new["checks"][STREAM]["detail"] and "canary=true" in new["checks"][STREAM]["detail"]
    was = new["amended"]["was"]
    assert was["status"] == "COMPLIANT" and was["failed_checks"] == [] and was["checks"][STREAM] == item["checks"][STREAM]
    assert new["amended"]["by_run"] == RUN and new["amended"]["other_instances"] == ["i-0bbb0000000000002"]
    assert new["output_sha256"] == item["output_sha256"] and new["checked_at"] == item["checked_at"]
    assert new["status_detail"].startswith("audit-trail: ") and "1 failed" in new["status_detail"]


def test_the_correction_goes_through_the_run_s_waivers_and_profile():
    item = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")
    waiver = Waiver(STREAM, "clones being rebuilt", "ciso", "2026-12-31", instance_id="i-0aaa0000000000001")
    waived = _amend(item, waivers=[waiver])
    assert waived["status"] == "WAIVED" and waived["failed_checks"] == [] and waived["waived_checks"]
    outside = name_claims.amend(EvidenceItem.from_item(item), name_claims.Collision(item["instance_id"], (GROUP, "web-01"), ("i-b",)),
                                lambda c: c != STREAM, "custom", lambda h, s, f: (s, f, []), RUN, "t")
    assert outside["status"] == "COMPLIANT" and outside["advisory_failed"] == [STREAM]


@pytest.fixture
def store(monkeypatch):
    with mock_aws():
        s = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "claims_test")
        s.ensure_tables()
        monkeypatch.setattr(pipeline, "evidence_store", lambda params: s)
        yield s


def test_the_run_step_corrects_clones_across_batches_and_leaves_a_unique_hostname_alone(store, tmp_path):
    clone_a = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")  # batch 1
    unique = judged_item("i-0ccc0000000000003", "10.0.0.7", "db-07", stream="db-07")  # batch 1
    clone_b = judged_item("i-0bbb0000000000002", "10.1.0.5", "web-01", stream="web-01")  # batch 2, later
    batch_a = store.put_observations([clone_a, unique])
    store.put_observations([clone_b])
    params = AuditParams(evidence_table="claims_test", report_dir=str(tmp_path))
    inventory = Inventory.from_xcom({
        "audit_date": DAY, "run_id": RUN, "mode": "live", "states": {"us-east-1": {"running": 3}},
        "instances": {"us-east-1": [clone_a["instance_id"], clone_b["instance_id"], unique["instance_id"]]}})
    sealed = pipeline.store_summary(params, inventory, [])
    stored = {it.instance_id: it.to_item() for it in store.day_items(DAY)}  # as stored (optional fields if set)
    for clone, twin in ((clone_a, clone_b), (clone_b, clone_a)):
        it = stored[clone["instance_id"]]
        assert it["status"] == "NON_COMPLIANT" and it["failed_checks"] == [STREAM]
        assert twin["instance_id"] in it["checks"][STREAM]["detail"]
        assert it["amended"]["was"]["status"] == "COMPLIANT"
    assert stored[unique["instance_id"]]["status"] == "COMPLIANT" and "amended" not in stored[unique["instance_id"]]
    summary = store.run_summary(DAY)
    assert summary.status_counts["NON_COMPLIANT"] == 2 and summary.status_counts["COMPLIANT"] == 1
    digest = store.digest(DAY)
    corrected = stored[clone_a["instance_id"]]
    assert digest[clone_a["instance_id"]].status == "NON_COMPLIANT"
    # The correction's own item hash is what the digest vouches for (not the batch's staged copy's).
    assert digest[clone_a["instance_id"]].item == day_digest.item_sha256(corrected)[:day_digest.ITEM_HASH_HEX]
    assert corrected[day_digest.ITEM_HASH] == day_digest.item_sha256(corrected)
    # The batches' staged copies of the clones say COMPLIANT: the report reads the corrected items instead.
    staging.write_batch(str(tmp_path), DAY, RUN, "b1", [clone_a, unique, clone_b])
    report_items = pipeline.day_items_for_report(store, params, DAY, RUN, "live")
    assert {it.instance_id: it.status for it in report_items} == {
        clone_a["instance_id"]: "NON_COMPLIANT", clone_b["instance_id"]: "NON_COMPLIANT",
        unique["instance_id"]: "COMPLIANT"}
    # The correction is the host's next observation; the batch's own is kept as a version, unchanged.
    first, current = store.observations(clone_a["instance_id"], DAY)
    assert (first["item_type"], first["seq"], first["status"], "amended" in first) == ("version", 1, "COMPLIANT", False)
    assert first == {**batch_a[0], "audit_date": f"{DAY}#v#1", "item_type": "version", "day": DAY}  # every attribute
    assert first["item_sha256"] == day_digest.item_sha256(first) == batch_a[0]["item_sha256"]
    assert (current["seq"], current["status"], current["checked_at"]) == (2, "NON_COMPLIANT", clone_a["checked_at"])
    # A retried step corrects nothing twice.
    pipeline.store_summary(params, inventory, [])
    again = store.table.get_item(Key={"instance_id": clone_a["instance_id"], "audit_date": DAY})["Item"]
    assert again["amended"] == stored[clone_a["instance_id"]]["amended"] and sealed.checked == 3
    assert len(store.observations(clone_a["instance_id"], DAY)) == 2


@pytest.mark.parametrize("when", ["before the read by key", "between the read by key and the write"])
def test_a_newer_observation_of_the_host_is_never_overwritten_by_the_correction(store, monkeypatch, when):
    clone_a = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")
    clone_b = judged_item("i-0bbb0000000000002", "10.1.0.5", "web-01", stream="web-01")
    store.put_observations([clone_a, clone_b])
    read = store.day_items(DAY, fields=["status", *name_claims.FIELDS])
    # e.g. the watch DAG re-checked i-a after the day was read
    newer = dict(clone_a, run_id="manual__recheck", checked_at="2026-11-23T12:30:00Z", status_detail="a re-check")
    if when == "before the read by key":
        store.put_observations([newer])
    else:
        by_key = store.current_items

        def then_recheck(day, ids):
            found = by_key(day, ids)
            store.put_observations([newer])
            return found

        monkeypatch.setattr(store, "current_items", then_recheck)
    out = name_claims.settle(store, read, DAY, RUN, load_profile("audit-trail"), [], NOW)
    kept = store.table.get_item(Key={"instance_id": clone_a["instance_id"], "audit_date": DAY})["Item"]
    assert kept["status_detail"] == "a re-check" and "amended" not in kept
    # Both observations kept, no correction among them: the batch's (a version) and the re-check (current).
    history = store.observations(clone_a["instance_id"], DAY)
    assert [(h["seq"], h["run_id"], "amended" in h) for h in history] == [(1, RUN, False), (2, "manual__recheck", False)]
    assert {it.instance_id: it.status for it in out} == {clone_a["instance_id"]: "COMPLIANT",
                                                               clone_b["instance_id"]: "NON_COMPLIANT"}


def test_a_staged_copy_of_a_corrected_item_is_never_used_even_when_its_status_did_not_change():
    # Already NON_COMPLIANT for another check: the correction adds log_stream_fresh, the status stays.
    staged = judged_item("i-0aaa0000000000001", "10.0.0.5", "web-01", stream="web-01")
    staged = {**staged, "status": "NON_COMPLIANT", "failed_checks": ["auditd.config"]}
    staged[day_digest.ITEM_HASH] = day_digest.item_sha256(staged)
    stored = name_claims.amend(EvidenceItem.from_item(staged), name_claims.Collision(staged["instance_id"], (GROUP, "web-01"), ("i-b",)),
                               load_profile("audit-trail").decides, "audit-trail",
                               lambda host, status, failed: (status, failed, []), RUN, "2026-11-23T13:00:00Z")
    assert stored["status"] == "NON_COMPLIANT"
    iid = staged["instance_id"]
    assert staging.matching(day_digest.build([EvidenceItem.from_item(stored)]), {iid: staged}) == ([], [iid])

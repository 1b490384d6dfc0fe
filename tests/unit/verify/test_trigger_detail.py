"""Why a host was checked (`Batch.reasons`, filled by the watch) travels with its batch through XCom and the run
context to its evidence item's `trigger_detail`: stored only when there is one, covered by the observation's
hash like every attribute, printed by `python -m include.integrity history`."""
from __future__ import annotations

import json
from types import SimpleNamespace

from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.evidence.observation import observation_sha256
from include.evidence.records import EvidenceItem
from include.fleet.batching import Batch
from include.integrity.cli import history_record
from include.reach.ssh import SshSettings
from include.settings.params import AuditParams
from include.tasks import audit as pipeline
from include.verify.batch import BatchRun, RunContext
from include.verify.judge import Judgement

DAY = "2031-01-03"
TAMPERED, QUIET = "i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"
WHY = "tamper: rules_deleted at 2031-01-03T10:04:00Z (type=CONFIG_CHANGE op=remove_rule)"


def test_a_batch_carries_its_reasons_through_xcom_and_omits_them_when_empty():
    batch = Batch("us-east-1", [TAMPERED, QUIET], trigger="tamper", reasons={TAMPERED: WHY})
    payload = json.loads(json.dumps(batch.to_xcom()))
    assert payload["reasons"] == {TAMPERED: WHY} and Batch.from_xcom(payload) == batch
    assert "reasons" not in Batch("us-east-1", [QUIET]).to_xcom()  # a daily batch: as before reasons existed
    assert Batch.from_xcom({"region": "us-east-1", "instance_ids": [QUIET]}).reasons == {}


class FakeStore:
    table_name = "ev"
    resource = SimpleNamespace(meta=SimpleNamespace(client=None))

    def put_observations(self, items):
        return items


class NoRaws:
    def ref(self, *args):
        return ""


def test_the_reason_of_each_host_reaches_its_evidence_item_and_only_its_own():
    ctx = RunContext(DAY, "watch-1", AuditParams(), SshSettings(username="ec2-user", private_key="unused"),
                     trigger="tamper", reasons={TAMPERED: WHY})
    hosts = [Host(i, "us-east-1", "123456789012", "10.0.0.1") for i in (TAMPERED, QUIET)]
    run = BatchRun(ctx, FakeStore(), None, hosts, raws=NoRaws())
    for host in hosts:
        run.record(host, HostOutcome(host.instance_id, None), Judgement(Status.COMPLIANT, [], {}, "ok"))
    tampered, quiet = run.writer.pending
    assert tampered["trigger_detail"] == WHY and tampered["trigger"] == "tamper"
    assert "trigger_detail" not in quiet  # nothing to say: not stored at all
    assert EvidenceItem.from_item(tampered).trigger_detail == WHY and EvidenceItem.from_item(quiet).trigger_detail == ""


def test_the_verify_step_hands_the_batch_s_reasons_to_the_run_context(monkeypatch):
    import include.verify.batch as verify_batch_module
    from include.verify.result import BatchResult

    seen = []

    def fake_verify_batch(batch, ctx, *args, **kwargs):
        seen.append(ctx)
        return BatchResult(batch.label, batch.region, len(batch.instance_ids))

    monkeypatch.setattr(verify_batch_module, "verify_batch", fake_verify_batch)
    for name in ("ec2_client", "logs_client", "evidence_store"):
        monkeypatch.setattr(pipeline, name, lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "transport_clients", lambda *a, **k: {})
    monkeypatch.setattr(pipeline, "ssh_settings", lambda params: None)
    batch = Batch("us-east-1", [TAMPERED], label="b", audit_date=DAY, run_id="watch-1", trigger="tamper",
                  reasons={TAMPERED: WHY})
    pipeline.verify(AuditParams(transport="ssm"), batch)
    assert seen[0].reasons == {TAMPERED: WHY} and seen[0].trigger == "tamper"


def test_the_observation_hash_covers_trigger_detail_and_history_prints_it():
    base = EvidenceItem(TAMPERED, DAY, run_id="watch-1", status="COMPLIANT", seq=2, trigger="tamper").to_item()
    detailed = EvidenceItem(TAMPERED, DAY, run_id="watch-1", status="COMPLIANT", seq=2, trigger="tamper",
                            trigger_detail=WHY).to_item()
    assert "trigger_detail" not in base and detailed["trigger_detail"] == WHY
    assert observation_sha256(detailed) != observation_sha256({**detailed, "trigger_detail": "something else"})
    assert observation_sha256(detailed) != observation_sha256(base)
    assert history_record({**detailed, "item_type": "instance"})["trigger_detail"] == WHY
    assert "trigger_detail" not in history_record({**base, "item_type": "instance"})

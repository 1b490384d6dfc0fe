"""Scoring, batching, params, sections and catalogue: pure functions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devstack.standins.hosts.host_states import EXPECTED_FAILED, PROFILES, TEST_NONCE, render_output
from include.checks.catalogue import CATALOGUE, SCRIPT, evaluate_host_checks
from include.checks.sections import render_sections, split_sections
from include.core.scoring import fleet_summary, host_status
from include.core.status import CheckStatus, Status, Verdict
from include.fleet.batching import MAX_BATCHES, plan_batches
from include.settings.params import audit_day, resolve_mode
from include.tasks.params import audit_params

CONTRACT_IDS = {"auditd.installed", "auditd.running", "auditd.enabled_on_boot", "auditd.rules_loaded",
                "cwagent.installed", "cwagent.running", "cwagent.ships_audit_log", "cwagent.log_stream_fresh"}


def test_catalogue_has_every_contract_check_with_metadata():
    assert CONTRACT_IDS <= {c.id for c in CATALOGUE}
    for check in CATALOGUE:
        assert check.title and check.remediation and check.references and check.command
        assert check.severity in ("critical", "high", "medium", "low")
        assert (check.parser is None) == check.aws_side


def test_script_uses_sudo_n_with_absolute_paths():
    assert "sudo -n \"$AUDITCTL\"" in SCRIPT and "sudo -n /opt/aws/" in SCRIPT
    assert "AUDITCTL=$(first_x /usr/sbin/auditctl /sbin/auditctl)" in SCRIPT


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_fail_exactly_the_expected_host_checks(profile):
    verdicts = evaluate_host_checks(split_sections(render_output(profile, {"hostname": "h"}), TEST_NONCE))
    status, failed = host_status(verdicts)
    assert failed == sorted(c for c in EXPECTED_FAILED[profile] if c != "cwagent.log_stream_fresh")
    if profile == "sudo_password":
        assert status == Status.ERROR


def test_sections_spoofed_marker_is_only_content():
    # A marker a host could write (no nonce) neither opens nor overrides a section.
    text = render_sections({"cwagent_status": '{"status": "stopped"}',
                            "cwagent_config": '@@ec2audit-section cwagent_status\n{"status": "running"}'}, TEST_NONCE)
    out = split_sections(text, TEST_NONCE)
    assert out.get("cwagent_status") == '{"status": "stopped"}' and not out.ambiguous
    assert out.get("cwagent_config").startswith("\\@@ec2audit-section")  # neutralised, never a marker


def test_sections_repeated_real_marker_is_unusable():
    text = render_sections({"a": "1", "b": "2"}, TEST_NONCE) + render_sections({"a": "forged"}, TEST_NONCE)
    out = split_sections(text, TEST_NONCE)
    assert out.get("a") is None and out.why_missing("a") == "repeated" and out.get("b") == "2"


def test_sections_cut_short_marks_last_section_incomplete():
    out = split_sections(render_sections({"a": "1", "b": "partial"}, TEST_NONCE, complete=False), TEST_NONCE)
    assert not out.complete and out.get("a") == "1" and out.get("b") is None


def test_junk_output_errors_every_check():
    verdicts = evaluate_host_checks(split_sections("\ufffd\ufffd garbage \x00", TEST_NONCE))
    assert {v.status for v in verdicts.values()} == {CheckStatus.ERROR}


def test_host_status_fail_outranks_error():
    v = {"a": Verdict.failed("x"), "b": Verdict.error("y"), "c": Verdict.passed("z")}
    assert host_status(v) == (Status.NON_COMPLIANT, ["a"])
    assert host_status({"b": Verdict.error("y")})[0] == Status.ERROR
    assert host_status({"c": Verdict.passed("z"), "d": Verdict.not_applicable("n")})[0] == Status.COMPLIANT


def test_fleet_summary_math():
    statuses = ["COMPLIANT"] * 6 + ["NON_COMPLIANT"] * 2 + ["NOT_APPLICABLE", "WAIVED", "UNREACHABLE"]
    s = fleet_summary(statuses, discovered=12)
    assert s.checked == 11
    assert s.compliance_pct == round(100 * 6 / 9, 1)  # 11 checked − 1 N/A − 1 waived
    assert s.coverage_pct == round(100 * 11 / 12, 1)
    assert fleet_summary(["NOT_APPLICABLE"], 1).compliance_pct is None
    assert fleet_summary([], 0).coverage_pct is None


def test_batches_are_per_region_balanced_and_few():
    ids = {"us-east-1": [f"i-{n:05d}" for n in range(10_000)], "eu-west-1": [f"i-e{n}" for n in range(7)]}
    batches = [b.to_xcom() for b in plan_batches(ids)]
    assert len(batches) <= MAX_BATCHES
    assert sorted(i for b in batches for i in b["instance_ids"]) == sorted(ids["us-east-1"] + ids["eu-west-1"])
    sizes = [len(b["instance_ids"]) for b in batches if b["region"] == "us-east-1"]
    assert max(sizes) - min(sizes) <= 1
    assert all(len({b["region"]}) == 1 for b in batches)
    assert batches[0]["label"].startswith("eu-west-1 batch 1/1 (7 hosts)")


def test_automatic_size_aims_at_a_few_large_batches():
    def count(n: int) -> int:
        return len(plan_batches({"r": [f"i-{i:05d}" for i in range(n)]}))

    assert (count(30), count(100), count(1_000), count(10_000)) == (1, 2, 8, 8)
    # past 8 × 1,500 hosts the batches stay at most 1,500 (a verify task's memory) until MAX_BATCHES
    assert (count(12_000), count(30_000)) == (8, 20) and 40 <= count(100_000) <= MAX_BATCHES
    assert len(plan_batches({"r": [f"i-{i}" for i in range(1_000)]}, batch_size=100)) == 10  # explicit wins


def test_tiny_batch_size_is_capped():
    batches = plan_batches({"r": [f"i-{n}" for n in range(5000)]}, batch_size=1)
    assert len(batches) <= MAX_BATCHES


def test_plan_empty():
    assert plan_batches({}) == [] and plan_batches({"r": []}) == []


def test_params_validation():
    assert audit_params({"regions": ["us-east-1"], "unknown": 1}).regions == ["us-east-1"]
    with pytest.raises(ValueError, match="address"):
        audit_params({"address": "ipv6"})
    with pytest.raises(ValueError, match="connect_timeout"):
        audit_params({"connect_timeout": 60})
    with pytest.raises(ValueError, match="tag_filters"):
        audit_params({"tag_filters": {"Env": "prod"}})


def test_audit_day_and_mode():
    day = datetime(2026, 11, 23, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert audit_day(day, None) == "2026-11-24"  # UTC
    assert audit_day(None, datetime(2026, 11, 23, 6, tzinfo=timezone.utc)) == "2026-11-23"
    start = datetime(2026, 11, 24, 6, tzinfo=timezone.utc)
    assert resolve_mode("auto", start - timedelta(hours=24), start) == "live"
    assert resolve_mode("auto", start - timedelta(hours=37), start) == "rebuild"
    assert resolve_mode("auto", None, start) == "live"
    assert resolve_mode("live", start - timedelta(hours=30), start) == "live"
    assert resolve_mode("rebuild", start - timedelta(days=30), start) == "rebuild"


def test_a_live_check_of_a_day_long_past_is_refused_naming_mode():
    start = datetime(2026, 3, 10, 6, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"^param mode: a live check observes 2026-03-10, not 2026-02-08: "
                                         r"use mode=rebuild$"):
        resolve_mode("live", start - timedelta(days=30), start)


def test_checks_doc_is_generated_from_the_catalogue():
    from pathlib import Path

    from include.checks.docs import render

    doc = Path(__file__).resolve().parents[3] / "docs" / "CHECKS.md"
    assert doc.read_text() == render(), "run: python -m include.checks.docs > docs/CHECKS.md"

"""The transport and checks against real OpenSSH sshd (9.x) hosts: the server people actually run.

The healthy host uses the real kernel audit (real auditd, one rule) where this machine allows it.
"""
from __future__ import annotations

import asyncio

import pytest

from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.sshd_host import LOGIN, RealAuditd, ensure_login_user, start_sshd_host
from include.checks.catalogue import SCRIPT, evaluate_host_checks
from include.checks.probes import frame, new_nonce
from include.checks.sections import split_sections
from include.core.host import Host
from include.core.status import CheckStatus, Status
from include.reach.ssh import Pin, SshSettings, check_host

pytestmark = pytest.mark.needs_sshd
HEALTHY, FAILING, MISCONFIGURED = "127.42.2.1", "127.42.2.2", "127.42.2.3"
PORT = 2222


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("sshd")
    public = generate_client_key(root / "id")
    ensure_login_user()
    with RealAuditd() as auditd:
        started = {
            HEALTHY: start_sshd_host(root / "healthy", HEALTHY, PORT, public, "compliant", "i-healthy",
                                     fake_auditctl=not auditd.available),
            FAILING: start_sshd_host(root / "failing", FAILING, PORT, public, "failing", "i-failing"),
            MISCONFIGURED: start_sshd_host(root / "misconfigured", MISCONFIGURED, PORT, public, "misconfigured",
                                           "i-misconfigured"),
        }
        try:
            yield root, started, auditd
        finally:
            for host in started.values():
                host.stop()


def settings(root, **kw) -> SshSettings:
    return SshSettings(username=LOGIN, key_file=str(root / "id"), port=PORT, connect_timeout=5, backoff=0.1, **kw)


NONCE = new_nonce()


def check(address: str, s: SshSettings, pin: Pin | None = None, script: str = SCRIPT):
    return asyncio.run(check_host(Host("i-x", "r", "a", address), s, s.load_key(), frame(script, NONCE), pin))


def sections(outcome):
    return split_sections(outcome.output.decode(), NONCE)


def test_healthy_host_passes_every_host_check(hosts):
    root, started, auditd = hosts
    outcome = check(HEALTHY, settings(root))
    assert outcome.transport_status is None, outcome.transport_detail
    assert outcome.host_key_fingerprint == started[HEALTHY].host_key_fingerprint
    verdicts = evaluate_host_checks(sections(outcome))
    statuses = {cid: v.status for cid, v in verdicts.items()}
    assert statuses.pop("auditd.enabled_on_boot") == CheckStatus.NOT_APPLICABLE  # no systemd on this machine
    # The real kernel is never made immutable by a test (-e 2 cannot be undone before a reboot).
    assert statuses.pop("auditd.immutable") == (CheckStatus.FAIL if auditd.available else CheckStatus.PASS)
    assert statuses == {cid: CheckStatus.PASS for cid in statuses}, {c: verdicts[c].detail for c in statuses}
    if auditd.started_pid:  # the pid came from the real kernel, through real sudo
        assert f"pid={auditd.started_pid}" in verdicts["auditd.running"].detail


def test_failing_host_fails_for_the_right_reasons(hosts):
    root, _, _ = hosts
    outcome = check(FAILING, settings(root))
    verdicts = evaluate_host_checks(sections(outcome))
    failed = sorted(cid for cid, v in verdicts.items() if v.status == CheckStatus.FAIL)
    assert failed == ["auditd.boot_params", "auditd.immutable", "auditd.rules_cover_cis", "auditd.rules_loaded",
                      "auditd.running", "cwagent.config_valid", "cwagent.running", "cwagent.ships_audit_log"]
    assert "enabled=0" in verdicts["auditd.running"].detail
    assert "stopped" in verdicts["cwagent.running"].detail


def test_wrong_key_is_auth_failed(hosts, tmp_path):
    generate_client_key(tmp_path / "other")
    s = SshSettings(username=LOGIN, key_file=str(tmp_path / "other"), port=PORT, connect_timeout=5)
    outcome = check(HEALTHY, s)
    assert outcome.transport_status == Status.AUTH_FAILED and outcome.attempts == 1


def test_pinned_key_of_another_host_is_mismatch(hosts):
    root, started, _ = hosts
    first = check(FAILING, settings(root))
    pin = Pin(first.host_key, first.host_key_fingerprint)  # FAILING's key, presented as HEALTHY's pin
    outcome = check(HEALTHY, settings(root), pin)
    assert outcome.transport_status == Status.HOST_KEY_MISMATCH and outcome.output == b""
    assert outcome.host_key_fingerprint == started[HEALTHY].host_key_fingerprint


@pytest.mark.needs_kernel_audit
def test_canary_reaches_the_real_audit_log(hosts):
    """Through real sshd and real sudo, auditctl -m writes the marker into the kernel audit trail."""
    import time
    from pathlib import Path

    from include.checks import parsers
    from include.checks.catalogue import SCRIPT_WITH_CANARY

    root, _, auditd = hosts
    # The marker's probe found auditd and a kernel audit that answers: failing to use them now is a failure.
    assert auditd.available, auditd.reason
    s = settings(root)
    outcome = check(HEALTHY, s, None, SCRIPT_WITH_CANARY)
    token = parsers.canary_token(sections(outcome).sections)
    assert isinstance(token, str), token
    deadline = time.monotonic() + 10
    log = Path("/var/log/audit/audit.log")
    while token not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert token in log.read_text(errors="replace")


def test_misconfigured_host_fails_each_deeper_check_for_its_reason(hosts):
    root, _, _ = hosts
    outcome = check(MISCONFIGURED, settings(root))
    verdicts = evaluate_host_checks(sections(outcome))
    failed = {cid: v.detail for cid, v in verdicts.items() if v.status == CheckStatus.FAIL}
    assert sorted(failed) == ["auditd.backlog_lost", "auditd.config", "auditd.immutable", "auditd.log_permissions",
                              "auditd.rules_cover_cis", "cwagent.config_valid"], failed
    assert "lost 10 → 25" in failed["auditd.backlog_lost"]
    assert "disk_full_action=ignore" in failed["auditd.config"]
    assert "/var/log/audit is 755" in failed["auditd.log_permissions"]
    assert "i-UNKNOWN" in failed["cwagent.config_valid"]
    assert verdicts["auditd.running"].status == CheckStatus.PASS and verdicts["cwagent.running"].status == CheckStatus.PASS

"""The remediation fixes (include/checks/fixes.py) against real OpenSSH sshd "fixable" hosts.

Each test starts its own host (devstack.standins.hosts.sshd_host.start_sshd_host with `fixable=` and `remediation_key=`), runs
fix steps over the separate remediation login exactly as they are written, and reads the host's state and trap
log from outside (SshdHost.state(), trap_log()): the fixes really change the host, only through the fix
login's sudo lines, and the audit login sees the result. Loopback 127.42.11.x only; like the other
server-starting tests, run under `flock /tmp/ec2audit-e2e.lock`.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import pwd

import asyncssh
import pytest

from devstack.standins.hosts.sshd_host import LOGIN, REMEDIATION_LOGIN, FixableState, ensure_login_user, start_sshd_host
from include.checks import fixes, parsers, probes
from include.checks.catalogue import AUDIT_TRAIL, CATALOGUE, SCRIPT, evaluate_host_checks
from include.checks.probes import frame, new_nonce
from include.checks.sections import split_sections
from include.core.host import Host
from include.core.status import CheckStatus
from include.reach.ssh import SshSettings, check_host

pytestmark = pytest.mark.needs_sshd

PORT = 2222
ADDRESSES = itertools.cycle(f"127.42.11.{n}" for n in range(1, 10))
FIXED = {"auditd": "running", "rules": "loaded", "agent": "running"}
GROUP = "/ec2/audit"


@pytest.fixture(scope="module")
def keys():
    ensure_login_user(LOGIN)
    ensure_login_user(REMEDIATION_LOGIN)
    return {LOGIN: asyncssh.generate_private_key("ssh-ed25519"),
            REMEDIATION_LOGIN: asyncssh.generate_private_key("ssh-ed25519")}


@pytest.fixture
def make_host(keys, tmp_path):
    started = []

    def make(state: FixableState, instance_id: str = "i-0fix0000000000001"):
        host = start_sshd_host(tmp_path / f"host{len(started)}", next(ADDRESSES), PORT,
                               keys[LOGIN].export_public_key().decode(), "compliant", instance_id,
                               remediation_key=keys[REMEDIATION_LOGIN].export_public_key().decode(), fixable=state)
        started.append(host)
        return host

    yield make
    for host in started:
        host.stop()


def run(host, keys, login: str, command: str, stdin: str | None = None) -> asyncssh.SSHCompletedProcess:
    async def go():
        async with asyncssh.connect(host.address, host.port, username=login, client_keys=[keys[login]],
                                    known_hosts=None) as conn:
            assert conn.get_server_host_key().get_fingerprint("sha256") == host.host_key_fingerprint
            return await conn.run(command, input=stdin)

    return asyncio.run(go())


def run_fix(host, keys, fix: fixes.Fix) -> None:
    for step in fix.steps:
        stdin = fixes.agent_fragment(GROUP) if step.stdin == fixes.STDIN_AGENT_FRAGMENT else None
        result = run(host, keys, REMEDIATION_LOGIN, step.command, stdin)
        assert result.exit_status == 0, (fix.name, step.command, result.stdout, result.stderr)


def uid(login: str) -> int:
    return pwd.getpwnam(login).pw_uid


def assert_trapped(line: str, login: str, argv: str) -> None:
    stamp, who, by, rest = line.split(" ", 3)
    assert stamp.endswith("Z") and "T" in stamp, line
    assert (who, by, rest) == ("uid=0", f"sudo_uid={uid(login)}", argv), line


def test_auditd_start_as_the_fix_login_starts_auditd_and_the_audit_sees_its_pid(make_host, keys):
    host = make_host(FixableState(auditd_running=False))
    assert host.state() == {**FIXED, "auditd": "stopped"} and host.trap_log() == []
    run_fix(host, keys, fixes.AUDITD_START)
    assert host.state() == FIXED
    [line] = host.trap_log()
    assert_trapped(line, REMEDIATION_LOGIN, fixes.SERVICE_START_AUDITD)
    probe = run(host, keys, LOGIN, "sudo -n /usr/sbin/auditctl -s")
    assert probe.exit_status == 0, probe.stderr
    assert parsers.parse_auditctl_status(probe.stdout)["pid"] > 0
    assert host.trap_log() == [line]  # a read is not a change


def test_the_audit_login_cannot_fix_and_the_fix_login_gets_no_root_shell(make_host, keys):
    host = make_host(FixableState(auditd_running=False, rules_loaded=False, agent_running=False,
                                  agent_ships_audit_log=False))
    before = host.state()
    fix_only = [c for c in fixes.remediation_commands() if c not in probes.SUDO_COMMANDS]
    assert fixes.SERVICE_START_AUDITD in fix_only and fixes.TEE_FRAGMENT in fix_only
    for command in fix_only:
        refused = run(host, keys, LOGIN, f"sudo -n {command}", "{}\n")
        assert refused.exit_status != 0 and "sudo:" in refused.stderr, (command, refused.stdout, refused.stderr)
    # Without sudo the fakes cannot record, so they change nothing either; nor can a login edit them or the state.
    direct = run(host, keys, REMEDIATION_LOGIN, fixes.SERVICE_START_AUDITD)
    assert direct.exit_status != 0
    for login in (LOGIN, REMEDIATION_LOGIN):
        writable = run(host, keys, login, "for f in /usr/sbin/auditctl /usr/sbin/service /usr/sbin/augenrules "
                       f"{probes.CWA_CTL} /opt/.state /opt/.state/auditd /opt/.state/trap.log; do "
                       '[ -w "$f" ] && echo "$f"; done; true')
        assert writable.stdout == "", (login, writable.stdout)
    # Its systemd line would act on this machine's own systemd: on a fixable host it meets a refusing stand-in.
    if os.path.exists("/usr/bin/systemctl"):
        systemd = run(host, keys, REMEDIATION_LOGIN, f"sudo -n {fixes.SYSTEMCTL_ENABLE_AUDITD}")
        assert systemd.exit_status == 1 and "not been booted with systemd" in systemd.stderr, systemd.stderr
        assert "Synchronizing" not in systemd.stderr
    shell = run(host, keys, REMEDIATION_LOGIN, "sudo -n /bin/sh -c id")
    assert shell.exit_status != 0 and "uid=0" not in shell.stdout and "sudo:" in shell.stderr, shell.stderr
    staged = run(host, keys, LOGIN, f"test -e {fixes.FRAGMENT_STAGE}")
    assert staged.exit_status == 1
    assert host.state() == before and host.trap_log() == []


def test_augenrules_loads_the_rules(make_host, keys):
    host = make_host(FixableState(auditd_running=True, rules_loaded=False))
    listed = run(host, keys, LOGIN, "sudo -n /usr/sbin/auditctl -l")
    assert listed.stdout.strip() == "No rules"
    run_fix(host, keys, fixes.AUGENRULES)
    assert host.state() == FIXED
    [line] = host.trap_log()
    assert_trapped(line, REMEDIATION_LOGIN, fixes.AUGENRULES_LOAD)
    listed = run(host, keys, LOGIN, "sudo -n /usr/sbin/auditctl -l")
    assert parsers.parse_rules(listed.stdout) and "No rules" not in listed.stdout


def test_cwagent_start_starts_the_agent(make_host, keys):
    host = make_host(FixableState(auditd_running=True, agent_running=False))
    run_fix(host, keys, fixes.CWAGENT_START)
    assert host.state() == FIXED
    [line] = host.trap_log()
    assert_trapped(line, REMEDIATION_LOGIN, fixes.CWA_START)
    status = run(host, keys, LOGIN, f"sudo -n {probes.CWA_CTL} -a status")
    assert parsers.parse_agent_status(status.stdout)["status"] == "running"


def test_the_agent_ctl_refuses_to_start_without_a_translated_config(make_host, keys):
    host = make_host(FixableState(auditd_running=True, agent_running=False))
    # Take the TOML away inside the host's namespace (its /opt is a private tmpfs), as root from outside.
    os.unlink(f"/proc/{host.pid}/root{fixes.CWA_TOML}")
    direct = run(host, keys, REMEDIATION_LOGIN, f"sudo -n {fixes.CWA_START}")
    assert direct.exit_status == 1 and "no translated config" in direct.stderr
    guarded = run(host, keys, REMEDIATION_LOGIN, fixes.CWAGENT_START.steps[0].command)
    assert guarded.exit_status == 3, guarded.stdout  # the fix's own guard says so first
    assert host.state()["agent"] == "stopped" and host.trap_log() == []


def test_the_audit_log_fragment_is_managed_by_append_config_and_the_agent_runs(make_host, keys):
    host = make_host(FixableState(auditd_running=True, agent_running=False, agent_ships_audit_log=False))
    run_fix(host, keys, fixes.CWAGENT_AUDIT_FRAGMENT)
    managed = run(host, keys, LOGIN, f"cat {fixes.FRAGMENT_MANAGED}")
    assert managed.exit_status == 0 and managed.stdout == fixes.agent_fragment(GROUP)
    assert host.state() == FIXED
    [line] = host.trap_log()  # tee is the real one; the ctl is the fake
    assert_trapped(line, REMEDIATION_LOGIN, fixes.CWA_APPEND_FRAGMENT)


def check_statuses(host, keys) -> dict[str, tuple[CheckStatus, str]]:
    key = keys[LOGIN].export_private_key().decode()
    settings = SshSettings(username=LOGIN, private_key=key, port=PORT, connect_timeout=5, backoff=0.1)
    nonce = new_nonce()
    outcome = asyncio.run(check_host(Host("i-x", "r", "a", host.address), settings, settings.load_key(),
                                     frame(SCRIPT, nonce), None))
    assert outcome.transport_status is None, outcome.transport_detail
    verdicts = evaluate_host_checks(split_sections(outcome.output.decode(), nonce))
    return {cid: (v.status, v.detail) for cid, v in verdicts.items()}


def test_the_audit_script_sees_a_broken_host_fail_and_pass_once_every_fix_ran(make_host, keys):
    host = make_host(FixableState(auditd_running=False, rules_loaded=False, agent_running=False,
                                  agent_ships_audit_log=False))
    before = check_statuses(host, keys)
    failed = sorted(c for c, (s, _) in before.items() if s == CheckStatus.FAIL)
    assert failed == ["auditd.immutable", "auditd.rules_cover_cis", "auditd.rules_loaded", "auditd.running",
                      "cwagent.running", "cwagent.ships_audit_log"], before
    assert "pid=0" in before["auditd.running"][1]
    real_log = os.stat("/var/log/audit")
    for fix in (fixes.AUDITD_START, fixes.AUGENRULES, fixes.AUDIT_LOG_PERMS, fixes.CWAGENT_START,
                fixes.CWAGENT_AUDIT_FRAGMENT):
        run_fix(host, keys, fix)
    assert host.state() == FIXED
    after = check_statuses(host, keys)
    assert after["auditd.running"] == (CheckStatus.PASS, "enabled=1 pid=4242")
    audit_trail = {c.id for c in CATALOGUE if c.profile == AUDIT_TRAIL and not c.aws_side}
    assert after.pop("auditd.enabled_on_boot")[0] == CheckStatus.NOT_APPLICABLE  # no systemd on this machine
    assert {c: s for c, (s, _) in after.items() if c in audit_trail} == \
           {c: CheckStatus.PASS for c in audit_trail - {"auditd.enabled_on_boot"}}, after
    assert after["auditd.immutable"][0] == CheckStatus.FAIL  # enabled 1: so that augenrules may load
    # The log-permission fix ran on the host's private /var/log/audit, never this machine's.
    now = os.stat("/var/log/audit")
    assert (now.st_mode, now.st_uid, now.st_gid) == (real_log.st_mode, real_log.st_uid, real_log.st_gid)

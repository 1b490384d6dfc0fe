"""The catalogue's fixes: constants only, exact sudo lines, the immutable guard, the log group as data."""
from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from include.checks import fixes, probes
from include.checks.catalogue import BY_ID, CATALOGUE
from include.checks.fixes import Fix, Step

SUDO_RE = re.compile(r"sudo -n ([^;|&>\n')]+)")


def _sudo_calls(command: str) -> list[str]:
    return [m.strip() for m in SUDO_RE.findall(command)]


def test_every_check_declares_a_fix_or_a_manual_reason():
    for c in CATALOGUE:
        assert isinstance(c.fix, Fix), c.id
        assert c.fix.automatic or len(c.fix.manual) > 20, c.id


@pytest.mark.parametrize("check_id, fix", [
    ("auditd.running", fixes.AUDITD_START), ("auditd.enabled_on_boot", fixes.AUDITD_START),
    ("auditd.rules_loaded", fixes.AUGENRULES), ("cwagent.running", fixes.CWAGENT_START),
    ("cwagent.ships_audit_log", fixes.CWAGENT_AUDIT_FRAGMENT), ("auditd.log_permissions", fixes.AUDIT_LOG_PERMS)])
def test_the_automatic_fixes(check_id, fix):
    assert BY_ID[check_id].fix is fix and fix.automatic


@pytest.mark.parametrize("check_id, words", [("auditd.immutable", "reboot"), ("auditd.boot_params", "GRUB"),
                                             ("auditd.installed", "package"), ("cwagent.installed", "package")])
def test_manual_ones_say_why(check_id, words):
    fix = BY_ID[check_id].fix
    assert not fix.automatic and not fix.steps and not fix.sudo and words in fix.manual


def test_every_privileged_call_is_an_exact_sudoers_line_and_every_line_is_used():
    for fix in fixes.AUTOMATIC:
        calls = [c for s in fix.steps for c in _sudo_calls(s.command)]
        assert calls and set(calls) == set(fix.sudo), fix.name
        for call in calls:
            assert call.startswith("/"), call  # absolute paths only
    allowed = set(fixes.remediation_commands())
    assert allowed == {c for f in fixes.AUTOMATIC for c in f.sudo}


def test_no_fix_uses_fetch_config_or_a_root_shell():
    for fix in fixes.AUTOMATIC:
        for cmd in fix.sudo:
            assert "fetch-config" not in cmd  # it would delete the team's configs in amazon-cloudwatch-agent.d/
            assert not re.match(r"/(usr/)?bin/(ba|da)?sh\b", cmd)  # sudo never gets a shell


def test_commands_are_constants_with_no_placeholder():
    for fix in fixes.AUTOMATIC:
        for s in fix.steps:
            assert not re.search(r"\{[A-Za-z_]\w*\}|\$\{|%\(", s.command)  # no format slot or variable left
            assert s.stdin in ("", fixes.STDIN_AGENT_FRAGMENT)
            if s.command.startswith("/bin/sh -c "):
                argv = shlex.split(s.command)
                assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3  # one quoted script, nothing after it
                assert subprocess.run(["sh", "-n", "-c", argv[2]]).returncode == 0


def test_a_fix_is_steps_or_manual_never_both():
    with pytest.raises(ValueError):
        Fix("x", steps=(Step("/bin/true"),), manual="why")
    with pytest.raises(ValueError):
        Fix("x")
    with pytest.raises(ValueError):
        Fix("x", manual="why", sudo=("/bin/true",))


def test_remediation_sudoers_is_separate_and_escaped():
    text = fixes.remediation_sudoers("ec2-remediate")
    assert text.startswith("ec2-remediate ALL=(root) NOPASSWD: ") and text.count("\n") == 1
    assert r"file\:/opt/aws/amazon-cloudwatch-agent/etc/ec2-audit-auditlog.json" in text
    assert r"g-w\,o-rwx" in text
    # the audit's allowlist is untouched and still read-only
    audit = probes.sudoers("ec2-user")
    for cmd in fixes.remediation_commands():
        assert cmd not in audit or cmd in probes.SUDO_COMMANDS  # only auditctl -s is shared (a read)
    assert not any(w in audit for w in ("augenrules", "systemctl", "tee", "chmod", "chown", "-a start"))


@pytest.mark.parametrize("login", ["root ALL=(ALL) ALL", "a,b", "$(id)", "", "Ec2"])
def test_remediation_sudoers_refuses_odd_logins(login):
    with pytest.raises(ValueError):
        fixes.remediation_sudoers(login)


@pytest.mark.parametrize("name", ["/ec2/audit", "audit-logs_1.x#2", "a" * 512])
def test_valid_log_groups(name):
    assert fixes.valid_log_group(name) == name


@pytest.mark.parametrize("name", ["", "a;reboot", "$(reboot)", "`id`", "a b", "a\nb", "a\"b", "a{instance_id}",
                                  "aws/reserved", "a" * 513, None, 5])
def test_invalid_log_groups_are_refused(name):
    with pytest.raises(ValueError):
        fixes.valid_log_group(name)
    with pytest.raises(ValueError):
        fixes.agent_fragment(name)


def test_fragment_is_json_data_naming_the_group():
    doc = json.loads(fixes.agent_fragment("/ec2/audit"))
    entry = doc["logs"]["logs_collected"]["files"]["collect_list"]
    assert entry == [{"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit",
                      "log_stream_name": "{instance_id}"}]


# ---- the guards, run for real with a fake sudo that records what it was asked to do

def _run(fix: Fix, tmp_path: Path, status: str) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "sudo.log"
    sudo = bin_dir / "sudo"
    sudo.write_text(f"""#!/bin/sh
shift  # -n
echo "$*" >> {log}
case "$1" in */auditctl) printf '%s\\n' "{status}" ;; esac
exit 0
""")
    sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    argv = shlex.split(fix.steps[0].command)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    return r.returncode, r.stdout, log.read_text().splitlines() if log.exists() else []


def test_augenrules_refused_on_an_immutable_kernel(tmp_path):
    code, out, ran = _run(fixes.AUGENRULES, tmp_path, "enabled 2\nfailure 1\npid 42")
    assert code == 4 and "reboot" in out
    assert fixes.AUGENRULES_LOAD not in ran and any(r.endswith("auditctl -s") for r in ran)


def test_augenrules_loads_when_the_kernel_is_not_immutable(tmp_path):
    code, _, ran = _run(fixes.AUGENRULES, tmp_path, "enabled 1\nfailure 1\npid 42")
    assert code == 0 and ran[-1] == fixes.AUGENRULES_LOAD

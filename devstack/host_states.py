"""Health profiles of simulated hosts: what each one prints for the audit script, and its log stream age.

The outputs imitate the real tools (auditctl 3.x, systemctl, amazon-cloudwatch-agent-ctl, agent JSON), so
the same parsers that judge real hosts judge the simulated ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from include.checks.probes import CWA_CTL, CWA_DIR
from include.checks.sections import render_files, render_sections

AUDIT_GROUP = "/ec2/audit"


@dataclass(frozen=True)
class HostState:
    systemd: bool = True
    auditd_installed: bool = True
    auditd_running: bool = True
    auditd_enabled: bool = True
    rules: tuple[str, ...] = (
        "-w /etc/passwd -p wa -k identity",
        "-w /etc/sudoers -p wa -k scope",
        "-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=time-change",
    )
    agent_installed: bool = True
    agent_running: bool = True
    ships_audit_log: bool = True
    config_in_fragment: bool = False  # config under amazon-cloudwatch-agent.d/ instead of the main JSON
    sudo_ok: bool = True
    stream_age_minutes: int | None = 3  # None: no stream at all; used by the moto seed, not by the host


PROFILES: dict[str, HostState] = {
    "compliant": HostState(),
    "compliant_fragment": HostState(config_in_fragment=True),
    "compliant_no_systemd": HostState(systemd=False),
    "auditd_stopped": HostState(auditd_running=False),
    "auditd_missing": HostState(auditd_installed=False, auditd_running=False, rules=()),
    "no_rules": HostState(rules=()),
    "auditd_not_enabled": HostState(auditd_enabled=False),
    "agent_stopped": HostState(agent_running=False),
    "agent_missing": HostState(agent_installed=False, agent_running=False, ships_audit_log=False,
                               stream_age_minutes=None),
    "agent_not_shipping": HostState(ships_audit_log=False, stream_age_minutes=None),
    "stale_stream": HostState(stream_age_minutes=600),
    "sudo_password": HostState(sudo_ok=False),
}

# What each profile must end up as, for the demo's self-check and the integration tests.
EXPECTED_FAILED: dict[str, tuple[str, ...]] = {
    "compliant": (),
    "compliant_fragment": (),
    "compliant_no_systemd": (),
    "auditd_stopped": ("auditd.running",),
    "auditd_missing": ("auditd.installed", "auditd.rules_loaded", "auditd.running"),
    "no_rules": ("auditd.rules_loaded",),
    "auditd_not_enabled": ("auditd.enabled_on_boot",),
    "agent_stopped": ("cwagent.running",),
    "agent_missing": ("cwagent.installed", "cwagent.log_stream_fresh", "cwagent.running", "cwagent.ships_audit_log"),
    "agent_not_shipping": ("cwagent.log_stream_fresh", "cwagent.ships_audit_log"),
    "stale_stream": ("cwagent.log_stream_fresh",),
    "sudo_password": (),  # ERROR, not a failure: the checks could not be evaluated
}

SUDO_REFUSED = "sudo: a password is required"


def agent_config(ships_audit_log: bool) -> dict:
    files = [{"file_path": "/var/log/messages", "log_group_name": "/ec2/syslog", "log_stream_name": "{instance_id}"}]
    if ships_audit_log:
        files.append({"file_path": "/var/log/audit/audit.log", "log_group_name": AUDIT_GROUP,
                      "log_stream_name": "{instance_id}", "timezone": "UTC"})
    return {"agent": {"metrics_collection_interval": 60, "run_as_user": "root"},
            "logs": {"logs_collected": {"files": {"collect_list": files}}}}


def _auditctl_status(s: HostState) -> str:
    enabled, pid = (1, 1187) if s.auditd_running else (0, 0)
    return (f"enabled {enabled}\nfailure 1\npid {pid}\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0\n"
            "backlog_wait_time 60000\nbacklog_wait_time_actual 0\nloginuid_immutable 0 unlocked")


def sections_for(s: HostState, identity: dict) -> dict[str, str]:
    hostname = identity.get("hostname", "ip-127-42-0-1")
    out = {"host_identity": f'hostname: {hostname}\nNAME="Amazon Linux"\nVERSION_ID="2023"\nID="amzn"'}
    out["auditd_installed"] = ("binary: /usr/sbin/auditd\npackage: audit-3.0.6-1.amzn2023.0.2.x86_64"
                               if s.auditd_installed else "binary: none\npackage: package audit is not installed")
    if not s.auditd_installed:
        out["auditctl_status"] = out["auditctl_rules"] = "auditctl: not found"
    elif not s.sudo_ok:
        out["auditctl_status"] = out["auditctl_rules"] = SUDO_REFUSED
    else:
        out["auditctl_status"] = _auditctl_status(s)
        out["auditctl_rules"] = "\n".join(s.rules) if s.rules else "No rules"
    service = "init: systemd\n" if s.systemd else "init: other\n"
    if s.systemd:
        service += f"is-active: {'active' if s.auditd_running else 'inactive'}\n"
        service += f"is-enabled: {'enabled' if s.auditd_enabled else 'disabled'}\n"
    service += f"pidof: {'1187' if s.auditd_running else 'none'}"
    out["auditd_service"] = service
    out["cwagent_installed"] = (f"ctl: {CWA_CTL}\npackage: amazon-cloudwatch-agent-1.300057.0-1.amzn2023.x86_64"
                                if s.agent_installed else "ctl: none\npackage: package amazon-cloudwatch-agent is not installed")
    if not s.agent_installed:
        out["cwagent_status"] = "ctl: not found"
    elif not s.sudo_ok:
        out["cwagent_status"] = SUDO_REFUSED
    else:
        out["cwagent_status"] = json.dumps({
            "status": "running" if s.agent_running else "stopped",
            "starttime": "2026-11-23T06:00:00+00:00" if s.agent_running else "",
            "configstatus": "configured", "version": "1.300057.0b1207"}, indent=2)
    if s.agent_installed:
        name = (f"{CWA_DIR}/etc/amazon-cloudwatch-agent.d/file_amazon-cloudwatch-agent.json" if s.config_in_fragment
                else f"{CWA_DIR}/etc/amazon-cloudwatch-agent.json")
        out["cwagent_config"] = render_files([(name, json.dumps(agent_config(s.ships_audit_log), indent=2))])
    else:
        out["cwagent_config"] = ""
    return out


def render_output(profile: str, identity: dict | None = None) -> str:
    state = PROFILES[profile]
    return render_sections(sections_for(state, identity or {}))


def with_changes(profile: str, **changes) -> HostState:
    return replace(PROFILES[profile], **changes)

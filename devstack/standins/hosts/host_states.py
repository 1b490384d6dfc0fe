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

# Rules as the kernel reports them (`auditctl -l`), covering every CIS group of include/checks/rulesets.py.
CIS_RULES: tuple[str, ...] = (
    "-w /etc/sudoers -p wa -k scope",
    "-w /etc/sudoers.d -p wa -k scope",
    "-w /var/log/sudo.log -p wa -k actions",
    "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -F key=time-change",
    "-w /etc/localtime -p wa -k time-change",
    "-a always,exit -F arch=b64 -S sethostname,setdomainname -F key=system-locale",
    "-w /etc/issue -p wa -k system-locale",
    "-w /etc/selinux -p wa -k MAC-policy",
    "-w /var/log/lastlog -p wa -k logins",
    "-w /var/run/faillock -p wa -k logins",
    "-w /var/run/utmp -p wa -k session",
    "-w /var/log/wtmp -p wa -k session",
    "-a always,exit -F arch=b64 -S chmod,fchmod,fchmodat -F auid>=1000 -F auid!=-1 -F key=perm_mod",
    "-a always,exit -F arch=b64 -S open,truncate,ftruncate,creat,openat -F exit=-EACCES -F auid>=1000 -F auid!=-1 -F key=access",
    "-w /etc/group -p wa -k identity",
    "-w /etc/passwd -p wa -k identity",
    "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=-1 -F key=mounts",
    "-a always,exit -F arch=b64 -S rename,unlink,unlinkat,renameat -F auid>=1000 -F auid!=-1 -F key=delete",
    "-a always,exit -F arch=b64 -S init_module,finit_module,delete_module -F key=modules",
)
GOOD_AUDITD_CONF = """\
log_file = /var/log/audit/audit.log
log_format = ENRICHED
max_log_file = 32
max_log_file_action = keep_logs
space_left = 75
space_left_action = email
admin_space_left_action = single
disk_full_action = halt
disk_error_action = halt"""
WEAK_AUDITD_CONF = GOOD_AUDITD_CONF.replace("keep_logs", "ignore").replace("disk_full_action = halt",
                                                                            "disk_full_action = ignore")
GOOD_CMDLINE = "BOOT_IMAGE=(hd0,gpt1)/boot/vmlinuz-6.1.112 root=UUID=0e1f ro console=ttyS0 audit=1 audit_backlog_limit=8192"


@dataclass(frozen=True)
class HostState:
    systemd: bool = True
    auditd_installed: bool = True
    auditd_running: bool = True
    auditd_enabled: bool = True
    rules: tuple[str, ...] = CIS_RULES
    immutable: bool = True  # enabled 2
    auditd_conf_ok: bool = True
    boot_params_ok: bool = True
    log_perms_ok: bool = True
    losing_events: bool = False
    translated: str = "ok"  # ok | missing | stale (JSON ships, TOML does not) | unknown_stream
    run_as_user: str = "root"
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
    "no_rules": HostState(rules=(), immutable=False),
    "auditd_not_enabled": HostState(auditd_enabled=False),
    "agent_stopped": HostState(agent_running=False),
    "agent_missing": HostState(agent_installed=False, agent_running=False, ships_audit_log=False,
                               stream_age_minutes=None),
    "agent_not_shipping": HostState(ships_audit_log=False, stream_age_minutes=None),
    "stale_stream": HostState(stream_age_minutes=600),
    "sudo_password": HostState(sudo_ok=False),
    "not_immutable": HostState(immutable=False),
    "rules_incomplete": HostState(rules=CIS_RULES[:3] + CIS_RULES[14:16]),
    "weak_auditd_conf": HostState(auditd_conf_ok=False),
    "no_boot_params": HostState(boot_params_ok=False),
    "loose_log_perms": HostState(log_perms_ok=False),
    "losing_events": HostState(losing_events=True),
    "agent_stale_translation": HostState(translated="stale"),
    "agent_unknown_stream": HostState(translated="unknown_stream"),
    "agent_cannot_read": HostState(run_as_user="cwagent"),
}

# The real sshd hosts (sshd_host.py) speak this same vocabulary: "compliant" is PROFILES["compliant"] on a
# real OpenSSH host. Two more states exist only there, each many faults on one real host at once:
SSHD_ONLY_PROFILES: dict[str, str] = {
    "failing": "kernel audit off (enabled 0, no rules, no audit=1 boot parameter); agent stopped, not shipping",
    "misconfigured": "running and shipping, but partial rules, lost events, the agent as cwagent, stream i-UNKNOWN",
}
SSHD_PROFILES: tuple[str, ...] = ("compliant", *SSHD_ONLY_PROFILES)

# What each profile must end up as, for the demo's self-check and the integration tests.
EXPECTED_FAILED: dict[str, tuple[str, ...]] = {
    "compliant": (),
    "compliant_fragment": (),
    "compliant_no_systemd": (),
    "auditd_stopped": ("auditd.immutable", "auditd.running"),
    "auditd_missing": ("auditd.backlog_lost", "auditd.config", "auditd.immutable", "auditd.installed",
                       "auditd.log_permissions", "auditd.rules_cover_cis", "auditd.rules_loaded", "auditd.running"),
    "no_rules": ("auditd.immutable", "auditd.rules_cover_cis", "auditd.rules_loaded"),
    "auditd_not_enabled": ("auditd.enabled_on_boot",),
    "agent_stopped": ("cwagent.running",),
    "agent_missing": ("cwagent.installed", "cwagent.log_stream_fresh", "cwagent.running", "cwagent.ships_audit_log"),
    "agent_not_shipping": ("cwagent.log_stream_fresh", "cwagent.ships_audit_log"),
    "stale_stream": ("cwagent.log_stream_fresh",),
    "sudo_password": (),  # ERROR, not a failure: the checks could not be evaluated
    "not_immutable": ("auditd.immutable",),
    "rules_incomplete": ("auditd.rules_cover_cis",),
    "weak_auditd_conf": ("auditd.config",),
    "no_boot_params": ("auditd.boot_params",),
    "loose_log_perms": ("auditd.log_permissions",),
    "losing_events": ("auditd.backlog_lost",),
    # The running (translated) config decides where audit.log goes: nowhere, or the shared stream "i-UNKNOWN".
    "agent_stale_translation": ("cwagent.config_valid", "cwagent.log_stream_fresh"),
    "agent_unknown_stream": ("cwagent.config_valid", "cwagent.log_stream_fresh"),
    "agent_cannot_read": ("cwagent.config_valid",),
}



def expected(profile: str, run_profile: str = "audit-trail") -> tuple[str, list[str], list[str]]:
    """(status, failed_checks, advisory_failed) a host of this health profile must get under a run profile,
    for hosts whose session runs normally."""
    from include.verify.profiles import load_profile

    decides = load_profile(run_profile).decides
    failing = sorted(EXPECTED_FAILED[profile])
    failed, advisory = [c for c in failing if decides(c)], [c for c in failing if not decides(c)]
    status = "ERROR" if profile == "sudo_password" else "NON_COMPLIANT" if failed else "COMPLIANT"
    return status, failed, advisory


SUDO_REFUSED = "sudo: a password is required"


def agent_config(ships_audit_log: bool, run_as_user: str = "root", stream_template: str = "{instance_id}") -> dict:
    files = [{"file_path": "/var/log/messages", "log_group_name": "/ec2/syslog", "log_stream_name": "{instance_id}"}]
    if ships_audit_log:
        files.append({"file_path": "/var/log/audit/audit.log", "log_group_name": AUDIT_GROUP,
                      "log_stream_name": stream_template, "timezone": "UTC"})
    return {"agent": {"metrics_collection_interval": 60, "run_as_user": run_as_user},
            "logs": {"logs_collected": {"files": {"collect_list": files}}}}


def _auditctl_status(s: HostState, lost: int = 0) -> str:
    enabled, pid = ((2 if s.immutable else 1), 1187) if s.auditd_running else (0, 0)
    return (f"enabled {enabled}\nfailure 1\npid {pid}\nrate_limit 0\nbacklog_limit 8192\nlost {lost}\nbacklog 0\n"
            "backlog_wait_time 60000\nbacklog_wait_time_actual 0\nloginuid_immutable 0 unlocked")


def agent_toml(s: HostState, identity: dict) -> str:
    """What `fetch-config` translates the JSON into (the config the agent really runs)."""
    if s.translated == "missing":
        return "toml: not found"
    stream = "i-UNKNOWN" if s.translated == "unknown_stream" else identity.get("instance_id", "i-0123456789abcdef0")
    # identity["stream"]: the audit stream's name as the agent resolved it (e.g. by {hostname}), if not the id
    audit_stream = identity.get("stream", stream) if s.translated != "unknown_stream" else stream
    entries = ['    [[inputs.logfile.file_config]]\n      file_path = "/var/log/messages"\n'
               '      log_group_name = "/ec2/syslog"\n      log_stream_name = "%s"\n' % stream]
    if s.ships_audit_log and s.translated != "stale":
        entries.append('    [[inputs.logfile.file_config]]\n      file_path = "/var/log/audit/audit.log"\n'
                       f'      log_group_name = "{AUDIT_GROUP}"\n      log_stream_name = "{audit_stream}"\n      pipe = false\n')
    return ('[agent]\n  collection_jitter = "0s"\n  interval = "60s"\n\n[inputs]\n\n  [[inputs.logfile]]\n'
            '    destination = "cloudwatchlogs"\n    file_state_folder = "/opt/aws/amazon-cloudwatch-agent/logs/state"\n\n'
            + "".join(entries) + '\n[outputs]\n\n  [[outputs.cloudwatchlogs]]\n    region = "us-east-1"\n')


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
        out["auditctl_status"] = _auditctl_status(s, 10 if s.losing_events else 0)
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
        config = agent_config(s.ships_audit_log, s.run_as_user, identity.get("stream_template", "{instance_id}"))
        out["cwagent_config"] = render_files([(name, json.dumps(config, indent=2))])
    else:
        out["cwagent_config"] = ""
    if not s.auditd_installed:
        out["auditd_conf"], out["audit_log_perms"] = "auditd.conf: not found", "audit log dir: not found"
    elif not s.sudo_ok:
        out["auditd_conf"] = out["audit_log_perms"] = SUDO_REFUSED
    else:
        out["auditd_conf"] = GOOD_AUDITD_CONF if s.auditd_conf_ok else WEAK_AUDITD_CONF
        mode = "-rw-------" if s.log_perms_ok else "-rw-r--r--"
        out["audit_log_perms"] = ("total 8200\ndrwx------. 2 root root   4096 Nov 23 06:00 .\n"
                                  "drwxr-xr-x. 9 root root   4096 Nov 20 03:12 ..\n"
                                  f"{mode}. 1 root root 2204731 Nov 23 06:01 audit.log\n"
                                  "-r--------. 1 root root 8388689 Nov 22 14:40 audit.log.1")
    out["kernel_cmdline"] = GOOD_CMDLINE if s.boot_params_ok else GOOD_CMDLINE.replace(" audit=1 audit_backlog_limit=8192", "")
    out["cwagent_toml"] = agent_toml(s, identity) if s.agent_installed else "toml: not found"
    out["auditctl_status_end"] = out["auditctl_status"] if not s.losing_events else _auditctl_status(s, 25)
    return out


TEST_NONCE = "0123456789abcdef" * 2  # what unit tests frame their outputs with (the fleet uses each host's)


def render_output(profile: str, identity: dict | None = None) -> str:
    """What a host of this profile prints for the script; identity["nonce"] is the nonce it was sent."""
    state = PROFILES[profile]
    identity = identity or {}
    return render_sections(sections_for(state, identity), identity.get("nonce") or TEST_NONCE)


def with_changes(profile: str, **changes) -> HostState:
    return replace(PROFILES[profile], **changes)


def canary_line(profile: str, token: str) -> str:
    """What the canary probe prints on a host of this profile."""
    s = PROFILES[profile]
    if not s.auditd_installed:
        return "canary: auditctl not found"
    if not s.sudo_ok:
        return f"canary: failed: {SUDO_REFUSED}"
    return f"canary: {token}"


def delivers_canary(profile: str) -> bool:
    """Whether a simulated agent would get an audit record of this host to CloudWatch Logs."""
    s = PROFILES[profile]
    return (s.auditd_installed and s.auditd_running and s.sudo_ok and s.agent_installed and s.agent_running
            and s.ships_audit_log and s.translated in ("ok", "unknown_stream") and s.run_as_user == "root"
            and s.stream_age_minutes is not None and s.stream_age_minutes < 120)

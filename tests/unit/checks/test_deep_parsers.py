"""The deeper checks' parsers, on real output variants of each distro family."""
from __future__ import annotations

import json

import pytest

from devstack.standins.hosts.host_states import CIS_RULES, GOOD_AUDITD_CONF
from include.checks import parsers
from include.checks.rulesets import CIS, MINIMAL, load_rule_set, missing_groups, parse_rule
from include.checks.sections import render_files
from include.core.status import CheckStatus

DEBIAN_AUDITD_CONF = """#
# This file controls the configuration of the audit daemon
#
local_events = yes
write_logs = yes
log_file = /var/log/audit/audit.log
log_group = adm
max_log_file = 8
num_logs = 5
max_log_file_action = ROTATE
space_left_action = SYSLOG
admin_space_left_action = SUSPEND
disk_full_action = SUSPEND
disk_error_action = SUSPEND"""


@pytest.mark.parametrize("text,expected,needle", [
    (GOOD_AUDITD_CONF, CheckStatus.PASS, "keep_logs"),
    (DEBIAN_AUDITD_CONF, CheckStatus.PASS, "rotate ×5"),
    (DEBIAN_AUDITD_CONF.replace("num_logs = 5", "num_logs = 1"), CheckStatus.FAIL, "num_logs=1"),
    (DEBIAN_AUDITD_CONF.replace("ROTATE", "IGNORE"), CheckStatus.FAIL, "max_log_file_action=ignore"),
    (DEBIAN_AUDITD_CONF.replace("disk_full_action = SUSPEND", "disk_full_action = IGNORE"), CheckStatus.FAIL,
     "disk_full_action=ignore"),
    (DEBIAN_AUDITD_CONF.replace("max_log_file = 8", "# max_log_file = 8"), CheckStatus.FAIL, "max_log_file=0 (unset"),
    ("auditd.conf: not found", CheckStatus.FAIL, "not found"),
    ("/bin/cat: /etc/audit/auditd.conf: No such file or directory", CheckStatus.FAIL, "not found"),
    ("sudo: a password is required", CheckStatus.ERROR, "sudo"),
    ("cat: /etc/audit/auditd.conf: Permission denied", CheckStatus.ERROR, "unparseable"),
])
def test_auditd_config(text, expected, needle):
    verdict = parsers.auditd_config({"auditd_conf": text})
    assert verdict.status == expected and needle in verdict.detail


# audit-userspace's own sample, init.d/auditd.conf (the file its package installs).
UPSTREAM_AUDITD_CONF = """#
# This file controls the configuration of the audit daemon
#

local_events = yes
write_logs = yes
log_file = /var/log/audit/audit.log
log_group = root
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 8
num_logs = 5
priority_boost = 4
name_format = NONE
##name = mydomain
max_log_file_action = ROTATE
space_left = 75
space_left_action = SYSLOG
verify_email = yes
action_mail_acct = root
admin_space_left = 50
admin_space_left_action = SUSPEND
disk_full_action = SUSPEND
disk_error_action = SUSPEND
use_libwrap = yes
##tcp_listen_port = 60
tcp_listen_queue = 5
tcp_max_per_addr = 1
##tcp_client_ports = 1024-65535
tcp_client_max_idle = 0
enable_krb5 = no
krb5_principal = auditd
##krb5_key_file = /etc/audit/audit.key
distribute_network = no
"""


@pytest.mark.parametrize("text,expected,needle", [
    (UPSTREAM_AUDITD_CONF, CheckStatus.PASS, "rotate ×5"),
    # A repeated key: auditd applies every line in order, so the last value wins (auditd-config.c).
    (UPSTREAM_AUDITD_CONF + "disk_full_action = IGNORE\n", CheckStatus.FAIL, "disk_full_action=ignore"),
    (UPSTREAM_AUDITD_CONF.replace("max_log_file = 8", "max_log_file = 0") + "max_log_file = 8\n", CheckStatus.PASS,
     "max_log_file=8"),
    (UPSTREAM_AUDITD_CONF + "write_logs = no\n", CheckStatus.FAIL, "write_logs=no"),
    (UPSTREAM_AUDITD_CONF.replace("write_logs = yes", "write_logs = NO"), CheckStatus.FAIL, "write_logs=no"),
    # log_format = NOLOG is the deprecated spelling of write_logs = no; a later write_logs = yes overrides it.
    (UPSTREAM_AUDITD_CONF.replace("log_format = RAW", "log_format = NOLOG"), CheckStatus.FAIL, "NOLOG"),
    (UPSTREAM_AUDITD_CONF.replace("write_logs = yes\n", "").replace("log_format = RAW", "log_format = NOLOG\nwrite_logs = yes"),
     CheckStatus.PASS, "rotate"),
    (UPSTREAM_AUDITD_CONF.replace("log_file = /var/log/audit/audit.log", "log_file = /var/log/audit/other.log"),
     CheckStatus.FAIL, "log_file=/var/log/audit/other.log"),
    (UPSTREAM_AUDITD_CONF + "log_file = /srv/audit/audit.log\n", CheckStatus.FAIL, "log_file=/srv/audit/audit.log"),
    # Absent keys take auditd's compiled-in defaults (clear_config): ignore for these actions, 0 for the sizes.
    (UPSTREAM_AUDITD_CONF.replace("space_left_action = SYSLOG\n", ""), CheckStatus.FAIL, "space_left_action=ignore (unset"),
    (UPSTREAM_AUDITD_CONF.replace("max_log_file_action = ROTATE\n", ""), CheckStatus.FAIL,
     "max_log_file_action=ignore (unset"),
    (UPSTREAM_AUDITD_CONF.replace("num_logs = 5\n", ""), CheckStatus.FAIL, "num_logs=0 (unset"),
    (UPSTREAM_AUDITD_CONF.replace("disk_error_action = SUSPEND\n", ""), CheckStatus.PASS, "rotate"),  # default syslog
    (UPSTREAM_AUDITD_CONF.replace("disk_full_action = SUSPEND", "disk_full_action = exec /usr/local/sbin/full"),
     CheckStatus.PASS, "disk_full_action=exec"),
    (UPSTREAM_AUDITD_CONF.replace("max_log_file = 8", "max_log_file = 8MB"), CheckStatus.FAIL, "max_log_file=invalid"),
])
def test_auditd_config_as_auditd_reads_it(text, expected, needle):
    verdict = parsers.auditd_config({"auditd_conf": text})
    assert verdict.status == expected, verdict.detail
    assert needle in verdict.detail


@pytest.mark.parametrize("enabled,expected", [(2, CheckStatus.PASS), (1, CheckStatus.FAIL), (0, CheckStatus.FAIL)])
def test_immutable(enabled, expected):
    text = f"enabled {enabled}\nfailure 1\npid 10\nlost 0"
    assert parsers.auditd_immutable({"auditctl_status": text}).status == expected


def test_immutable_old_format():
    old = "AUDIT_STATUS: enabled=2 flag=1 pid=1021 rate_limit=0 backlog_limit=320 lost=0 backlog=0"
    assert parsers.auditd_immutable({"auditctl_status": old}).status == CheckStatus.PASS


@pytest.mark.parametrize("cmdline,expected", [
    ("BOOT_IMAGE=/vmlinuz ro audit=1 audit_backlog_limit=8192", CheckStatus.PASS),
    ("BOOT_IMAGE=/vmlinuz ro audit=1 audit_backlog_limit=16384 quiet", CheckStatus.PASS),
    ("BOOT_IMAGE=/vmlinuz ro audit=1", CheckStatus.FAIL),
    ("BOOT_IMAGE=/vmlinuz ro audit=1 audit_backlog_limit=320", CheckStatus.FAIL),
    ("BOOT_IMAGE=/vmlinuz ro audit=0 audit_backlog_limit=8192", CheckStatus.FAIL),
    ("", CheckStatus.ERROR),
])
def test_boot_params(cmdline, expected):
    assert parsers.auditd_boot_params({"kernel_cmdline": cmdline}).status == expected


@pytest.mark.parametrize("listing,expected", [
    ("total 264\ndrwx------ 2 root root 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw------- 1 root root 256328 Nov 24 01:05 audit.log", CheckStatus.PASS),
    ("total 264\ndrwxr-x--- 2 root adm 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw-r----- 1 root adm 256328 Nov 24 01:05 audit.log\n-r--r----- 1 root adm 256328 Nov 24 01:05 audit.log.1",
     CheckStatus.PASS),  # Debian/Ubuntu defaults
    ("total 264\ndrwxr-xr-x 2 root root 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw------- 1 root root 256328 Nov 24 01:05 audit.log", CheckStatus.FAIL),
    ("total 264\ndrwx------ 2 root root 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw-r--r-- 1 root root 256328 Nov 24 01:05 audit.log", CheckStatus.FAIL),
    ("total 264\ndrwx------. 2 root root 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw-------. 1 syslog root 256328 Nov 24 01:05 audit.log", CheckStatus.FAIL),  # SELinux dot
    ("audit log dir: not found", CheckStatus.FAIL),
    ("ls: cannot open directory '/var/log/audit': Permission denied", CheckStatus.ERROR),
])
def test_log_permissions(listing, expected):
    assert parsers.auditd_log_permissions({"audit_log_perms": listing}).status == expected


def status_with_lost(n):
    return f"enabled 1\nfailure 1\npid 10\nbacklog_limit 8192\nlost {n}\nbacklog 3"


@pytest.mark.parametrize("first,second,expected", [
    (0, 0, CheckStatus.PASS), (120, 120, CheckStatus.PASS), (10, 25, CheckStatus.FAIL)])
def test_backlog_lost(first, second, expected):
    outputs = {"auditctl_status": status_with_lost(first), "auditctl_status_end": status_with_lost(second)}
    assert parsers.auditd_backlog_lost(outputs).status == expected


def test_backlog_lost_needs_both_reads():
    outputs = {"auditctl_status": status_with_lost(0), "auditctl_status_end": "garbage"}
    assert parsers.auditd_backlog_lost(outputs).status == CheckStatus.ERROR


# -------------------------------------------------------------- rule groups

@pytest.mark.parametrize("line,key,watch,syscalls", [
    ("-w /etc/passwd -p wa -k identity", "identity", "/etc/passwd", set()),
    ("-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=time-change", "time-change", None,
     {"adjtimex", "settimeofday"}),
    ("-a exit,always -F arch=b32 -S stime -k time-change", "time-change", None, {"stime"}),  # audit 2.x order
    ("-a always,exit -S all -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -F key=privileged",
     "privileged", "/usr/bin/sudo", {"all"}),
    ("-a always,exit -F dir=/etc/sudoers.d -F perm=wa -F key=scope", "scope", "/etc/sudoers.d", set()),
])
def test_parse_rule(line, key, watch, syscalls):
    rule = parse_rule(line)
    assert (rule.key, rule.watch, set(rule.syscalls)) == (key, watch, syscalls)


def test_never_rules_cover_nothing():
    assert parse_rule("-a never,task").action == "never"
    assert missing_groups(["-a never,exit -F arch=b64 -S mount -k mounts"], CIS)[0] == "scope"
    assert "mounts" in missing_groups(["-a never,exit -F arch=b64 -S mount -k mounts"], CIS)


def test_full_cis_set_covers_everything_and_equivalents_count():
    assert missing_groups(list(CIS_RULES), CIS) == []
    # Site-specific keys still count when the watch or syscall is equivalent.
    equivalent = ["-w /etc/shadow -p wa -k acct_changes", "-a always,exit -F arch=b64 -S settimeofday -k clock",
                  "-w /etc/sudoers.d/ -p wa -k priv"]
    assert missing_groups(equivalent, MINIMAL) == ["logins"]


def test_rules_cover_names_missing_groups():
    verdict = parsers.rules_cover({"auditctl_rules": "-w /etc/passwd -p wa -k identity"}, CIS)
    assert verdict.status == CheckStatus.FAIL and "scope" in verdict.detail and "identity" not in verdict.detail
    assert parsers.rules_cover({"auditctl_rules": "No rules"}, CIS).status == CheckStatus.FAIL


def test_rule_set_from_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"name": "only-identity", "keys": ["identity"]}]))
    groups = load_rule_set(str(path))
    assert missing_groups(["-w /etc/passwd -p wa -k identity"], groups) == []
    with pytest.raises(ValueError):
        load_rule_set("no-such-set")


# -------------------------------------------------------------- agent config validity

MAIN = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
TOML_OK = """[inputs]
  [[inputs.logfile]]
    destination = "cloudwatchlogs"
    [[inputs.logfile.file_config]]
      file_path = "/var/log/audit/audit.log"
      log_group_name = "/ec2/audit"
      log_stream_name = "i-0abc"
"""


def agent_outputs(*, toml=TOML_OK, status='{"status": "running", "configstatus": "configured"}', user="root",
                  perms="total 264\ndrwx------ 2 root root 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw------- 1 root root 256328 Nov 24 01:05 audit.log"):
    config = {"agent": {"run_as_user": user}, "logs": {"logs_collected": {"files": {"collect_list": [
        {"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}]}}}}
    return {"cwagent_status": status, "cwagent_config": render_files([(MAIN, json.dumps(config))]),
            "cwagent_toml": toml, "audit_log_perms": perms}


@pytest.mark.parametrize("outputs,expected,needle", [
    (agent_outputs(), CheckStatus.PASS, "runs as root"),
    (agent_outputs(toml="toml: not found"), CheckStatus.FAIL, "fetch-config never ran"),
    (agent_outputs(toml=TOML_OK.replace("/var/log/audit/audit.log", "/var/log/messages")), CheckStatus.FAIL,
     "translated"),
    (agent_outputs(toml=TOML_OK.replace("i-0abc", "i-UNKNOWN")), CheckStatus.FAIL, "instance metadata"),
    (agent_outputs(status='{"status": "running", "configstatus": "not configured"}'), CheckStatus.FAIL, "configstatus"),
    (agent_outputs(user="cwagent"), CheckStatus.FAIL, "cannot read"),
    (agent_outputs(user="cwagent", perms="total 264\ndrwxr-x--- 2 root cwagent 4096 Nov 24 00:47 .\ndrwxr-xr-x 8 root root 4096 Nov 24 00:08 ..\n-rw-r----- 1 root cwagent 256328 Nov 24 01:05 audit.log"),
     CheckStatus.PASS, "runs as cwagent"),
    (agent_outputs(status="ctl: not found"), CheckStatus.NOT_APPLICABLE, "not installed"),
    (agent_outputs(toml="[inputs\nbroken"), CheckStatus.ERROR, "TOML"),
])
def test_config_valid(outputs, expected, needle):
    verdict = parsers.cwagent_config_valid(outputs)
    assert verdict.status == expected and needle in verdict.detail, verdict.detail


def test_old_list_rules_format_is_understood():
    old = ["LIST_RULES: exit,always watch=/etc/passwd perm=wa key=identity",
           "LIST_RULES: exit,always arch=3221225534 (0xc000003e) key=time-change syscall=adjtimex,settimeofday",
           "LIST_RULES: exit,never syscall=mount"]
    verdict = parsers.auditd_rules_loaded({"auditctl_status": "enabled 1\npid 3", "auditctl_rules": "\n".join(old)})
    assert verdict.status == CheckStatus.PASS and "3 rules" in verdict.detail
    missing = missing_groups(old, CIS)
    assert "identity" not in missing and "time-change" not in missing and "mounts" in missing


@pytest.mark.parametrize("check,text,expected", [
    ("auditd", "binary: none\npackage: audit-2.8.1-3.amzn2.1.x86_64", CheckStatus.PASS),  # Amazon Linux 2
    ("auditd", "binary: /sbin/auditd\npackage: audit-3.1.2-1.el9.x86_64", CheckStatus.PASS),  # RHEL 9 / Rocky
    ("auditd", "binary: none\npackage: auditd 1:3.0.7-1build1 install ok installed", CheckStatus.PASS),  # Ubuntu 22.04
    ("auditd", "binary: none\npackage: auditd 1:3.0.9-1 deinstall ok config-files", CheckStatus.FAIL),  # removed
    ("cwagent", "ctl: none\npackage: amazon-cloudwatch-agent-1.300032.2-1.x86_64", CheckStatus.PASS),
])
def test_package_queries_per_distro(check, text, expected):
    parse = parsers.auditd_installed if check == "auditd" else parsers.cwagent_installed
    key = "auditd_installed" if check == "auditd" else "cwagent_installed"
    assert parse({key: text}).status == expected

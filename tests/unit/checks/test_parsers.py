"""Parsers on real-looking output of each tool, including odd and hostile variants."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from include.checks import parsers
from include.checks.sections import render_files
from include.core.status import CheckStatus

AUDITCTL_S_MODERN = """enabled 1
failure 1
pid 812
rate_limit 0
backlog_limit 8192
lost 0
backlog 0
backlog_wait_time 60000
backlog_wait_time_actual 0
loginuid_immutable 0 unlocked"""
AUDITCTL_S_IMMUTABLE = AUDITCTL_S_MODERN.replace("enabled 1", "enabled 2")
AUDITCTL_S_OLD = "AUDIT_STATUS: enabled=1 flag=1 pid=1021 rate_limit=0 backlog_limit=320 lost=0 backlog=0"
AUDITCTL_S_DISABLED = AUDITCTL_S_MODERN.replace("enabled 1", "enabled 0").replace("pid 812", "pid 0")
SYSTEMD_ACTIVE = "init: systemd\nis-active: active\nis-enabled: enabled\npidof: 812"
NO_SYSTEMD = "init: other\npidof: 812"


def status(verdict):
    return verdict.status


@pytest.mark.parametrize("text,expected", [
    (AUDITCTL_S_MODERN, {"enabled": 1, "pid": 812}),
    (AUDITCTL_S_IMMUTABLE, {"enabled": 2, "pid": 812}),
    (AUDITCTL_S_OLD, {"enabled": 1, "pid": 1021}),
])
def test_auditctl_status_variants(text, expected):
    parsed = parsers.parse_auditctl_status(text)
    assert {k: parsed[k] for k in expected} == expected


@pytest.mark.parametrize("status_text,service,expected", [
    (AUDITCTL_S_MODERN, SYSTEMD_ACTIVE, CheckStatus.PASS),
    (AUDITCTL_S_IMMUTABLE, SYSTEMD_ACTIVE, CheckStatus.PASS),
    (AUDITCTL_S_OLD, NO_SYSTEMD, CheckStatus.PASS),
    (AUDITCTL_S_DISABLED, SYSTEMD_ACTIVE, CheckStatus.FAIL),
    (AUDITCTL_S_MODERN.replace("pid 812", "pid 0"), NO_SYSTEMD, CheckStatus.FAIL),
    (AUDITCTL_S_MODERN, SYSTEMD_ACTIVE.replace("is-active: active", "is-active: inactive"), CheckStatus.FAIL),
    (AUDITCTL_S_MODERN, SYSTEMD_ACTIVE.replace("is-active: active", "is-active: failed"), CheckStatus.FAIL),
    ("sudo: a password is required", SYSTEMD_ACTIVE, CheckStatus.ERROR),
    ("auditctl: not found", NO_SYSTEMD, CheckStatus.FAIL),
    ("You must be root to run this program.", NO_SYSTEMD, CheckStatus.ERROR),
])
def test_auditd_running(status_text, service, expected):
    assert status(parsers.auditd_running({"auditctl_status": status_text, "auditd_service": service})) == expected


def test_auditd_running_not_fooled_by_substring():
    # An error message that contains the words of a passing answer must not pass.
    fake = "Error: cannot reach 'enabled 1' state; pid 812 unknown"
    verdict = parsers.auditd_running({"auditctl_status": fake, "auditd_service": NO_SYSTEMD})
    assert verdict.status == CheckStatus.ERROR


@pytest.mark.parametrize("service,expected", [
    ("init: systemd\nis-active: active\nis-enabled: enabled\npidof: 1", CheckStatus.PASS),
    ("init: systemd\nis-active: active\nis-enabled: disabled\npidof: 1", CheckStatus.FAIL),
    ("init: systemd\nis-active: active\nis-enabled: masked\npidof: 1", CheckStatus.FAIL),
    ("init: systemd\nis-active: active\nis-enabled: enabled-runtime\npidof: 1", CheckStatus.FAIL),
    ("init: other\npidof: 1", CheckStatus.NOT_APPLICABLE),
    ("garbage", CheckStatus.ERROR),
])
def test_enabled_on_boot(service, expected):
    assert parsers.auditd_enabled_on_boot({"auditd_service": service}).status == expected


@pytest.mark.parametrize("rules,expected", [
    ("No rules", CheckStatus.FAIL),
    ("", CheckStatus.FAIL),
    ("-w /etc/passwd -p wa -k identity", CheckStatus.PASS),
    ("-a never,task", CheckStatus.FAIL),  # the stock Amazon Linux file: records nothing
    ("-a never,exit -F arch=b64\n-a always,exit -F arch=b64 -S adjtimex -F key=time-change", CheckStatus.FAIL),
    ("-a never,exit -F arch=b64 -S adjtimex\n-a always,exit -F arch=b64 -S adjtimex,stime -F key=t", CheckStatus.PASS),
    ("-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=time-change\n"
     "-a always,exit -F arch=b32 -S stime,settimeofday,adjtimex -F key=time-change", CheckStatus.PASS),
    ("sudo: a password is required", CheckStatus.ERROR),
    ("\x00\x01binary junk", CheckStatus.ERROR),
    ("sudo: unable to resolve host vm: Name or service not known\nNo rules", CheckStatus.FAIL),
    # The exclude list drops what any of its rules matches (as `auditctl -l` prints them, measured here).
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude -F msgtype>=1000", CheckStatus.FAIL),
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude -F msgtype!=0", CheckStatus.FAIL),
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude -F msgtype<SYSCALL\n-a never,exclude -F msgtype>=SYSCALL",
     CheckStatus.FAIL),
    # A rule without fields matches nothing on the exclude list; one type, or one user's, is a narrowing.
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude", CheckStatus.PASS),
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude -F msgtype=CWD", CheckStatus.PASS),
    ("-w /etc/passwd -p wa -k identity\n-a always,exclude -F msgtype>=1000 -F auid=4294967295", CheckStatus.PASS),
])
def test_rules_loaded(rules, expected):
    verdict = parsers.auditd_rules_loaded({"auditctl_status": AUDITCTL_S_MODERN, "auditctl_rules": rules})
    assert verdict.status == expected


@pytest.mark.parametrize("text,expected", [
    ("binary: /usr/sbin/auditd\npackage: audit-3.0.6-1.amzn2023.0.2.x86_64", CheckStatus.PASS),
    ("binary: none\npackage: auditd 1:3.0.9-1 install ok installed", CheckStatus.PASS),
    ("binary: none\npackage: package audit is not installed", CheckStatus.FAIL),
    ("binary: none\npackage: dpkg-query: no packages found matching auditd", CheckStatus.FAIL),
    ("", CheckStatus.ERROR),
])
def test_auditd_installed(text, expected):
    assert parsers.auditd_installed({"auditd_installed": text}).status == expected


@pytest.mark.parametrize("text,expected", [
    ('{"status": "running", "starttime": "2026-11-23T06:00:00+00:00", "configstatus": "configured", '
     '"version": "1.300057.0b1207"}', CheckStatus.PASS),
    ('{\n  "status": "stopped",\n  "starttime": "",\n  "configstatus": "configured"\n}', CheckStatus.FAIL),
    ('{"status": "running"}', CheckStatus.PASS),  # fields missing on old agents
    ('****** processing amazon-cloudwatch-agent ******\n{"status": "running", "version": "1.2"}', CheckStatus.PASS),
    ('{"configstatus": "not configured"}', CheckStatus.ERROR),
    ("ctl: not found", CheckStatus.FAIL),
    ("sudo: a password is required", CheckStatus.ERROR),
    ('{"status": "stopped", "note": "\\"status\\": \\"running\\""}', CheckStatus.FAIL),
])
def test_cwagent_running(text, expected):
    assert parsers.cwagent_running({"cwagent_status": text}).status == expected


@pytest.mark.parametrize("text,expected", [
    ("ctl: /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl\npackage: x", CheckStatus.PASS),
    ("ctl: none\npackage: amazon-cloudwatch-agent 1.300057.0b1207-1 install ok installed", CheckStatus.PASS),
    ("ctl: none\npackage: package amazon-cloudwatch-agent is not installed", CheckStatus.FAIL),
])
def test_cwagent_installed(text, expected):
    assert parsers.cwagent_installed({"cwagent_installed": text}).status == expected


MAIN = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
FRAGMENT = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d/file_audit.json"
FRAGMENTS = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.d"


def config(*entries, stream=None):
    logs = {"logs_collected": {"files": {"collect_list": list(entries)}}}
    if stream:
        logs["log_stream_name"] = stream
    return json.dumps({"agent": {"run_as_user": "root"}, "logs": logs})


@pytest.mark.parametrize("files,expected", [
    ([(MAIN, config({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}))], CheckStatus.PASS),
    ([(MAIN, config({"file_path": "/var/log/messages"})),
      (FRAGMENT, config({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}))], CheckStatus.PASS),
    ([(MAIN, config({"file_path": "/var/log/audit/*.log"}))], CheckStatus.PASS),
    ([(MAIN, config({"file_path": "/var/log/**"}))], CheckStatus.PASS),
    ([(MAIN, config({"file_path": "/var/log/audit/audit.log.1"}))], CheckStatus.FAIL),
    ([(MAIN, config({"file_path": "/var/log/*.log"}))], CheckStatus.FAIL),  # * does not cross directories
    ([(MAIN, config({"file_path": "/var/log/messages"}))], CheckStatus.FAIL),
    ([(FRAGMENT, "[inputs]\n  [[inputs.logfile]]")], CheckStatus.FAIL),  # TOML leftovers: noted, not crashed
    ([], CheckStatus.FAIL),
])
def test_ships_audit_log(files, expected):
    assert parsers.cwagent_ships_audit_log({"cwagent_config": render_files(files)}).status == expected


# As the agent resolves them: {hostname} is EC2's metadata hostname, {local_hostname} the OS hostname.
IDENTITY = {"instance_id": "i-0abc", "hostname": "ip-10-0-0-5.ec2.internal", "local_hostname": "web-1",
            "ip_address": "10.0.0.5"}


@pytest.mark.parametrize("entry,default_stream,fallback,expected", [
    ({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}, None, None, [("/ec2/audit", "i-0abc")]),
    ({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/{local_hostname}/audit",
      "log_stream_name": "{instance_id}-{ip_address}"}, None, None, [("/ec2/web-1/audit", "i-0abc-10.0.0.5")]),
    ({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}, "{hostname}", None,
     [("/ec2/audit", "ip-10-0-0-5.ec2.internal")]),
    ({"file_path": "/var/log/audit/audit.log"}, None, "/fleet/audit", [("/fleet/audit", "i-0abc")]),
    ({"file_path": "/var/log/audit/audit.log"}, None, None, [("/var/log/audit/audit", "i-0abc")]),
])
def test_stream_names_resolve_placeholders(entry, default_stream, fallback, expected):
    outputs = {"cwagent_config": render_files([(MAIN, config(entry, stream=default_stream))])}
    assert parsers.stream_names(outputs, IDENTITY, fallback) == expected


def test_stream_names_unknown_placeholder_is_a_reason():
    outputs = {"cwagent_config": render_files([(MAIN, config(
        {"file_path": "/var/log/audit/audit.log", "log_group_name": "/g", "log_stream_name": "{local_hostname}"}))])}
    assert isinstance(parsers.stream_names(outputs, {**IDENTITY, "local_hostname": None}, None), str)


def test_the_judge_resolves_hostname_as_ec2_metadata_and_local_hostname_as_the_os_hostname():
    from include.core.host import Host
    from include.verify.judge import _identity

    host = Host("i-0abc", "us-east-1", "111122223333", "10.0.0.5", private_ip="10.0.0.5",
                private_dns="ip-10-0-0-5.ec2.internal")
    identity = _identity(host, {"host_identity": "hostname: web-1\nID=amzn"})
    assert identity["hostname"] == "ip-10-0-0-5.ec2.internal" and identity["local_hostname"] == "web-1"


AUDIT = {"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit"}
SECURE = {"file_path": "/var/log/secure", "log_group_name": "/ec2/audit"}


def _targets(files, toml="toml: not found"):
    outputs = {"cwagent_config": render_files(files), "cwagent_toml": toml}
    return parsers.stream_targets(outputs, IDENTITY, None)


def test_a_global_log_stream_name_in_a_fragment_applies_to_the_main_file_s_entries():
    # The agent merges the main JSON and the .d/ files into one config: one logs.log_stream_name for all.
    targets = _targets([(MAIN, config(AUDIT)), (f"{FRAGMENTS}/fleet.json", json.dumps({"logs": {"log_stream_name": "{hostname}"}}))])
    assert [(t.group, t.stream) for t in targets] == [("/ec2/audit", "ip-10-0-0-5.ec2.internal")]


def test_two_different_global_stream_names_are_a_merge_the_agent_refuses():
    v = _targets([(MAIN, config(AUDIT, stream="{instance_id}")), (f"{FRAGMENTS}/x.json", config(SECURE, stream="x"))])
    assert v.status == CheckStatus.ERROR and "refuses to merge" in v.detail


@pytest.mark.parametrize("files", [
    [(MAIN, config(AUDIT, SECURE))],  # one file, default stream
    [(MAIN, config(AUDIT)), (f"{FRAGMENTS}/secure.json", config(SECURE))],  # a .d/ fragment adds it
])
def test_another_file_shipped_into_the_audit_stream_is_named(files):
    targets = _targets(files)
    assert [t.shared_with for t in targets] == [("/var/log/secure",)]
    why = parsers.attribution_problem(targets[0], {"instance_id": "i-0abc"})
    assert why and "/var/log/secure" in why and "canary=true" in why


def test_another_file_in_another_stream_shares_nothing():
    targets = _targets([(MAIN, config(AUDIT)), (f"{FRAGMENTS}/secure.json", config({**SECURE, "log_stream_name": "s"}))])
    assert [t.shared_with for t in targets] == [()]
    assert parsers.attribution_problem(targets[0], {"instance_id": "i-0abc"}) is None


TRANSLATED = """[outputs]
  [[outputs.cloudwatchlogs]]
    force_flush_interval = "5s"
    log_stream_name = "web-1"
    region = "us-east-1"

[inputs]
  [[inputs.logfile]]
    destination = "cloudwatchlogs"
    [[inputs.logfile.file_config]]
      file_path = "/var/log/audit/audit.log"
      log_group_name = "/ec2/audit"
    [[inputs.logfile.file_config]]
      file_path = "/var/log/secure"
      log_group_name = "/ec2/audit"
      log_stream_name = "%s"
"""


@pytest.mark.parametrize("secure_stream,shared", [("web-1", True), ("i-0abc", False)])
def test_the_translated_config_s_output_default_stream_names_entries_without_their_own(secure_stream, shared):
    targets = _targets([(MAIN, config(AUDIT))], toml=TRANSLATED % secure_stream)
    assert [(t.group, t.stream) for t in targets] == [("/ec2/audit", "web-1")]  # not the instance id
    assert targets[0].shared_with == (("/var/log/secure",) if shared else ())


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def ms(delta: timedelta) -> int:
    return int((NOW - delta).timestamp() * 1000)


@pytest.mark.parametrize("info,expected", [
    ({"lastIngestionTime": ms(timedelta(minutes=5)), "lastEventTimestamp": ms(timedelta(minutes=6))}, CheckStatus.PASS),
    ({"lastIngestionTime": ms(timedelta(hours=5)), "lastEventTimestamp": ms(timedelta(minutes=10))}, CheckStatus.PASS),
    ({"lastIngestionTime": ms(timedelta(hours=5)), "lastEventTimestamp": ms(timedelta(hours=6))}, CheckStatus.FAIL),
    ({"creationTime": ms(timedelta(days=1))}, CheckStatus.FAIL),  # created, never received an event
    (None, CheckStatus.FAIL),
])
def test_stream_freshness(info, expected):
    verdict = parsers.judge_stream_freshness({("/ec2/audit", "i-0abc"): info}, NOW, 120)
    assert verdict.status == expected


def test_freshness_boundary_is_inclusive():
    info = {"lastIngestionTime": ms(timedelta(minutes=120))}
    assert parsers.judge_stream_freshness({("g", "s"): info}, NOW, 120).status == CheckStatus.PASS


@pytest.mark.parametrize("file_path,covered", [
    ("/var/log/audit/audit.log", True),
    ("/var/log/audit/*.log", True),
    ("/var/log/**", True),
    ("/var/log/*.log", False),  # `*` stays within one directory
    ("/var/log/audit/audit.lo?", True),
    # gobwas/glob (telegraf's globpath, the agent's logfile input): classes and alternatives
    ("/var/log/audit/audit.[lx]og", True),
    ("/var/log/audit/audit.[!l]og", False),
    ("/var/log/audit/audit.[a-m]og", True),
    ("/var/log/{audit,secure}/audit.log", True),
    ("/var/log/{secure,messages}", False),
    ("/var/log/{aud*,x}/audit.log", True),
    ("/var/log/audit/audit.log{", False),  # an open brace is no glob the agent compiles
])
def test_file_path_globs_as_the_agent_matches_them(file_path, covered):
    assert parsers.covers(file_path) is covered


# The logs section of amazon-cloudwatch-agent's own sample, translator/tocwconfig/sampleConfig/complete_linux_config.json
AGENT_SAMPLE_LOGS = {"logs": {
    "metrics_collected": {"emf": {"service_address": "udp://127.0.0.1:25888"}},
    "logs_collected": {"files": {"collect_list": [
        {"file_path": "/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log",
         "log_group_name": "amazon-cloudwatch-agent.log", "log_stream_name": "amazon-cloudwatch-agent.log",
         "timezone": "UTC", "retention_in_days": 5},
        {"file_path": "/opt/aws/amazon-cloudwatch-agent/logs/test.log", "log_group_name": "test.log",
         "log_stream_name": "test.log", "timezone": "UTC", "auto_removal": True}]}},
    "log_stream_name": "LOG_STREAM_NAME", "force_flush_interval": 60,
    "credentials": {"role_arn": "log_role_arn_value_test"},
    "endpoint_override": "https://logs-fips.us-west-2.amazonaws.com"}}
# Its journald sample, translator/tocwconfig/sampleConfig/log_only_config_linux.json
AGENT_SAMPLE_JOURNALD = {"logs": {"logs_collected": {"journald": {"collect_list": [
    {"log_group_name": "system-logs", "log_stream_name": "{instance_id}", "retention_in_days": 7,
     "units": ["systemd", "sshd"]},
    {"log_group_name": "application-logs", "log_stream_name": "{instance_id}-app", "retention_in_days": 30,
     "units": ["nginx", "apache2"]}]}}}}


def test_the_agent_s_own_sample_as_a_fragment_names_the_audit_stream_by_its_global_log_stream_name():
    targets = _targets([(MAIN, config(AUDIT)), (f"{FRAGMENTS}/sample.json", json.dumps(AGENT_SAMPLE_LOGS))])
    assert [(t.group, t.stream, t.shared_with) for t in targets] == [("/ec2/audit", "LOG_STREAM_NAME", ())]


def test_journald_units_shipped_into_the_audit_stream_are_named():
    audit = {"file_path": "/var/log/audit/audit.log", "log_group_name": "system-logs"}
    targets = _targets([(MAIN, config(audit)), (f"{FRAGMENTS}/journald.json", json.dumps(AGENT_SAMPLE_JOURNALD))])
    assert [(t.group, t.stream) for t in targets] == [("system-logs", "i-0abc")]
    assert targets[0].shared_with == ("journald (systemd, sshd)",)

"""Which audit records are tamper (include/watch/tamper.py), and the subscription filter's term syntax."""
from __future__ import annotations

import pytest

from include.watch.records import AUDIT_DISABLED, CONFIG_CHANGED, DAEMON_STOPPED, RULES_DELETED
from include.watch.tamper import FILTER_PATTERN, classify, pattern_matches

# audit.log lines as auditd writes them (RHEL 9 / Amazon Linux 2023 forms).
DAEMON_END = ("type=DAEMON_END msg=audit(1732526400.123:5390): op=terminate auid=0 uid=0 ses=4294967295 "
              "subj=system_u:system_r:init_t:s0 pid=1 res=success")
DAEMON_ABORT = "type=DAEMON_ABORT msg=audit(1732526400.123:5391): op=abort auid=0 pid=812 res=failed"
SERVICE_STOP = ("type=SERVICE_STOP msg=audit(1732526400.120:5389): pid=1 uid=0 auid=4294967295 ses=4294967295 "
                "subj=system_u:system_r:init_t:s0 msg='unit=auditd comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" "
                "hostname=? addr=? terminal=? res=success'")
OTHER_STOP = SERVICE_STOP.replace("unit=auditd", "unit=sysstat-collect")
REMOVE_RULE = ("type=CONFIG_CHANGE msg=audit(1732526500.001:6001): auid=1000 ses=3 subj=unconfined_u:unconfined_r:"
               "unconfined_t:s0 op=remove_rule key=\"identity\" list=4 res=1")
REMOVE_RULE_OLD = "type=CONFIG_CHANGE msg=audit(1732526500.001:6002): auid=1000 ses=3 op=\"remove_rule\" key=(null) list=4 res=1"
DISABLED = "type=CONFIG_CHANGE msg=audit(1732526600.000:7001): op=set audit_enabled=0 old=1 auid=0 ses=2 res=1"
ENABLED = "type=CONFIG_CHANGE msg=audit(1732526600.000:7002): op=set audit_enabled=1 old=0 auid=0 ses=2 res=1"
ADD_RULE = "type=CONFIG_CHANGE msg=audit(1732526700.000:8001): auid=0 ses=2 op=add_rule key=\"x\" list=4 res=1"
ENRICHED = DAEMON_END + "\x1dUID=\"root\" AUID=\"root\""
NODE = "node=web-1 " + REMOVE_RULE


@pytest.mark.parametrize("record,kind", [
    (DAEMON_END, DAEMON_STOPPED), (DAEMON_ABORT, DAEMON_STOPPED), (SERVICE_STOP, DAEMON_STOPPED),
    (REMOVE_RULE, RULES_DELETED), (REMOVE_RULE_OLD, RULES_DELETED), (DISABLED, AUDIT_DISABLED),
    (ENABLED, CONFIG_CHANGED), (ADD_RULE, CONFIG_CHANGED), (ENRICHED, DAEMON_STOPPED), (NODE, RULES_DELETED),
])
def test_tamper_records(record, kind):
    assert classify(record) == kind


@pytest.mark.parametrize("record", [
    OTHER_STOP,
    # A user's text in msg='...' is not the record's own fields.
    "type=USER msg=audit(1732526400.000:1): pid=4242 uid=1000 auid=1000 ses=5 msg='type=DAEMON_END op=remove_rule'",
    "type=USER msg=audit(1732526400.000:1): pid=4242 uid=1000 auid=1000 msg='x' type=CONFIG_CHANGE op=remove_rule",
    "type=USER_CMD msg=audit(1732526400.000:2): pid=4242 uid=1000 msg='cmd=systemctl stop auditd unit=auditd'",
    # The type must lead.
    "hello type=DAEMON_END msg=audit(1732526400.000:3): op=terminate",
    "Nov 25 10:00:00 web-1 audit: type=DAEMON_END msg=audit(1732526400.000:3): op=terminate",
    "type=SYSCALL msg=audit(1732526400.000:4): arch=c000003e syscall=59 comm=\"auditctl\" op=remove_rule",
    "", "type=", "garbage", "type=DAEMON_ENDX msg=audit(1:1):",
])
def test_not_tamper(record):
    assert classify(record) == ""


def test_classify_never_raises_on_non_text():
    assert classify(None) == "" and classify(b"type=DAEMON_END") == ""  # type: ignore[arg-type]


def test_filter_pattern_forwards_every_tamper_record_and_not_other_units():
    for record in (DAEMON_END, DAEMON_ABORT, SERVICE_STOP, REMOVE_RULE, REMOVE_RULE_OLD, DISABLED, ENABLED, ENRICHED):
        assert pattern_matches(FILTER_PATTERN, record), record
    assert not pattern_matches(FILTER_PATTERN, OTHER_STOP)
    assert not pattern_matches(FILTER_PATTERN, "type=SYSCALL msg=audit(1:1): syscall=59")


@pytest.mark.parametrize("pattern,message,expected", [
    ("", "anything", True),
    ("ERROR", "[ERROR] boom", True),
    ("ERROR", "[error] boom", False),  # case-sensitive
    ("ERROR Exception", "ERROR: Exception raised", True),
    ("ERROR Exception", "ERROR only", False),
    ("?ERROR ?WARN", "a WARN here", True),
    ("?ERROR ?WARN", "an INFO", False),
    ("ERROR -ARGUMENTS", "ERROR in ARGUMENTS", False),
    ("ERROR -ARGUMENTS", "ERROR in body", True),
    ('"type=DAEMON_END"', "type=DAEMON_END msg=x", True),
    ('?"op=remove_rule" ?"audit_enabled=0"', "op=set audit_enabled=0", True),
    ('"ERROR 401"', "[ERROR 401] x", True),
    ('"ERROR 401"', "[ERROR 400] 401", False),
])
def test_pattern_matches_term_syntax(pattern, message, expected):
    assert pattern_matches(pattern, message) is expected


@pytest.mark.parametrize("pattern", ["{ $.a = 1 }", "[ip, user]", "%ERR.R%", "?ERROR WARN", "type=X", '"open'])
def test_pattern_syntax_not_implemented_raises(pattern):
    with pytest.raises(ValueError):
        pattern_matches(pattern, "type=X ERROR WARN")

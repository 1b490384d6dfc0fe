"""Which Linux audit records say the audit itself was tampered with, and the subscription filter that finds them.

`classify(record)` reads one audit.log line as auditd writes it (`[node=<name> ]type=<TYPE> msg=audit(<t>:<n>):
key=value ...`, optionally followed by auditd's ENRICHED part after a 0x1d separator). Only the record's own
fields count: the type must be its leading field, and the free text a userspace sender puts in `msg='...'` is one
opaque value — a USER record whose text says "type=DAEMON_END" is not tamper. The one exception is SERVICE_STOP,
which systemd (pid 1) sends with its fields inside msg='...': there `unit=` is read from that text, and only for a
record whose leading type is SERVICE_STOP (sending one needs CAP_AUDIT_WRITE, i.e. root on that host — who can
stop auditd anyway; a forged record only ever re-checks the host whose stream carried it).

`FILTER_PATTERN` is the CloudWatch Logs subscription filter (term syntax, "Using filter patterns to match terms in
unstructured log events", https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html):
it is wider than `classify` (every CONFIG_CHANGE, every record naming unit=auditd) so that the forwarder sends
the candidates and `classify` decides. `pattern_matches` applies that term syntax as CloudWatch Logs does, for
the local stack's stand-in (moto matches every message for `?` patterns).
"""
from __future__ import annotations

import re

from include.watch.records import AUDIT_DISABLED, CONFIG_CHANGED, DAEMON_STOPPED, RULES_DELETED

# One key=value field: a double-quoted value, a single-quoted one (msg='...'), or a bare token.
_FIELD = re.compile(r"""([A-Za-z_][A-Za-z0-9_-]*)=("[^"]*"|'[^']*'|[^\s]*)""")
_ENRICHED_SEP = "\x1d"  # auditd log_format=ENRICHED appends interpreted fields after this byte

DAEMON_TYPES = frozenset({"DAEMON_END", "DAEMON_ABORT"})
AUDITD_UNITS = frozenset({"auditd", "auditd.service"})

# ORed terms (a `?` before each). Quoted because `=` is not alphanumeric. CONFIG_CHANGE covers op=remove_rule
# (also written op="remove_rule" by older kernels) and audit_enabled=0; unit=auditd covers SERVICE_STOP of
# auditd without forwarding every other unit's stop (a host's timers stop units every few minutes).
FILTER_TERMS = ("type=DAEMON_END", "type=DAEMON_ABORT", "type=CONFIG_CHANGE", "unit=auditd")
FILTER_PATTERN = " ".join(f'?"{t}"' for t in FILTER_TERMS)


def fields(record: str) -> list[tuple[str, str]]:
    """The record's top-level key=value fields in order (quotes stripped; msg='...' kept as one value), or []
    when the record does not begin with a field (leading text, a syslog prefix...). A token that is not a field
    further on is skipped."""
    text = record.split(_ENRICHED_SEP, 1)[0].strip()
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _FIELD.match(text, pos)
        if m is None:
            if not out:
                return []
            while pos < len(text) and not text[pos].isspace():
                pos += 1
            while pos < len(text) and text[pos].isspace():
                pos += 1
            continue
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out.append((m.group(1), value))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _record_type(parsed: list[tuple[str, str]]) -> str:
    """The leading `type=` (after an optional `node=`, auditd's name_format): '' when it is not leading."""
    if parsed and parsed[0][0] == "node":
        parsed = parsed[1:]
    return parsed[0][1] if parsed and parsed[0][0] == "type" else ""


def classify(record: str) -> str:
    """One of include.watch.records.TAMPER_KINDS for a record of the audit being stopped, emptied or changed;
    '' for anything else (never raises)."""
    if not isinstance(record, str):
        return ""
    parsed = fields(record)
    kind = _record_type(parsed)
    if not kind:
        return ""
    own = {}
    for key, value in parsed:
        own.setdefault(key, value)  # the first occurrence: the kernel's own fields come before any text
    if kind in DAEMON_TYPES:
        return DAEMON_STOPPED
    if kind == "SERVICE_STOP":
        texts = [v for k, v in parsed if k == "msg" and not v.startswith("audit(")]  # after the msg=audit() header
        inner = dict(fields(texts[0])) if texts else {}
        return DAEMON_STOPPED if inner.get("unit") in AUDITD_UNITS else ""
    if kind == "CONFIG_CHANGE":
        if own.get("op") == "remove_rule":
            return RULES_DELETED
        if own.get("audit_enabled") == "0":
            return AUDIT_DISABLED
        return CONFIG_CHANGED
    return ""


# --- CloudWatch Logs term filter patterns -------------------------------------------------------------------
_TERM = re.compile(r'(-|\?)?("([^"]*)"|[^\s"]+)')


def _terms(pattern: str) -> list[tuple[str, str]]:
    """[(op, term)] with op '' (must appear), '?' (any of), '-' (must not appear)."""
    out: list[tuple[str, str]] = []
    pos, text = 0, pattern.strip()
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None:
            raise ValueError(f"filter pattern syntax not implemented at {text[pos:pos + 20]!r}")
        term = m.group(3) if m.group(3) is not None else m.group(2)
        if m.group(3) is None and not re.fullmatch(r"[A-Za-z0-9_]+", term):
            raise ValueError(f"unquoted term {term!r}: only alphanumeric terms may be unquoted")
        out.append((m.group(1) or "", term))
        pos = m.end()
        if pos < len(text) and not text[pos].isspace():
            raise ValueError(f"filter pattern syntax not implemented at {text[pos:pos + 20]!r}")
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def pattern_matches(pattern: str, message: str) -> bool:
    """Whether CloudWatch Logs' term filter `pattern` matches `message`: case-sensitive substrings; terms
    separated by spaces must all appear; `?term ?term` any of them; `-term` must not appear; "" matches all.
    JSON (`{...}`), space-delimited (`[...]`) and regex (`%...%`) patterns, and `?` mixed with other terms,
    raise ValueError (not implemented here)."""
    if pattern.strip()[:1] in ("{", "[", "%"):
        raise ValueError(f"filter pattern syntax not implemented: {pattern[:40]!r}")
    terms = _terms(pattern)
    if not terms:
        return True
    ors = [t for op, t in terms if op == "?"]
    if ors and len(ors) != len(terms):
        raise ValueError("filter pattern mixes ?term with other terms: not implemented")
    if ors:
        return any(t in message for t in ors)
    return all((t not in message) if op == "-" else (t in message) for op, t in terms)

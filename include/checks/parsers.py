"""Pure parsers: probe output text → Verdict. No I/O; every function is unit-tested on real-looking output.

Parsers match whole lines or parsed values, never substrings, so output that merely contains a passing
phrase ("enabled 1" inside an error message) cannot fool them.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from include.checks.sections import split_files
from include.models import Verdict

AUDIT_LOG = "/var/log/audit/audit.log"
SUDO_PASSWORD = re.compile(r"^sudo: (a password is required|a terminal is required|.*not allowed)", re.M)


def _sudo_problem(text: str) -> str | None:
    m = SUDO_PASSWORD.search(text)
    return f"sudo -n refused: {m.group(0)[:120]}" if m else None


def _unusable(text: str, missing_marker: str, missing_detail: str) -> Verdict | None:
    """The answers every privileged probe can give instead of real output: sudo refused, tool missing."""
    if problem := _sudo_problem(text):
        return Verdict.error(problem)
    if text.strip() == missing_marker:
        return Verdict.failed(missing_detail)
    return None


def _installed(text: str, path_key: str, rpm_name: str, what: str) -> Verdict:
    """`<path_key>: /path|none` and `package: <rpm -q | dpkg-query>` lines → installed or not."""
    kv = _kv_lines(text)
    path, package = kv.get(path_key, ""), kv.get("package", "")
    if path.startswith("/"):
        return Verdict.passed(f"{what} at {path}")
    if re.match(rf"^{re.escape(rpm_name)}-\d", package) or package.endswith("install ok installed"):
        return Verdict.passed(f"package {package}")
    if path_key not in kv:
        return Verdict.error(f"unexpected output: {_first_line(text)!r}")
    return Verdict.failed(f"{what} not found and package not installed")


def _first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line[:limit]


def _kv_lines(text: str) -> dict[str, str]:
    """`key: value` lines → dict (first occurrence wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------- auditd

def parse_auditctl_status(text: str) -> dict[str, int] | None:
    """`auditctl -s` → {"enabled": 1, "pid": 123, ...}; None when it is not a status listing.

    Handles the modern one-pair-per-line form and the old single-line
    `AUDIT_STATUS: enabled=1 flag=1 pid=123 ...` form (audit 2.x on RHEL 6/7, Amazon Linux 1).
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AUDIT_STATUS:"):
            for pair in line[len("AUDIT_STATUS:"):].split():
                key, _, value = pair.partition("=")
                if value.lstrip("-").isdigit():
                    values.setdefault(key, int(value))
            continue
        m = re.fullmatch(r"([a-z_]+) (-?\d+)(?: .*)?", line)
        if m:
            values.setdefault(m.group(1), int(m.group(2)))
    return values if "enabled" in values and "pid" in values else None


def auditd_installed(outputs: Mapping[str, str]) -> Verdict:
    return _installed(outputs["auditd_installed"], "binary", "audit", "auditd binary")


def auditd_running(outputs: Mapping[str, str]) -> Verdict:
    status_text, service = outputs["auditctl_status"], _kv_lines(outputs["auditd_service"])
    if unusable := _unusable(status_text, "auditctl: not found", "auditctl not found"):
        return unusable
    status = parse_auditctl_status(status_text)
    if status is None:
        return Verdict.error(f"unparseable auditctl -s output: {_first_line(status_text)!r}")
    enabled, pid = status["enabled"], status["pid"]
    facts = f"enabled={enabled} pid={pid}"
    if enabled not in (1, 2):
        return Verdict.failed(f"kernel audit disabled ({facts})")
    if pid <= 0:
        return Verdict.failed(f"no auditd process registered with the kernel ({facts})")
    if service.get("init") == "systemd":
        active = service.get("is-active", "")
        if active != "active":
            return Verdict.failed(f"systemd reports auditd {active or 'unknown'} ({facts})")
        facts += ", systemd active"
    return Verdict.passed(facts)


def auditd_enabled_on_boot(outputs: Mapping[str, str]) -> Verdict:
    service = _kv_lines(outputs["auditd_service"])
    init = service.get("init")
    if init is None:
        return Verdict.error(f"unexpected output: {_first_line(outputs['auditd_service'])!r}")
    if init != "systemd":
        return Verdict.not_applicable("no systemd on this host")
    state = service.get("is-enabled", "")
    if state == "enabled":
        return Verdict.passed("systemctl is-enabled auditd: enabled")
    return Verdict.failed(f"systemctl is-enabled auditd: {state or 'no answer'}")


def parse_rules(text: str) -> list[str]:
    """`auditctl -l` → rule lines; [] for "No rules"."""
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("-a", "-w", "-e", "-b", "-f", "-r"))]


def auditd_rules_loaded(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["auditctl_rules"]
    if unusable := _unusable(text, "auditctl: not found", "auditctl not found"):
        return unusable
    rules = parse_rules(text)
    if rules:
        return Verdict.passed(f"{len(rules)} rules loaded")
    # Whole-line match: sudo may print a warning line (e.g. "unable to resolve host") before the answer.
    if "No rules" in {ln.strip() for ln in text.splitlines()} or not text.strip():
        return Verdict.failed("no audit rules loaded (auditctl -l: No rules)")
    return Verdict.error(f"unparseable auditctl -l output: {_first_line(text)!r}")


# ---------------------------------------------------------------- CloudWatch agent

def cwagent_installed(outputs: Mapping[str, str]) -> Verdict:
    return _installed(outputs["cwagent_installed"], "ctl", "amazon-cloudwatch-agent", "agent ctl")


def parse_agent_status(text: str) -> dict | None:
    """The JSON object printed by `amazon-cloudwatch-agent-ctl -a status` (may follow log lines)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def cwagent_running(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["cwagent_status"]
    if unusable := _unusable(text, "ctl: not found", "agent not installed"):
        return unusable
    status = parse_agent_status(text)
    if status is None or "status" not in status:
        return Verdict.error(f"unparseable agent status: {_first_line(text)!r}")
    value = status.get("status")
    if value == "running":
        return Verdict.passed(f"agent running since {status.get('starttime', '?')}, version {status.get('version', '?')}")
    return Verdict.failed(f"agent status: {value}")


@dataclass(frozen=True)
class LogTarget:
    """Where one collect_list entry ships a file: group and stream as written in the config."""

    source_file: str
    file_path: str
    log_group: str | None
    log_stream: str | None


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    # The agent accepts `**` (any depth) and `*`/`?` within a path segment.
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def covers(file_path: str, target: str = AUDIT_LOG) -> bool:
    return bool(_glob_to_regex(file_path).fullmatch(target))


def parse_agent_configs(section_text: str) -> tuple[list[LogTarget], list[str]]:
    """All collect_list entries across the main JSON and the .d fragments, plus per-file problems."""
    targets: list[LogTarget] = []
    problems: list[str] = []
    for path, content in split_files(section_text):
        if not content:
            continue
        try:
            config = json.loads(content)
        except ValueError:
            # Old-style agent configs in .d/ may be TOML or other files we do not judge; note, don't fail.
            problems.append(f"{path}: not JSON")
            continue
        logs = config.get("logs") if isinstance(config, dict) else None
        if not isinstance(logs, dict):
            continue
        default_stream = logs.get("log_stream_name")
        files = ((logs.get("logs_collected") or {}).get("files") or {}) if isinstance(logs.get("logs_collected"), dict) else {}
        entries = files.get("collect_list") if isinstance(files, dict) else None
        for entry in entries or []:
            if isinstance(entry, dict) and isinstance(entry.get("file_path"), str):
                targets.append(LogTarget(
                    source_file=path,
                    file_path=entry["file_path"],
                    log_group=entry.get("log_group_name"),
                    log_stream=entry.get("log_stream_name") or default_stream,
                ))
    return targets, problems


def audit_log_targets(outputs: Mapping[str, str]) -> list[LogTarget]:
    targets, _ = parse_agent_configs(outputs["cwagent_config"])
    return [t for t in targets if covers(t.file_path)]


def cwagent_ships_audit_log(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["cwagent_config"]
    targets, problems = parse_agent_configs(text)
    matching = [t for t in targets if covers(t.file_path)]
    if matching:
        t = matching[0]
        return Verdict.passed(f"{t.source_file} collects {t.file_path} → group {t.log_group or '(default)'}")
    if not text.strip():
        return Verdict.failed("no agent configuration found")
    shipped = ", ".join(sorted({t.file_path for t in targets})) or "nothing"
    suffix = f" ({'; '.join(problems)})" if problems else ""
    return Verdict.failed(f"no collect_list entry covers {AUDIT_LOG}; collects: {shipped}{suffix}"[:300])


PLACEHOLDERS = ("instance_id", "hostname", "local_hostname", "ip_address")


def resolve_placeholders(template: str, identity: Mapping[str, str | None]) -> str | None:
    """Replace the agent's {instance_id}/{hostname}/{local_hostname}/{ip_address}; None if one is unknown."""
    result = template
    for name in PLACEHOLDERS:
        token = "{" + name + "}"
        if token in result:
            value = identity.get(name)
            if not value:
                return None
            result = result.replace(token, value)
    return result


def stream_names(outputs: Mapping[str, str], identity: Mapping[str, str | None],
                 fallback_group: str | None) -> list[tuple[str, str]] | str:
    """(group, stream) pairs the host's own config names for audit.log, or a reason string."""
    pairs: list[tuple[str, str]] = []
    for t in audit_log_targets(outputs):
        # The agent's own default group is the file path up to its final period (concrete paths only).
        agent_default = t.file_path.rsplit(".", 1)[0] if not any(c in t.file_path for c in "*?") else None
        group_template = t.log_group or fallback_group or agent_default
        if not group_template:
            return f"{t.source_file}: no log_group_name and no fallback log_group param"
        group = resolve_placeholders(group_template, identity)
        stream = resolve_placeholders(t.log_stream or "{instance_id}", identity)
        if group is None or stream is None:
            return f"{t.source_file}: cannot resolve placeholders in {group_template!r}/{t.log_stream!r}"
        pairs.append((group, stream))
    return pairs or "the agent config does not ship audit.log"


def judge_stream_freshness(observed: Mapping[tuple[str, str], dict | None], now: datetime,
                           max_age_minutes: int) -> Verdict:
    """observed: (group, stream) → describe_log_streams entry (None when missing). Fresh if any is fresh."""
    if not observed:
        return Verdict.failed("no log stream to check")
    reasons = []
    now_ms = now.timestamp() * 1000
    for (group, stream), info in observed.items():
        if info is None:
            reasons.append(f"stream {group}/{stream} does not exist")
            continue
        last = max(int(info.get("lastIngestionTime") or 0), int(info.get("lastEventTimestamp") or 0))
        if not last:
            reasons.append(f"stream {group}/{stream} has never received an event")
            continue
        age_min = (now_ms - last) / 60000
        if age_min <= max_age_minutes:
            return Verdict.passed(f"{group}/{stream} last event {age_min:.0f} min ago (limit {max_age_minutes})")
        reasons.append(f"{group}/{stream} last event {age_min:.0f} min ago (limit {max_age_minutes})")
    return Verdict.failed("; ".join(reasons)[:300])


def hostname_from(outputs: Mapping[str, str]) -> str | None:
    return _kv_lines(outputs.get("host_identity", "")).get("hostname") or None

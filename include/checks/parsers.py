"""Pure parsers: probe output text → Verdict. No I/O; every function is unit-tested on real-looking output.

Parsers match whole lines or parsed values, never substrings, so output that merely contains a passing
phrase ("enabled 1" inside an error message) cannot fool them.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from include.checks.sections import split_files
from include.core.status import Verdict

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
    line = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    return line[:limit]


def _kv_lines(text: str) -> dict[str, str]:
    """`key: value` lines → dict (first occurrence wins)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
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
    for line in text.split("\n"):
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
    """`auditctl -l` → rule lines; [] for "No rules". Old auditctl (audit 1.x/2.0, RHEL 5/6) prints
    `LIST_RULES: exit,always watch=/etc/passwd perm=wa key=identity` instead of the -a/-w form."""
    return [ln.strip() for ln in text.split("\n")
            if ln.strip().startswith(("-a ", "-w ", "-A ", "LIST_RULES:"))]


AMAZON_LINUX_DEFAULT = ("-a never,task is the stock Amazon Linux rule file (/etc/audit/rules.d/audit.rules): it "
                        "turns off syscall and file auditing for every process, so nothing is recorded")


def auditd_rules_loaded(outputs: Mapping[str, str]) -> Verdict:
    """PASS only when at least one loaded rule records events (not empty, not only `never` rules)."""
    from include.checks.rulesets import effective_rules

    text = outputs["auditctl_rules"]
    if unusable := _unusable(text, "auditctl: not found", "auditctl not found"):
        return unusable
    rules = parse_rules(text)
    # Whole-line match: sudo may print a warning line (e.g. "unable to resolve host") before the answer.
    if not rules:
        if "No rules" in {ln.strip() for ln in text.split("\n")} or not text.strip():
            return Verdict.failed("no audit rules loaded (auditctl -l: No rules)")
        return Verdict.error(f"unparseable auditctl -l output: {_first_line(text)!r}")
    recording, why_not = effective_rules(rules)
    if why_not == "task-never":
        return Verdict.failed(f"{len(rules)} rule(s) loaded but none records: {AMAZON_LINUX_DEFAULT}. Remove that "
                              "line (or the file) and load real rules with `augenrules --load`")
    if why_not == "exclude-all":
        return Verdict.failed(f"{len(rules)} rule(s) loaded, but the exclude rules (`-a …,exclude -F msgtype…`) drop "
                              "every record type before it is logged: nothing is recorded. Delete them (`auditctl -d` "
                              "with the same rule) and narrow them to the types you mean to drop")
    if not recording:
        return Verdict.failed(f"{len(rules)} rule(s) loaded but every one is a `never` rule or shadowed by one: "
                              "nothing is recorded")
    return Verdict.passed(f"{len(recording)} of {len(rules)} rules loaded record events")


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
    """file_path as the agent matches it: its logfile input compiles it with telegraf's globpath, which is
    gobwas/glob with '/' as separator: `**` any depth, `*` and `?` within a segment, `[abc]`, `[!a-c]` classes and
    `{a,b}` alternatives. A bracket or brace left open is a literal character here (that glob does not compile,
    so the agent tails nothing: the entry never covers audit.log in practice, and neither does it here)."""
    return re.compile(_glob_part(pattern))


def _glob_part(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (close := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1:close]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\").replace("^", "\\^") + "]")
            i = close + 1
        elif c == "{" and (close := _closing_brace(pattern, i)) > 0:
            out.append("(?:" + "|".join(_glob_part(alt) for alt in _split_alternatives(pattern[i + 1:close])) + ")")
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _closing_brace(pattern: str, start: int) -> int:
    depth = 0
    for j in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[j], 0)
        if depth == 0:
            return j
    return -1


def _split_alternatives(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        current.append(ch)
    return parts + ["".join(current)]


def covers(file_path: str, target: str = AUDIT_LOG) -> bool:
    return bool(_glob_to_regex(file_path).fullmatch(target))


class AgentConfigError(ValueError):
    """An agent config with a value of the wrong type: the host is ERROR for the agent checks, with why."""


def _optional_str(entry: Mapping, key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise AgentConfigError(f"{where}: {key} is {type(value).__name__}, not a string")
    return value or None


def parse_agent_configs(section_text: str) -> tuple[list[LogTarget], list[str]]:
    """All collect_list entries across the main JSON and the .d fragments, plus per-file notes.

    Raises AgentConfigError for a JSON config the agent itself would refuse (a collect_list that is not a
    list, a group name that is not a string): guessing what such a host ships would be a guess, not proof."""
    targets: list[LogTarget] = []
    problems: list[str] = []
    # The agent merges the main JSON and every .d/ file into one config before translating (its config-translator
    # merges the files' maps; collect_list arrays are appended), so a global logs.log_stream_name applies to every
    # file's entries, and two different ones are a merge conflict the agent refuses.
    global_streams: dict[str, str] = {}
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
        if logs is None:
            continue
        if not isinstance(logs, dict):
            raise AgentConfigError(f"{path}: logs is {type(logs).__name__}, not an object")
        if default_stream := _optional_str(logs, "log_stream_name", f"{path}: logs"):
            global_streams[path] = default_stream
        collected = logs.get("logs_collected") or {}
        files = collected.get("files") if isinstance(collected, dict) else None
        if not isinstance(collected, dict) or not isinstance(files or {}, dict):
            raise AgentConfigError(f"{path}: logs.logs_collected.files is not an object")
        entries = (files or {}).get("collect_list") or []
        if not isinstance(entries, list):
            raise AgentConfigError(f"{path}: collect_list is {type(entries).__name__}, not a list")
        for n, entry in enumerate(entries):
            where = f"{path}: collect_list[{n}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("file_path"), str):
                raise AgentConfigError(f"{where} has no string file_path")
            targets.append(LogTarget(
                source_file=path,
                file_path=entry["file_path"],
                log_group=_optional_str(entry, "log_group_name", where),
                log_stream=_optional_str(entry, "log_stream_name", where),
            ))
        targets += _journald_targets(path, collected.get("journald"))
    if len(set(global_streams.values())) > 1:
        raise AgentConfigError("logs.log_stream_name differs between " + ", ".join(sorted(global_streams))
                               + ": the agent refuses to merge them")
    default = next(iter(global_streams.values()), None)
    return [t if t.log_stream or not default else LogTarget(t.source_file, t.file_path, t.log_group, default)
            for t in targets], problems


def _journald_targets(path: str, journald) -> list[LogTarget]:
    """logs_collected.journald.collect_list: journal units the agent ships to a (group, stream) too. Never audit.log
    itself, but a stream they share with it proves nothing about audit.log. Odd entries are skipped: they ship
    nothing we could mistake for audit.log."""
    entries = journald.get("collect_list") if isinstance(journald, dict) else None
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("log_group_name"), str):
            units = entry.get("units") if isinstance(entry.get("units"), list) else []
            stream = entry.get("log_stream_name")
            out.append(LogTarget(path, "journald" + (f" ({', '.join(map(str, units))})" if units else ""),
                                 entry["log_group_name"], stream if isinstance(stream, str) and stream else None))
    return out


def audit_log_targets(outputs: Mapping[str, str]) -> list[LogTarget]:
    targets, _ = parse_agent_configs(outputs["cwagent_config"])
    return [t for t in targets if covers(t.file_path)]


def cwagent_ships_audit_log(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["cwagent_config"]
    try:
        targets, problems = parse_agent_configs(text)
    except AgentConfigError as exc:
        return Verdict.error(f"agent config unusable: {exc}"[:300])
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


@dataclass(frozen=True)
class StreamTarget:
    """A (group, stream) the running agent ships audit.log to, and where we read that."""

    group: str
    stream: str
    source: str  # "translated TOML" or the JSON file's path
    # Other collected files the agent ships into this same (group, stream): its freshness then proves nothing
    # about audit.log (only the canary, an audit record, can).
    shared_with: tuple[str, ...] = ()


def _with_sharers(targets: list[StreamTarget], others: list[tuple[str, str, str]]) -> list[StreamTarget]:
    """others: (file_path, group, stream) of the entries that do not collect audit.log."""
    return [StreamTarget(t.group, t.stream, t.source,
                         tuple(sorted({f for f, g, st in others if (g, st) == (t.group, t.stream)})))
            for t in targets]


def _toml_default_stream(text: str) -> str | None:
    """The translated config's output-level default stream ([[outputs.cloudwatchlogs]] log_stream_name): what a
    file_config entry without its own log_stream_name ships to."""
    outputs = (_load_toml(text) or {}).get("outputs")
    first = (outputs.get("cloudwatchlogs") or [None])[0] if isinstance(outputs, dict) else None
    first = first if isinstance(first, dict) else {}
    value = first.get("log_stream_name")
    return value if isinstance(value, str) and value else None


def stream_targets(outputs: Mapping[str, str], identity: Mapping[str, str | None],
                   fallback_group: str | None) -> list[StreamTarget] | Verdict:
    """Where audit.log goes as the running agent resolves it, or the verdict when that cannot be known.

    The translated TOML is what the agent runs (placeholders already resolved there): when it exists, it alone
    decides. Without one, the JSON with placeholders resolved the way the agent would."""
    toml_text = outputs.get("cwagent_toml")
    if toml_text is None:
        return Verdict.error("the translated agent config was not seen")
    if toml_text.strip() != "toml: not found":
        entries = _toml_log_files(toml_text)
        if entries is None:
            return Verdict.error("amazon-cloudwatch-agent.toml is not valid TOML")
        default_stream = _toml_default_stream(toml_text) or identity.get("instance_id")
        targets, others = [], []
        for e in entries:
            if not isinstance(e.get("file_path"), str):
                continue
            group, stream = e.get("log_group_name"), e.get("log_stream_name") or default_stream
            if not covers(e["file_path"]):
                others.append((e["file_path"], group, stream))
                continue
            if not isinstance(group, str) or not group or not isinstance(stream, str) or not stream:
                return Verdict.error("translated config: an audit.log entry without a string log_group_name/"
                                     "log_stream_name")
            targets.append(StreamTarget(group, stream, "translated TOML"))
        return _with_sharers(targets, others) or Verdict.failed(
            "the running (translated) agent config does not ship audit.log: re-run fetch-config")
    return json_stream_targets(outputs, identity, fallback_group)


def json_stream_targets(outputs: Mapping[str, str], identity: Mapping[str, str | None],
                        fallback_group: str | None) -> list[StreamTarget] | Verdict:
    """What the JSON config names for audit.log, placeholders resolved the way the agent would."""
    try:
        entries, _ = parse_agent_configs(outputs["cwagent_config"])
    except AgentConfigError as exc:
        return Verdict.error(f"agent config unusable: {exc}"[:300])
    targets, others = [], []
    for t in entries:
        # The agent's own default group is the file path up to its final period (concrete paths only).
        agent_default = t.file_path.rsplit(".", 1)[0] if not any(c in t.file_path for c in "*?[{") else None
        group_template = t.log_group or fallback_group or agent_default
        group = resolve_placeholders(group_template, identity) if group_template else None
        stream = resolve_placeholders(t.log_stream or "{instance_id}", identity)
        if not covers(t.file_path):
            others.append((t.file_path, group, stream))
            continue
        if not group_template:
            return Verdict.error(f"{t.source_file}: no log_group_name and no fallback log_group param")
        if group is None or stream is None:
            return Verdict.error(f"{t.source_file}: cannot resolve placeholders in {group_template!r}/{t.log_stream!r}")
        targets.append(StreamTarget(group, stream, t.source_file))
    return _with_sharers(targets, others) or Verdict.failed("the agent config does not ship audit.log")


def stream_names(outputs: Mapping[str, str], identity: Mapping[str, str | None],
                 fallback_group: str | None) -> list[tuple[str, str]] | str:
    """(group, stream) pairs the JSON config names, or why there are none."""
    targets = json_stream_targets(outputs, identity, fallback_group)
    return targets.detail if isinstance(targets, Verdict) else [(t.group, t.stream) for t in targets]


INSTANCE_ID = re.compile(r"(?<![0-9A-Za-z])i-(?:[0-9a-f]{17}|[0-9a-f]{8})(?![0-9A-Za-z])")


def _names(text: str, token: str) -> bool:
    return bool(token) and re.search(rf"(?<![0-9A-Za-z]){re.escape(token)}(?![0-9A-Za-z])", text) is not None


GENERIC_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "localhost4", "localhost6", "ubuntu", "debian",
                               "amazon", "amzn", "centos", "rhel", "linux", "ec2-user", "host", "server"})
EC2_IP_NAME = re.compile(r"^ip-(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})(?:\..*)?$")


def own_hostname(hostname: str | None, private_ip: str) -> bool:
    """Whether the hostname the host reports can name its stream: not a stock name every image has, and not
    an EC2-style `ip-a-b-c-d` name of another address. Unique hostnames are the operator's promise; the
    instance id (or the canary) is the proof."""
    if not hostname or len(hostname) < 2 or hostname.lower().split(".", 1)[0] in GENERIC_HOSTNAMES:
        return False
    m = EC2_IP_NAME.match(hostname.lower())
    return m is None or ".".join(m.groups()) == private_ip


def attribution_problem(target: StreamTarget, trusted: Mapping[str, str | None]) -> str | None:
    """Why the stream is not provably this host's, or None when its group or stream identifies it.

    `trusted` holds what EC2 says of the instance (instance_id, private_ip, private_dns), and the hostname the
    host reports, which counts only when it is specific to it (own_hostname): a host (or an image baked with
    someone else's config) cannot make another's stream its own."""
    if target.shared_with:
        return (f"stream {target.group}/{target.stream} also receives {', '.join(target.shared_with)} from this "
                "host's agent: its freshness proves nothing about audit.log; give audit.log a stream of its own, or "
                "run with canary=true")
    me = trusted.get("instance_id") or ""
    text = f"{target.group}\n{target.stream}"
    others = sorted({m for m in INSTANCE_ID.findall(text) if m != me})
    if others and not _names(text, me):
        return (f"stream {target.group}/{target.stream} names instance {others[0]}, not this host ({me}): a config "
                "baked into an image? Its freshness proves nothing for this host; use {instance_id} in "
                "log_stream_name, or run with canary=true")
    ip = trusted.get("private_ip") or ""
    dns = trusted.get("private_dns") or ""
    tokens = [me, ip, f"ip-{ip.replace('.', '-')}" if ip else "", dns, dns.split(".", 1)[0] if dns else ""]
    tokens.append(trusted.get("hostname") if own_hostname(trusted.get("hostname"), ip) else "")
    if any(_names(text, t) for t in tokens if t):
        return None
    return (f"stream '{target.stream}' in {target.group} is shared by hosts: its freshness proves nothing for this "
            "host; use {instance_id} in log_stream_name, or run with canary=true")


# Set on a stream description that comes from the run's listing of its group (include/logs/stream_index.py) rather
# than a lookup of its own: when the listing began (ISO), and that the stream was not in it.
LISTED_AT = "listedAt"
ABSENT = "listedAbsent"


def last_event_ms(info: Mapping) -> int:
    """When a stream last received anything, as DescribeLogStreams describes it (0: never)."""
    return max(int(info.get("lastIngestionTime") or 0), int(info.get("lastEventTimestamp") or 0))


def judge_stream_freshness(observed: Mapping[tuple[str, str], dict | None], now: datetime,
                           max_age_minutes: int, not_own: Mapping[tuple[str, str], str] | None = None) -> Verdict:
    """observed: (group, stream) → describe_log_streams entry (None when missing). PASS when one of the host's
    OWN streams is fresh; `not_own` maps streams that are not provably this host's to why (never a PASS)."""
    if not observed:
        return Verdict.failed("no log stream to check")
    not_own = not_own or {}
    reasons = []
    now_ms = now.timestamp() * 1000
    for (group, stream), info in observed.items():
        if (group, stream) in not_own:
            reasons.append(not_own[(group, stream)])
            continue
        # A listing's view is older than a lookup's: its FAIL says so, and it never makes a PASS.
        listed = f"as listed at {info[LISTED_AT]}" if info and info.get(LISTED_AT) else ""
        if info is None or info.get(ABSENT):
            reasons.append(f"stream {group}/{stream} does not exist" + (f" ({listed})" if listed else ""))
            continue
        last = last_event_ms(info)
        if not last:
            reasons.append(f"stream {group}/{stream} has never received an event" + (f" ({listed})" if listed else ""))
            continue
        age_min = (now_ms - last) / 60000
        if age_min <= max_age_minutes and not listed:
            return Verdict.passed(f"{group}/{stream} last event {age_min:.0f} min ago (limit {max_age_minutes})",
                                  stream=(group, stream))
        reasons.append(f"{group}/{stream} last event {age_min:.0f} min ago (limit {max_age_minutes}"
                       + (f", {listed})" if listed else ")"))
    return Verdict.failed("; ".join(reasons)[:400])


def hostname_from(outputs: Mapping[str, str]) -> str | None:
    return _kv_lines(outputs.get("host_identity", "")).get("hostname") or None


# ---------------------------------------------------------------- deeper auditd checks

@dataclass(frozen=True)
class AuditdConf:
    """auditd.conf as auditd applies it. Defaults are the compiled-in ones of audit-userspace's
    src/auditd-config.c `clear_config()`: a key the file omits takes these values, not the stock file's."""

    write_logs: bool = True
    log_file: str = AUDIT_LOG
    log_format: str = "raw"
    num_logs: int = 0
    max_log_file: int = 0
    max_log_file_action: str = "ignore"
    space_left_action: str = "ignore"
    admin_space_left_action: str = "ignore"
    disk_full_action: str = "ignore"
    disk_error_action: str = "syslog"


_CONF_KEYS = {f.name for f in fields(AuditdConf)}
_CONF_NUMBERS = {"num_logs", "max_log_file"}


def parse_conf(text: str) -> dict[str, str]:
    """auditd.conf `key = value [option]` lines → {key (lower): value (lower)}, applied in file order.

    As auditd-config.c's load_config(): a line whose first token starts with '#' is a comment, keywords match
    case-insensitively (kw_lookup uses strcasecmp), each keyword's parser simply overwrites the setting, so a
    repeated key's LAST value wins, and the `exec` actions take their program as a second token (the option)."""
    values: dict[str, str] = {}
    for line in text.split("\n"):
        if line.lstrip().startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        key, tokens = key.strip().lower(), rest.split()
        if sep and key and tokens:
            values[key] = tokens[0] if key == "log_file" else tokens[0].lower()  # a path keeps its case
            # log_format_parser(): NOLOG sets write_logs = 0 at that point of the file (a later write_logs wins).
            if key == "log_format" and values[key] == "nolog":
                values["write_logs"] = "no"
    return values


def read_auditd_conf(values: Mapping[str, str]) -> AuditdConf:
    """The settings auditd runs with, from parse_conf's values. A number auditd would refuse (not all digits)
    is kept as -1, so the check fails on it instead of guessing."""
    known: dict = {k: v for k, v in values.items() if k in _CONF_KEYS}
    for key in _CONF_NUMBERS & known.keys():
        known[key] = int(known[key]) if known[key].isdigit() else -1
    if "write_logs" in known:
        known["write_logs"] = known["write_logs"] != "no"
    return AuditdConf(**known)


def auditd_config(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["auditd_conf"]
    if unusable := _unusable(text, "auditd.conf: not found", "/etc/audit/auditd.conf not found"):
        return unusable
    if text.strip().endswith("No such file or directory"):
        return Verdict.failed("/etc/audit/auditd.conf not found")
    values = parse_conf(text)
    if not values:
        return Verdict.error(f"unparseable auditd.conf: {_first_line(text)!r}")
    conf = read_auditd_conf(values)

    def unset(key: str) -> str:  # say when a failing value is auditd's default, not something the file says
        return "" if key in values else " (unset: auditd's compiled-in default)"

    problems = []
    if not conf.write_logs:
        problems.append("write_logs=no (or log_format=NOLOG): auditd writes no log file, so nothing reaches the agent")
    if conf.log_file != AUDIT_LOG:
        problems.append(f"log_file={conf.log_file}: records go there, not to {AUDIT_LOG}, the file the agent must ship")
    if conf.max_log_file < 1:
        problems.append(f"max_log_file={conf.max_log_file if conf.max_log_file >= 0 else 'invalid'}{unset('max_log_file')}")
    action = conf.max_log_file_action
    if action not in ("keep_logs", "rotate"):
        problems.append(f"max_log_file_action={action}{unset('max_log_file_action')}: logs are lost or ignored")
    elif action == "rotate" and conf.num_logs < 2:
        problems.append(f"rotate with num_logs={conf.num_logs}{unset('num_logs')} keeps no history")
    for key in ("space_left_action", "admin_space_left_action", "disk_full_action", "disk_error_action"):
        if getattr(conf, key) == "ignore":
            problems.append(f"{key}=ignore{unset(key)}")
    if problems:
        return Verdict.failed("auditd.conf: " + "; ".join(problems))
    return Verdict.passed(f"max_log_file={conf.max_log_file} MB, {action}" + (f" ×{conf.num_logs}" if action == "rotate" else "")
                          + f", disk_full_action={conf.disk_full_action}")


def auditd_immutable(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["auditctl_status"]
    if unusable := _unusable(text, "auditctl: not found", "auditctl not found"):
        return unusable
    status = parse_auditctl_status(text)
    if status is None:
        return Verdict.error(f"unparseable auditctl -s output: {_first_line(text)!r}")
    if status["enabled"] == 2:
        return Verdict.passed("audit configuration is locked (enabled 2): rules cannot change until reboot")
    return Verdict.failed(f"enabled={status['enabled']}: rules can be changed or deleted at run time (add -e 2 last)")


def auditd_boot_params(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["kernel_cmdline"].strip()
    if not text or "\n" in text:
        return Verdict.error(f"unexpected /proc/cmdline: {_first_line(text)!r}")
    params = dict(tok.partition("=")[::2] for tok in text.split())
    problems = []
    if params.get("audit") != "1":
        problems.append(f"audit={params.get('audit', 'unset')} (processes started before auditd are not audited)")
    backlog = params.get("audit_backlog_limit", "")
    if not backlog.isdigit() or int(backlog) < 8192:
        problems.append(f"audit_backlog_limit={backlog or 'unset'} (< 8192)")
    if problems:
        return Verdict.failed("kernel command line: " + "; ".join(problems))
    return Verdict.passed(f"audit=1 audit_backlog_limit={backlog}")


@dataclass(frozen=True)
class PathPerms:
    mode: int
    owner: str
    group: str
    kind: str  # d or f
    path: str


def _mode_bits(symbolic: str) -> int:
    """"-rw-r-----" → 0o640 (setuid/sticky letters count as their x bit; ACL/SELinux suffix ignored)."""
    bits = 0
    for i, char in enumerate(symbolic[1:10]):
        if char not in "-STL":
            bits |= 1 << (8 - i)
    return bits


def parse_perms(text: str, directory: str = "/var/log/audit") -> list[PathPerms]:
    """`ls -la <directory>` → the directory itself (".") and its regular files."""
    out = []
    for line in text.split("\n"):
        parts = line.split(None, 8)
        if len(parts) < 9 or not re.fullmatch(r"[-dlcbps][-rwxsStTl]{9}[.+@]?", parts[0]):
            continue
        name = parts[8]
        if name == "..":
            continue
        kind = parts[0][0].replace("-", "f")
        path = directory if name == "." else f"{directory}/{name}"
        out.append(PathPerms(_mode_bits(parts[0]), parts[2], parts[3], kind, path))
    return out


def auditd_log_permissions(outputs: Mapping[str, str]) -> Verdict:
    text = outputs["audit_log_perms"]
    if unusable := _unusable(text, "audit log dir: not found", "/var/log/audit does not exist"):
        return unusable
    entries = parse_perms(text)
    if not entries:
        return Verdict.error(f"unparseable listing: {_first_line(text)!r}")
    problems = []
    for e in entries:
        if e.kind == "d" and e.mode & 0o027:
            problems.append(f"{e.path} is {e.mode:o} (want 750 or stricter)")
        elif e.kind == "f" and e.mode & 0o137:
            problems.append(f"{e.path} is {e.mode:o} (want 640 or stricter)")
        if e.owner != "root":
            problems.append(f"{e.path} owned by {e.owner}")
    if problems:
        return Verdict.failed("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return Verdict.passed(f"{len(entries)} paths root-owned with safe modes")


def auditd_backlog_lost(outputs: Mapping[str, str]) -> Verdict:
    first, second = outputs["auditctl_status"], outputs["auditctl_status_end"]
    if unusable := _unusable(first, "auditctl: not found", "auditctl not found"):
        return unusable
    a, b = parse_auditctl_status(first), parse_auditctl_status(second)
    if a is None or b is None or "lost" not in a or "lost" not in b:
        return Verdict.error("auditctl -s did not report the lost counter twice")
    if b["lost"] > a["lost"]:
        return Verdict.failed(f"the kernel is dropping audit events now: lost {a['lost']} → {b['lost']} during the check"
                              f" (backlog_limit {a.get('backlog_limit', '?')})")
    note = f"; {a['lost']} lost since boot" if a["lost"] else ""
    return Verdict.passed(f"lost counter steady at {b['lost']}{note}")


def rules_cover(outputs: Mapping[str, str], rule_groups) -> Verdict:
    from include.checks.rulesets import missing_groups

    text = outputs["auditctl_rules"]
    if unusable := _unusable(text, "auditctl: not found", "auditctl not found"):
        return unusable
    rules = parse_rules(text)
    if not rules:
        return Verdict.failed("no audit rules loaded")
    missing = missing_groups(rules, rule_groups)
    if missing:
        return Verdict.failed(f"loaded rules miss {len(missing)}/{len(rule_groups)} groups: {', '.join(missing)}")
    return Verdict.passed(f"all {len(rule_groups)} rule groups covered by {len(rules)} loaded rules")


# ---------------------------------------------------------------- deeper agent checks

@functools.lru_cache(maxsize=4)
def _load_toml(text: str) -> dict | None:
    """The translated config, parsed once per host although three readers need it (cached by its text; callers
    only read it). None: not valid TOML."""
    import tomllib

    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return None


def _toml_log_files(text: str) -> list[dict] | None:
    data = _load_toml(text)
    if data is None:
        return None
    inputs = data.get("inputs") or {}
    logfiles = inputs.get("logfile") or [] if isinstance(inputs, dict) else None
    if not isinstance(logfiles, list):
        return None  # a shape the agent would not run: unparseable, not "ships nothing"
    entries = []
    for logfile in logfiles:
        configs = logfile.get("file_config") or [] if isinstance(logfile, dict) else None
        if not isinstance(configs, list):
            return None
        entries.extend(e for e in configs if isinstance(e, dict))
    return entries


def _run_as_user(section_text: str) -> str:
    for _, content in split_files(section_text):
        try:
            agent = (json.loads(content) or {}).get("agent") or {}
        except (ValueError, AttributeError):
            continue
        if isinstance(agent, dict) and agent.get("run_as_user"):
            return str(agent["run_as_user"])
    return "root"


def _allowed(user: str, entry: PathPerms, bit: int) -> bool:
    """Whether `user` has permission `bit` (4 read, 1 search) — by owner, by a group named like the user
    (the agent's usual `cwagent` group), or by others. Other group memberships cannot be seen from here."""
    if user == "root" or entry.mode & bit:
        return True
    if entry.owner == user:
        return bool(entry.mode & (bit << 6))
    return entry.group == user and bool(entry.mode & (bit << 3))


def cwagent_config_valid(outputs: Mapping[str, str]) -> Verdict:
    status_text = outputs["cwagent_status"]
    if status_text.strip() == "ctl: not found":
        return Verdict.not_applicable("agent not installed")
    if problem := _sudo_problem(status_text):
        return Verdict.error(problem)
    problems = []
    status = parse_agent_status(status_text) or {}
    if status.get("configstatus") not in (None, "configured"):
        problems.append(f"configstatus: {status.get('configstatus')}")
    json_ships = bool(audit_log_targets(outputs))
    toml_text = outputs["cwagent_toml"]
    if toml_text.strip() == "toml: not found":
        problems.append("no translated config (amazon-cloudwatch-agent.toml): fetch-config never ran")
    else:
        entries = _toml_log_files(toml_text)
        if entries is None:
            return Verdict.error("amazon-cloudwatch-agent.toml is not valid TOML")
        audit = [e for e in entries if isinstance(e.get("file_path"), str) and covers(e["file_path"])]
        if json_ships and not audit:
            problems.append("the JSON ships audit.log but the running (translated) config does not: re-run fetch-config")
        for e in audit:
            stream = str(e.get("log_stream_name", ""))
            if "UNKNOWN" in stream.upper():
                problems.append(f"stream name {stream!r}: the agent could not read instance metadata")
    user = _run_as_user(outputs["cwagent_config"])
    if user != "root":
        perms = parse_perms(outputs.get("audit_log_perms", ""))
        logs = [e for e in perms if e.path.endswith("/audit.log")]
        dirs = [e for e in perms if e.kind == "d"]
        if logs and not (all(_allowed(user, e, 4) for e in logs) and all(_allowed(user, d, 1) for d in dirs)):
            problems.append(f"run_as_user {user!r} cannot read /var/log/audit/audit.log")
    if problems:
        return Verdict.failed("; ".join(problems))
    return Verdict.passed(f"configured; translated config agrees; runs as {user}")


def auditd_rules_cover(outputs: Mapping[str, str], options) -> Verdict:
    """rules_cover against the fleet's chosen rule set (CheckOptions.rule_groups)."""
    return rules_cover(outputs, options.rule_groups)


def canary_token(outputs: Mapping[str, str]) -> str | Verdict:
    """The marker this host wrote into its audit log, or why there is none (ERROR/FAIL verdict)."""
    from include.checks.probes import CANARY_RE

    text = outputs.get("canary")
    if text is None:
        return Verdict.error("no canary output")
    value = _kv_lines(text).get("canary", "")
    m = CANARY_RE.fullmatch(value)
    if m:
        return m.group(0)
    if problem := _sudo_problem(value.removeprefix("failed: ")):
        return Verdict.error(problem)
    if value == "auditctl not found":
        return Verdict.failed("auditctl not found: no canary could be written")
    return Verdict.error(f"canary not written: {value[:160]!r}")

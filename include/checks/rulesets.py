"""Audit rule groups a fleet must have loaded (CIS benchmark section 6.3.3 / 4.1.3 families).

A group is covered when a loaded rule carries one of its keys, or watches one of its paths, or audits
one of its syscalls: auditors accept equivalent rules under site-specific keys. Rule sets are data: pick
a built-in by name (param `rule_set`) or point to a JSON file with the same shape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RuleGroup:
    name: str
    keys: tuple[str, ...] = ()
    watches: tuple[str, ...] = ()  # a watched path (or a path prefix ending in /)
    syscalls: tuple[str, ...] = ()

CIS: tuple[RuleGroup, ...] = (
    RuleGroup("scope", ("scope",), ("/etc/sudoers", "/etc/sudoers.d")),
    RuleGroup("actions", ("actions", "sudo_log"), ("/var/log/sudo.log",)),
    RuleGroup("time-change", ("time-change", "time_change"), ("/etc/localtime",),
              ("adjtimex", "settimeofday", "clock_settime", "stime")),
    RuleGroup("system-locale", ("system-locale", "system_locale"),
              ("/etc/issue", "/etc/issue.net", "/etc/hosts", "/etc/hostname", "/etc/sysconfig/network", "/etc/network"),
              ("sethostname", "setdomainname")),
    RuleGroup("MAC-policy", ("MAC-policy", "mac_policy"), ("/etc/selinux", "/etc/apparmor", "/etc/apparmor.d",
                                                           "/usr/share/selinux")),
    RuleGroup("logins", ("logins",), ("/var/log/lastlog", "/var/run/faillock", "/var/log/faillog", "/var/log/tallylog")),
    RuleGroup("session", ("session",), ("/var/run/utmp", "/var/log/wtmp", "/var/log/btmp", "/run/utmp")),
    RuleGroup("perm_mod", ("perm_mod",), (), ("chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat",
                                                "setxattr", "lsetxattr", "fsetxattr", "removexattr")),
    RuleGroup("access", ("access",), (), ("creat", "open", "openat", "truncate", "ftruncate")),
    RuleGroup("identity", ("identity",), ("/etc/group", "/etc/passwd", "/etc/gshadow", "/etc/shadow",
                                         "/etc/security/opasswd", "/etc/nsswitch.conf")),
    RuleGroup("mounts", ("mounts",), (), ("mount",)),
    RuleGroup("delete", ("delete",), (), ("unlink", "unlinkat", "rename", "renameat")),
    RuleGroup("modules", ("modules", "kernel_modules"), ("/sbin/insmod", "/sbin/rmmod", "/sbin/modprobe",
                                                         "/usr/sbin/insmod", "/usr/sbin/rmmod", "/usr/sbin/modprobe",
                                                         "/usr/bin/kmod"),
              ("init_module", "finit_module", "delete_module")),
)

# A smaller set for fleets that only promise identity, privilege and time integrity.
MINIMAL: tuple[RuleGroup, ...] = tuple(g for g in CIS if g.name in ("identity", "scope", "time-change", "logins"))

BUILT_IN: dict[str, tuple[RuleGroup, ...]] = {"cis": CIS, "minimal": MINIMAL}

def load_rule_set(name_or_path: str) -> tuple[RuleGroup, ...]:
    """A built-in name, or a JSON file: [{"name": ..., "keys": [...], "watches": [...], "syscalls": [...]}].

    The file is checked against RULE_SET_SCHEMA (include/settings/schema.py): a non-empty list of groups, each
    with a name and at least one non-empty list of keys, watches (absolute paths) or syscalls, names unique.
    One ValueError names the file, the entry (#n) and the field of every problem."""
    from include.settings.schema import RULE_SET_SCHEMA, file_problems, read_json_file

    if name_or_path in BUILT_IN:
        return BUILT_IN[name_or_path]
    if not isinstance(name_or_path, str) or not name_or_path or not Path(name_or_path).is_file():
        raise ValueError(f"rule_set must be one of {sorted(BUILT_IN)} or a JSON file path, not {name_or_path!r}")
    data = read_json_file("rule_set", name_or_path)
    problems = file_problems("rule_set", name_or_path, data, RULE_SET_SCHEMA)
    if not problems:
        seen: dict[str, int] = {}
        for n, g in enumerate(data, 1):
            if g["name"] in seen:
                problems.append(f"rule_set {name_or_path}: entry #{n}, field name: {g['name']!r} repeats entry "
                                f"#{seen[g['name']]}")
            seen.setdefault(g["name"], n)
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(RuleGroup(g["name"], tuple(g.get("keys", ())), tuple(g.get("watches", ())),
                           tuple(g.get("syscalls", ()))) for g in data)

@dataclass(frozen=True)
class LoadedRule:
    key: str | None
    watch: str | None  # -w path, or -F path=/-F dir= of a syscall rule
    syscalls: frozenset[str]  # empty (no -S) or containing "all" = every syscall
    action: str  # always / never
    filter: str = "exit"  # the kernel list: exit, task, user, exclude, filesystem, io_uring
    fields: frozenset[str] = frozenset()  # its conditions, as "name=value" / "name!=value" (key excluded)


_LISTS = ("exit", "task", "user", "exclude", "filesystem", "io_uring", "entry")


def _action_and_list(value: str) -> tuple[str, str]:
    parts = value.split(",")
    action = next((p for p in parts if p in ("always", "never")), "always")
    filter_ = next((p for p in parts if p in _LISTS), "exit")
    return action, filter_


def _parse_old_rule(line: str) -> LoadedRule:
    """`LIST_RULES: exit,always watch=/etc/passwd perm=wa key=identity` (audit 1.x/2.0)."""
    fields = line[len("LIST_RULES:"):].split()
    values = dict(f.split("=", 1) for f in fields if "=" in f)
    action, filter_ = _action_and_list(fields[0]) if fields else ("always", "exit")
    syscalls = frozenset(s for s in values.get("syscall", "").split(",") if s)
    conditions = frozenset(f for f in fields[1:] if "=" in f and not f.startswith(("key=", "syscall=")))
    return LoadedRule(values.get("key"), values.get("watch") or values.get("path") or values.get("dir"), syscalls,
                      action, filter_, conditions)


def parse_rule(line: str) -> LoadedRule | None:
    """One `auditctl -l` line (as the kernel reports it) → its list, action, key, watched path, syscalls."""
    if line.startswith("LIST_RULES:"):
        return _parse_old_rule(line)
    tokens = line.split()
    if not tokens or tokens[0] not in ("-a", "-w", "-A"):
        return None
    key = watch = None
    syscalls: set[str] = set()
    conditions: set[str] = set()
    action, filter_ = "always", "exit"
    i = 0
    while i < len(tokens):
        token, value = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("-a", "-A"):
            action, filter_ = _action_and_list(value)
        elif token == "-w":
            watch = value
            conditions.add(f"path={value}")
        elif token == "-p":
            conditions.add(f"perm={value}")
        elif token == "-k":
            key = value
        elif token == "-S":
            syscalls.update(s for s in value.split(",") if s)
        elif token == "-F":
            name, _, field_value = value.partition("=")
            if name == "key":
                key = field_value
            else:
                conditions.add(value)
                if name.rstrip("!") in ("path", "dir"):
                    watch = field_value
        i += 2 if token.startswith("-") and token != "-e" else 1
    return LoadedRule(key, watch, frozenset(syscalls), action, filter_, frozenset(conditions))


def _shadows(never: LoadedRule, rule: LoadedRule) -> frozenset[str] | None:
    """The syscalls of `rule` that an earlier `never` rule of the same list matches first (first match wins):
    None when it matches none of them. A never rule matches every event of `rule` when its conditions are a
    subset of `rule`'s (fewer conditions match more). A never rule that matches only part of a later rule (other
    conditions) leaves it recording the rest, and is not counted as shadowing it."""
    if never.filter != rule.filter or not never.fields <= rule.fields:
        return None
    if _every_syscall(never):
        return frozenset({"*"})
    if _every_syscall(rule):  # a watch / all-syscall rule is only partly shadowed: still records the rest
        return None
    return (never.syscalls & rule.syscalls) or None


def _every_syscall(rule: LoadedRule) -> bool:
    return not rule.syscalls or "all" in rule.syscalls


# Record types as `auditctl -l` names them (libaudit's msg_typetab; linux/audit.h numbers): the ones an exclude
# rule is likely to compare against. A name not here makes its rule "conditional": never counted as dropping.
_MSGTYPES = {"USER": 1005, "LOGIN": 1006, "USER_AUTH": 1100, "USER_ACCT": 1101, "USER_MGMT": 1102, "CRED_ACQ": 1103,
             "CRED_DISP": 1104, "USER_START": 1105, "USER_END": 1106, "USER_AVC": 1107, "USER_LOGIN": 1112,
             "USER_LOGOUT": 1113, "USER_CMD": 1123, "DAEMON_START": 1200, "DAEMON_END": 1201, "SYSCALL": 1300,
             "PATH": 1302, "CONFIG_CHANGE": 1305, "CWD": 1307, "EXECVE": 1309, "EOE": 1320, "PROCTITLE": 1327,
             "AVC": 1400, "ANOM_ABEND": 1701, "KERNEL": 2000}
_RECORD_TYPES = frozenset(range(1000, 3000))  # kernel and user-space record types (linux/audit.h)
_COMPARE = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
_MSGTYPE_FIELD = re.compile(r"^msgtype(!=|<=|>=|=|<|>)(\w+)$")


def _excluded_types(rules: list[LoadedRule]) -> set[int]:
    """Record types the exclude list drops. The kernel drops a record that any exclude-list rule matches, whatever
    the rule's action (kernel/auditfilter.c, audit_filter(): `if (e->rule.action == AUDIT_NEVER || listtype ==
    AUDIT_FILTER_EXCLUDE) ret = 0`); a rule matches only when all its fields do, and one without fields matches
    nothing there (`result` starts at 0). Only rules whose every field is a msgtype comparison are evaluated:
    others depend on the process and are never taken to drop everything."""
    dropped: set[int] = set()
    for r in rules:
        if r.filter != "exclude" or not r.fields:
            continue
        tests = []
        for f in r.fields:
            m = _MSGTYPE_FIELD.match(f)
            value = None if m is None else int(m.group(2)) if m.group(2).isdigit() else _MSGTYPES.get(m.group(2))
            if value is None:
                break
            tests.append((_COMPARE[m.group(1)], value))
        else:
            dropped.update(t for t in _RECORD_TYPES if all(op(t, v) for op, v in tests))
    return dropped


def effective_rules(rule_lines: list[str]) -> tuple[list[LoadedRule], str | None]:
    """Loaded rules that record, in kernel order, with syscalls an earlier `never` rule takes removed.

    Returns (rules, reason) where reason is "task-never" when an unconditional `-a never,task` means no
    process gets an audit context at all (the stock Amazon Linux rule file), or "exclude-all" when the exclude
    list drops every record type: then nothing records."""
    parsed = [r for r in (parse_rule(line) for line in rule_lines) if r is not None]
    if _excluded_types(parsed) >= _RECORD_TYPES:
        return [], "exclude-all"
    for r in parsed:
        if r.filter == "task":
            if r.action == "always":
                break  # an earlier task rule that audits decides first
            if not r.fields:
                return [], "task-never"
    out: list[LoadedRule] = []
    nevers: list[LoadedRule] = []
    for r in parsed:
        if r.action == "never":
            nevers.append(r)
            continue
        if r.filter not in ("exit", "user", "filesystem", "io_uring", "entry"):
            continue  # task/exclude rules do not record events themselves
        remaining = set(r.syscalls)
        shadowed = False
        for n in nevers:
            taken = _shadows(n, r)
            if taken is None:
                continue
            if "*" in taken:
                shadowed = True
                break
            remaining -= taken
            if not remaining:
                shadowed = True
                break
        if not shadowed:
            out.append(LoadedRule(r.key, r.watch, frozenset(remaining), r.action, r.filter, r.fields))
    return out, None


def _watch_matches(watched: str, wanted: str) -> bool:
    watched, wanted = watched.rstrip("/"), wanted.rstrip("/")
    # A watch on a directory covers the files under it (e.g. -w /etc/sudoers.d/ covers its files).
    return watched == wanted or wanted.startswith(watched + "/")


def missing_groups(rule_lines: list[str], groups: tuple[RuleGroup, ...]) -> list[str]:
    """Groups no recording rule covers; `never` rules that come first and shadow a rule are honoured."""
    rules, _ = effective_rules(rule_lines)
    missing = []
    for group in groups:
        covered = any(
            (r.key is not None and r.key in group.keys)
            or (r.watch is not None and any(_watch_matches(r.watch, w) for w in group.watches))
            or (r.syscalls & set(group.syscalls))
            for r in rules)
        if not covered:
            missing.append(group.name)
    return missing

KEY_IN_TEXT = re.compile(r"(?:-k |key=)(\S+)")

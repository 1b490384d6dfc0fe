"""Fixed shell snippets ("probes") run on each host, and the one script that runs them all.

Why one script: every SSH round trip costs a channel open and, on real sshd, ~100+ ms; running all probes
in one `/bin/sh -s` session makes a host cost one round trip (see docs/PERFORMANCE.md).

Safety rules (shared/CONTRACT.md): every snippet is a constant; no instance data (tags, names, ids) is
ever interpolated into it. Privileged reads use `sudo -n` with absolute paths, so a missing sudoers rule
shows up as an error instead of a password prompt that hangs.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

# Markers carry a random per-host nonce (`frame`), so text a host writes (a config file the script cats) can
# never open, close or repeat a section: it cannot know the nonce when the file was written.
MARK = "@@ec2audit"
NONCE_VAR = "EC2AUDIT_NONCE"
NONCE_RE = re.compile(r"[0-9a-f]{32}")
# The batch's canary tag (`frame`), written into each canary line so the batch can search CloudWatch Logs for
# its own canaries only (include/logs/canary.py): ours, 16 hex digits, never instance data.
TAG_VAR = "EC2AUDIT_CANARY_TAG"
TAG_RE = re.compile(r"[0-9a-f]{16}")
NO_TAG = "0" * 16  # framed when no canary search follows (the tag is then never looked for)
CWA_DIR = "/opt/aws/amazon-cloudwatch-agent"
CWA_CTL = f"{CWA_DIR}/bin/amazon-cloudwatch-agent-ctl"
SCRIPT_VERSION = "1"


@dataclass(frozen=True)
class Probe:
    name: str
    command: str  # POSIX sh; may use the helpers defined in PRELUDE
    last: bool = False  # run after every other probe (a second reading of a counter)


# Helpers available to every probe. `first_x` picks the first executable path, so sudo always gets an
# absolute path whichever of /usr/sbin or /sbin the distro uses.
PRELUDE = f"""\
exec 2>&1
LC_ALL=C; export LC_ALL
PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
first_x() {{ for p in "$@"; do if [ -x "$p" ]; then echo "$p"; return 0; fi; done; return 1; }}
pkg_query() {{  # $1 = rpm package name, $2 = deb package name
  if [ -f /var/lib/dpkg/status ] && command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='${{Package}} ${{Version}} ${{Status}}\\n' "$2" 2>&1
  elif command -v rpm >/dev/null 2>&1; then rpm -q "$1" 2>&1
  else echo "package-db: none"; fi
}}
AUDITCTL=$(first_x /usr/sbin/auditctl /sbin/auditctl)
section() {{ printf '\\n{MARK}-%s-section %s\\n' "${NONCE_VAR}" "$1"; }}
# stdin → stdout, at most $1 bytes; past that, a nonce-marked line says the section was cut (never silent).
capped() {{ awk -v max="$1" -v mark="{MARK}-${NONCE_VAR}-cut" '{{ n += length($0) + 1; if (n > max) {{ print mark; exit }} print }}'; }}
"""

AUDITD_INSTALLED = Probe(
    "auditd_installed",
    """\
printf 'binary: '; first_x /usr/sbin/auditd /sbin/auditd || echo none
printf 'package: '; pkg_query audit auditd""",
)

AUDITCTL_STATUS = Probe(
    "auditctl_status",
    """\
if [ -n "$AUDITCTL" ]; then sudo -n "$AUDITCTL" -s 2>&1 | capped 65536; else echo 'auditctl: not found'; fi""",
)

AUDITCTL_RULES = Probe(
    "auditctl_rules",
    """\
if [ -n "$AUDITCTL" ]; then sudo -n "$AUDITCTL" -l 2>&1 | capped 262144; else echo 'auditctl: not found'; fi""",
)

AUDITD_SERVICE = Probe(
    "auditd_service",
    """\
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo 'init: systemd'
  printf 'is-active: '; systemctl is-active auditd 2>&1 | head -n 1
  printf 'is-enabled: '; systemctl is-enabled auditd 2>&1 | head -n 1
else
  echo 'init: other'
fi
printf 'pidof: '; pidof auditd 2>/dev/null || echo none""",
)

CWAGENT_INSTALLED = Probe(
    "cwagent_installed",
    f"""\
printf 'ctl: '; first_x {CWA_CTL} || echo none
printf 'package: '; pkg_query amazon-cloudwatch-agent amazon-cloudwatch-agent""",
)

CWAGENT_STATUS = Probe(
    "cwagent_status",
    f"""\
if [ -x {CWA_CTL} ]; then sudo -n {CWA_CTL} -a status 2>&1 | capped 65536; else echo 'ctl: not found'; fi""",
)

# Every config file the agent merges: the main JSON and each fragment in amazon-cloudwatch-agent.d/.
CWAGENT_CONFIG = Probe(
    "cwagent_config",
    f"""\
for f in {CWA_DIR}/etc/amazon-cloudwatch-agent.json {CWA_DIR}/etc/amazon-cloudwatch-agent.d/*; do
  [ -f "$f" ] || continue
  printf '{MARK}-%s-file %s\\n' "${NONCE_VAR}" "$f"
  cat "$f" 2>&1 | capped 262144
  echo
done""",
)

AUDITCTL_STATUS_END = Probe(
    "auditctl_status_end",
    """\
if [ -n "$AUDITCTL" ]; then sudo -n "$AUDITCTL" -s 2>&1 | capped 65536; else echo 'auditctl: not found'; fi""",
    last=True,
)

# /etc/audit is 0750 root on most distros: even testing for the file needs sudo.
AUDITD_CONF = Probe(
    "auditd_conf",
    """\
sudo -n /bin/cat /etc/audit/auditd.conf 2>&1 | capped 65536""",
)

KERNEL_CMDLINE = Probe("kernel_cmdline", "cat /proc/cmdline 2>&1 | capped 8192")

# The audit log directory and its files, with owners and modes (0700/0750 dir: listing it needs sudo).
AUDIT_LOG_PERMS = Probe(
    "audit_log_perms",
    """\
if [ -d /var/log/audit ]; then sudo -n /bin/ls -la /var/log/audit 2>&1 | capped 65536
else echo 'audit log dir: not found'; fi""",
)

CWAGENT_TOML = Probe(
    "cwagent_toml",
    f"""\
if [ -f {CWA_DIR}/etc/amazon-cloudwatch-agent.toml ]; then cat {CWA_DIR}/etc/amazon-cloudwatch-agent.toml 2>&1 | capped 262144
else echo 'toml: not found'; fi""",
)

# Opt-in (param canary): a unique marker written into the audit log by the kernel audit itself. The token
# is made on the host, so the script stays a constant; it follows the batch's tag (framed, ours), and the batch
# searches CloudWatch Logs for its tag.
CANARY_TOKEN = "ec2-audit-canary"
# The line's shape: the token, the batch's tag (ours), the host-made id. Parsed from the host's output
# (parsers.canary_token) and found in CloudWatch Logs events (include/logs/canary.py).
CANARY_RE = re.compile(rf"{re.escape(CANARY_TOKEN)} ([0-9a-f]{{16}}) ([0-9a-fA-F-]{{16,64}})")
# Where a delivered canary stands in audit.log: the USER record `auditctl -m` makes, as one line that starts with
# the record (an optional `node=` prefix from name_format), the marker opening its msg='…' text. The same words
# inside a sudo, auth or syslog line ("COMMAND=/usr/sbin/auditctl -m ec2-audit-canary …") are not delivery.
# audit 3.x's `auditctl -m` writes the text as msg='text=…' (measured here, audit 3.0.9); older ones without `text=`.
AUDIT_CANARY_RE = re.compile(r"(?:node=\S+ )?type=USER msg=audit\(\d+(?:\.\d+)?:\d+\): (?:[^']*? )?msg='(?:text=)?"
                             rf"({CANARY_RE.pattern})[ ']")


def audit_record_canary(message: str) -> str | None:
    """The canary token of a CloudWatch Logs event that is this marker's audit record, else None."""
    m = AUDIT_CANARY_RE.match(message)
    return m.group(1) if m else None


CANARY = Probe(
    "canary",
    f"""\
N=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')
if [ -z "$AUDITCTL" ]; then echo 'canary: auditctl not found'
elif out=$(sudo -n "$AUDITCTL" -m "{CANARY_TOKEN} ${TAG_VAR} $N" 2>&1); then echo "canary: {CANARY_TOKEN} ${TAG_VAR} $N"
else echo "canary: failed: $out" | capped 300; fi""",
)

HOST_IDENTITY = Probe(
    "host_identity",
    """\
printf 'hostname: '; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
grep -E '^(ID|VERSION_ID|PRETTY_NAME)=' /etc/os-release 2>/dev/null""",
)

# The privileged commands the probes run, exactly (a sudoers rule per command, no wildcard but the canary's text).
SUDO_COMMANDS: tuple[str, ...] = (
    "/usr/sbin/auditctl -s", "/usr/sbin/auditctl -l", "/sbin/auditctl -s", "/sbin/auditctl -l",
    f"{CWA_CTL} -a status", "/bin/cat /etc/audit/auditd.conf", "/bin/ls -la /var/log/audit",
)
SUDO_CANARY_COMMANDS: tuple[str, ...] = (f"/usr/sbin/auditctl -m {CANARY_TOKEN} *", f"/sbin/auditctl -m {CANARY_TOKEN} *")


def sudoers(user: str, canary: bool = True) -> str:
    """The sudoers allowlist for the login user: the one source for the docs and the test hosts."""
    rule = f"{user} ALL=(root) NOPASSWD: " + ", ".join(SUDO_COMMANDS) + "\n"
    if canary:
        rule += ("# only with canary=true: writes one USER record with the run's marker\n"
                 f"{user} ALL=(root) NOPASSWD: " + ", ".join(SUDO_CANARY_COMMANDS) + "\n")
    return rule


SCRIPT_END = f"printf '\\n{MARK}-%s-end\\n' \"${NONCE_VAR}\"\n"  # the script's last line


def build_script(probes: tuple[Probe, ...]) -> str:
    """The combined script sent on stdin to `/bin/sh -s`: constant for a given catalogue (which probes run is
    the catalogue's to say: include/checks/catalogue.py HOST_PROBES)."""
    parts = [PRELUDE]
    for probe in sorted(probes, key=lambda p: p.last):  # stable: catalogue order, `last` probes at the end
        parts.append(f"section {probe.name}\n{probe.command}\n")
    parts.append(SCRIPT_END)
    return "".join(parts)


def new_nonce() -> str:
    return secrets.token_hex(16)


def new_tag() -> str:
    return secrets.token_hex(8)


def frame(script: str, nonce: str, tag: str = NO_TAG) -> bytes:
    """What is sent to one host: the constant script, preceded by the nonce its markers carry and the batch's
    canary tag.

    Both are ours (random hex digits, checked here), never instance data, so the script stays a fixed string
    in every way that matters to the shell."""
    if not NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 32 lowercase hex digits")
    if not TAG_RE.fullmatch(tag):
        raise ValueError("canary tag must be 16 lowercase hex digits")
    return f"{NONCE_VAR}={nonce}\n{TAG_VAR}={tag}\n{script}".encode()


def section_mark(nonce: str) -> str:
    return f"{MARK}-{nonce}-section"


def file_mark(nonce: str) -> str:
    return f"{MARK}-{nonce}-file"


def end_mark(nonce: str) -> str:
    return f"{MARK}-{nonce}-end"

"""What remediation may do for each check: a fixed, idempotent list of steps, or "manual" and why.

Referenced from the catalogue (`Check.fix`); planned by include/remediation/plan.py; run (later) through the
remediation login, never the daily audit's read-only one (`remediation_sudoers` below, beside
`probes.sudoers`, which stays unchanged).

Safety rules, the same as the probes' (include/checks/probes.py):
- every step's `command` is a module constant: no instance data (id, name, tag, address) and no run
  parameter is ever put into it. Over SSH the command string is parsed by the remote login shell, so only
  constants may go there;
- privileged work is `sudo -n /absolute/path args`, each one an exact sudoers line (`Fix.sudo`), so a
  missing rule fails at once instead of prompting; guards (is systemd there? is the kernel immutable?) run
  unprivileged in a fixed `/bin/sh -c '…'` whose leaves are those sudo lines — sudo never gets a shell;
- the one run parameter a fix needs, the CloudWatch log group, is validated (`valid_log_group`) and reaches the
  host only as DATA: `agent_fragment` renders the JSON with json.dumps, and it is written to the host as the
  step's stdin by `sudo -n /usr/bin/tee <fixed path>`. tee copies bytes; no shell ever reads them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from include.checks.probes import CWA_CTL, CWA_DIR

# Step.stdin values: what the planner renders for a step's stdin ("" = the step reads nothing).
STDIN_AGENT_FRAGMENT = "agent_fragment"  # agent_fragment(log_group): the run's `log_group` param, as JSON data


@dataclass(frozen=True)
class Step:
    command: str  # a constant: the exact command line sent to the host
    stdin: str = ""  # "" or STDIN_AGENT_FRAGMENT


@dataclass(frozen=True)
class Fix:
    """Either `steps` (automatic: idempotent, safe to re-run) or `manual` (the reason no automatic fix exists)."""

    name: str
    steps: tuple[Step, ...] = ()
    manual: str = ""
    sudo: tuple[str, ...] = ()  # the exact privileged commands the steps run with `sudo -n` (sudoers lines)
    summary: str = ""  # one line for the approval screen and CHECKS.md

    def __post_init__(self) -> None:
        if bool(self.steps) == bool(self.manual):
            raise ValueError(f"fix {self.name}: either steps or a manual reason, not both or neither")
        if self.manual and self.sudo:
            raise ValueError(f"fix {self.name}: a manual fix runs nothing")

    @property
    def automatic(self) -> bool:
        return bool(self.steps)

    @property
    def needs_log_group(self) -> bool:
        return any(s.stdin == STDIN_AGENT_FRAGMENT for s in self.steps)


def manual(name: str, reason: str) -> Fix:
    return Fix(name=name, manual=reason)


def _sh(script: str) -> str:
    """A fixed multi-line script as one command: `/bin/sh -c '…'` (the login shell may not be POSIX sh)."""
    if "'" in script:
        raise ValueError("a fixed script must not contain a single quote")
    return f"/bin/sh -c '{script}'"


# --------------------------------------------------------------- auditd

SYSTEMCTL_ENABLE_AUDITD = "/usr/bin/systemctl enable --now auditd"
SERVICE_START_AUDITD = "/usr/sbin/service auditd start"
AUDITCTL_STATUS = ("/usr/sbin/auditctl -s", "/sbin/auditctl -s")
AUGENRULES_LOAD = "/usr/sbin/augenrules --load"

# systemd where it runs (the probe's own test: /run/systemd/system), else the SysV `service` wrapper. Both are
# no-ops on a running (and enabled) auditd. Exit 3: nothing this fix may do applies here.
AUDITD_START = Fix(
    name="auditd.start",
    summary="start auditd and enable it at boot (systemd), or start it with `service` where there is no systemd",
    steps=(Step(_sh(f"""exec 2>&1
if [ -d /run/systemd/system ] && [ -x /usr/bin/systemctl ]; then sudo -n {SYSTEMCTL_ENABLE_AUDITD}
elif [ -x /usr/sbin/service ]; then sudo -n {SERVICE_START_AUDITD}
else echo "remediation: neither systemd nor /usr/sbin/service: start auditd by hand"; exit 3; fi""")),),
    sudo=(SYSTEMCTL_ENABLE_AUDITD, SERVICE_START_AUDITD),
)

IMMUTABLE_REASON = ("the kernel audit configuration is immutable (enabled 2): loaded rules change only at boot — "
                    "reboot the host (rules.d is loaded at boot)")

# The guard is inside the fixed script, so it holds at run time even if the host changed since the evidence:
# an immutable kernel (enabled 2) refuses `augenrules --load`; we say so (exit 4) instead of trying.
AUGENRULES = Fix(
    name="auditd.load_rules",
    summary="load the rules on disk (/etc/audit/rules.d) with `augenrules --load`, unless the kernel is immutable",
    steps=(Step(_sh(f"""exec 2>&1
if [ -x /usr/sbin/auditctl ]; then st=$(sudo -n {AUDITCTL_STATUS[0]}); else st=$(sudo -n {AUDITCTL_STATUS[1]}); fi || {{ echo "remediation: auditctl -s failed: $st"; exit 1; }}
if printf "%s\\n" "$st" | grep -q "^enabled 2$"; then echo "remediation: {IMMUTABLE_REASON}"; exit 4; fi
sudo -n {AUGENRULES_LOAD}""")),),
    sudo=(*AUDITCTL_STATUS, AUGENRULES_LOAD),
)

AUDIT_LOG_CHOWN = "/bin/chown -R root /var/log/audit"
AUDIT_LOG_CHMOD = "/bin/chmod -R g-w,o-rwx /var/log/audit"

# Owner root, no group write, nothing for others (the directory keeps its x bits); the group is left as is
# (auditd.conf's log_group may be adm or similar on purpose).
AUDIT_LOG_PERMS = Fix(
    name="auditd.log_permissions",
    summary="`chown -R root` and `chmod -R g-w,o-rwx` on /var/log/audit (group kept)",
    steps=(Step(f"sudo -n {AUDIT_LOG_CHOWN}"), Step(f"sudo -n {AUDIT_LOG_CHMOD}")),
    sudo=(AUDIT_LOG_CHOWN, AUDIT_LOG_CHMOD),
)

# --------------------------------------------------------------- CloudWatch agent

CWA_TOML = f"{CWA_DIR}/etc/amazon-cloudwatch-agent.toml"
CWA_START = f"{CWA_CTL} -a start"

# `-a start` runs the agent's existing translated config (the TOML): it changes no configuration. Where no TOML
# exists the ctl would apply its *default* config instead, so the guard refuses (exit 3). `fetch-config` is
# never used: it makes the given file the agent's ONLY config and deletes the team's files in
# amazon-cloudwatch-agent.d/.
CWAGENT_START = Fix(
    name="cwagent.start",
    summary="start the agent on its existing translated config (`amazon-cloudwatch-agent-ctl -a start`); "
            "refused where the agent was never configured",
    steps=(Step(_sh(f"""exec 2>&1
if [ ! -f {CWA_TOML} ]; then echo "remediation: the agent has no translated config ({CWA_TOML}): configure it by hand"; exit 3; fi
sudo -n {CWA_START}""")),),
    sudo=(CWA_START,),
)

# Our fragment is staged at a fixed path outside amazon-cloudwatch-agent.d/ (the translator reads only the main
# JSON and that directory), then added with `append-config`, which keeps every existing config, validates the
# merged result, stores ours as amazon-cloudwatch-agent.d/file_ec2-audit-auditlog.json and restarts (-s).
# Re-running replaces that same file: idempotent. `remove-config -c file:<stage>` takes it out again.
FRAGMENT_STAGE = f"{CWA_DIR}/etc/ec2-audit-auditlog.json"
FRAGMENT_MANAGED = f"{CWA_DIR}/etc/amazon-cloudwatch-agent.d/file_ec2-audit-auditlog.json"
AUDIT_LOG = "/var/log/audit/audit.log"
TEE_FRAGMENT = f"/usr/bin/tee {FRAGMENT_STAGE}"
CWA_APPEND_FRAGMENT = f"{CWA_CTL} -a append-config -m ec2 -s -c file:{FRAGMENT_STAGE}"

CWAGENT_AUDIT_FRAGMENT = Fix(
    name="cwagent.audit_log_fragment",
    summary=f"add a managed agent config collecting {AUDIT_LOG} into the run's `log_group` (append-config; "
            "the team's own JSON is never edited)",
    steps=(
        # stdin = agent_fragment(log_group): the log group travels as bytes on stdin, never in this command line.
        Step(f"sudo -n {TEE_FRAGMENT} >/dev/null", stdin=STDIN_AGENT_FRAGMENT),
        Step(f"sudo -n {CWA_APPEND_FRAGMENT}"),
    ),
    sudo=(TEE_FRAGMENT, CWA_APPEND_FRAGMENT),
)

# CloudWatch Logs CreateLogGroup: 1–512 of [.-_/#A-Za-z0-9]; "aws/" is reserved for AWS services.
LOG_GROUP_RE = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")


def valid_log_group(name: object) -> str:
    if not isinstance(name, str) or not LOG_GROUP_RE.fullmatch(name) or name.startswith("aws/"):
        raise ValueError(f"not a CloudWatch log group name: {name!r} (1-512 of A-Z a-z 0-9 . - _ / #, not aws/…)")
    return name


def agent_fragment(log_group: str) -> str:
    """The managed fragment's content: JSON rendered here (json.dumps), so the name is data, never syntax."""
    return json.dumps({"logs": {"logs_collected": {"files": {"collect_list": [{
        "file_path": AUDIT_LOG, "log_group_name": valid_log_group(log_group),
        "log_stream_name": "{instance_id}"}]}}}}, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------- manual ones

AUDITD_INSTALL = manual("auditd.install", "installing a package changes the host's software: do it through the "
                        "image or configuration management (`dnf install audit` / `apt-get install auditd`)")
AUDITD_CONFIG = manual("auditd.config", "auditd.conf is the team's retention and disk-full policy: edit it by hand "
                       "(the values the check wants are in its remediation) and `service auditd reload`")
AUDITD_RULES_CIS = manual("auditd.rules_cis", "which rules to record is a site decision: add the missing groups to "
                          "/etc/audit/rules.d/ by hand, then `augenrules --load`")
AUDITD_IMMUTABLE = manual("auditd.immutable", "`-e 2` takes effect only at boot and then forbids any rule change "
                          "until the next reboot: add it last in rules.d and reboot in a maintenance window")
AUDITD_BOOT_PARAMS = manual("auditd.boot_params", "kernel parameters change only through the boot loader: add "
                            "`audit=1 audit_backlog_limit=8192` to GRUB (grubby / update-grub) and reboot")
AUDITD_BACKLOG = manual("auditd.backlog", "lost events need tuning (backlog size, rate limit, noisy rules) "
                        "judged on the host's load: no fixed change is safe everywhere")
CWAGENT_INSTALL = manual("cwagent.install", "installing a package changes the host's software: do it through the "
                         "image or configuration management")
CWAGENT_CONFIG = manual("cwagent.config", "a stale translation, an unknown stream or a run_as_user that cannot read "
                        "the audit log is the team's config to correct; a restart alone may not fix it")
CWAGENT_DELIVERY = manual("cwagent.delivery", "delivery depends on the instance role, the network and the log group: "
                          "fix the agent checks first, then follow the remediation; re-verify shows the result")

AUTOMATIC: tuple[Fix, ...] = (AUDITD_START, AUGENRULES, AUDIT_LOG_PERMS, CWAGENT_START, CWAGENT_AUDIT_FRAGMENT)

_SUDOERS_SPECIAL = re.compile(r"([\\,:=])")
_LOGIN_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def remediation_commands() -> tuple[str, ...]:
    return tuple(dict.fromkeys(cmd for fix in AUTOMATIC for cmd in fix.sudo))


def remediation_sudoers(login: str) -> str:
    """The sudoers rule for the remediation login (a separate user; the audit's `probes.sudoers` stays read-only).

    Each command is exact; sudoers needs `\\`, `,`, `:` and `=` in arguments escaped."""
    if not _LOGIN_RE.fullmatch(login):
        raise ValueError(f"not a login name: {login!r}")
    cmds = ", ".join(_SUDOERS_SPECIAL.sub(r"\\\1", c) for c in remediation_commands())
    return f"{login} ALL=(root) NOPASSWD: {cmds}\n"

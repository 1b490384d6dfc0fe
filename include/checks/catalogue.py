"""The check catalogue: one declarative entry per check. Add a check by adding an entry (and its probe).

Check ids are part of the outside contract (shared/CONTRACT.md) and never change meaning.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from include.checks import parsers, probes
from include.checks.probes import Probe
from include.checks.sections import ScriptOutput
from include.models import Verdict


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: str  # critical | high | medium | low
    probes: tuple[Probe, ...]  # what runs on the host (fixed strings)
    parser: Callable[[Mapping[str, str]], Verdict] | None  # None: judged on the AWS side
    remediation: str
    references: tuple[str, ...] = ()
    aws_side: bool = False

    @property
    def command(self) -> str:
        return "\n".join(p.command for p in self.probes)


CATALOGUE: tuple[Check, ...] = (
    Check(
        id="auditd.installed",
        title="auditd is installed",
        severity="high",
        probes=(probes.AUDITD_INSTALLED,),
        parser=parsers.auditd_installed,
        remediation="Install the audit daemon: `dnf install audit` (AL2023/RHEL) or `apt-get install auditd` (Ubuntu/Debian).",
        references=("CIS Amazon Linux 2023 6.3.1.1", "CIS RHEL 9 6.3.1.1", "CIS Ubuntu 22.04 4.1.1.1"),
    ),
    Check(
        id="auditd.running",
        title="kernel audit is enabled and auditd is running",
        severity="critical",
        probes=(probes.AUDITCTL_STATUS, probes.AUDITD_SERVICE),
        parser=parsers.auditd_running,
        remediation="Start auditd (`service auditd start`; on systemd `systemctl start auditd`) and check `auditctl -s` shows enabled 1 and a pid.",
        references=("CIS Amazon Linux 2023 6.3.1.2", "NIST 800-53 AU-12"),
    ),
    Check(
        id="auditd.enabled_on_boot",
        title="auditd starts at boot",
        severity="high",
        probes=(probes.AUDITD_SERVICE,),
        parser=parsers.auditd_enabled_on_boot,
        remediation="`systemctl enable auditd`.",
        references=("CIS Amazon Linux 2023 6.3.1.2", "CIS Ubuntu 22.04 4.1.1.2"),
    ),
    Check(
        id="auditd.rules_loaded",
        title="audit rules are loaded in the kernel",
        severity="critical",
        probes=(probes.AUDITCTL_STATUS, probes.AUDITCTL_RULES),
        parser=parsers.auditd_rules_loaded,
        remediation="Put rules in /etc/audit/rules.d/*.rules and load them with `augenrules --load`; verify with `auditctl -l`.",
        references=("CIS Amazon Linux 2023 6.3.3", "NIST 800-53 AU-2"),
    ),
    Check(
        id="cwagent.installed",
        title="the Amazon CloudWatch agent is installed",
        severity="high",
        probes=(probes.CWAGENT_INSTALLED,),
        parser=parsers.cwagent_installed,
        remediation="Install the agent: `dnf install amazon-cloudwatch-agent` or the .deb from AWS; see the CloudWatch agent install guide.",
        references=("AWS CloudWatch agent: Installing the CloudWatch agent",),
    ),
    Check(
        id="cwagent.running",
        title="the CloudWatch agent is running",
        severity="critical",
        probes=(probes.CWAGENT_STATUS,),
        parser=parsers.cwagent_running,
        remediation="`sudo amazon-cloudwatch-agent-ctl -a start` (after `-a fetch-config`); check its log in /opt/aws/amazon-cloudwatch-agent/logs/.",
        references=("AWS CloudWatch agent: Starting the CloudWatch agent",),
    ),
    Check(
        id="cwagent.ships_audit_log",
        title="the agent config ships /var/log/audit/audit.log",
        severity="critical",
        probes=(probes.CWAGENT_CONFIG,),
        parser=parsers.cwagent_ships_audit_log,
        remediation="Add a logs.logs_collected.files.collect_list entry with file_path /var/log/audit/audit.log, then `amazon-cloudwatch-agent-ctl -a fetch-config -s`.",
        references=("AWS CloudWatch agent configuration file: logs section",),
    ),
    Check(
        id="cwagent.log_stream_fresh",
        title="the host's audit log stream received an event recently",
        severity="critical",
        probes=(probes.CWAGENT_CONFIG, probes.HOST_IDENTITY),
        parser=None,
        aws_side=True,
        remediation="Check the agent log for delivery errors, the instance role's logs:PutLogEvents permission, and that auditd writes to /var/log/audit/audit.log.",
        references=("AWS CloudWatch Logs DescribeLogStreams",),
    ),
)

BY_ID: dict[str, Check] = {c.id: c for c in CATALOGUE}
HOST_PROBES: tuple[Probe, ...] = tuple(dict.fromkeys(p for c in CATALOGUE for p in c.probes))
SCRIPT: str = probes.build_script(HOST_PROBES)


def check_meta() -> dict[str, dict[str, str]]:
    """What the report needs to explain a failure."""
    return {c.id: {"title": c.title, "severity": c.severity, "remediation": c.remediation} for c in CATALOGUE}


def missing_probes(check: Check, output: ScriptOutput) -> list[str]:
    return [p.name for p in check.probes if output.get(p.name) is None]


def evaluate_host_checks(output: ScriptOutput) -> dict[str, Verdict]:
    """Run every host-side parser. A parser never crashes the host: a bug or junk becomes ERROR."""
    verdicts: dict[str, Verdict] = {}
    for check in CATALOGUE:
        if check.aws_side:
            continue
        missing = missing_probes(check, output)
        if missing:
            verdicts[check.id] = Verdict.error(f"no complete output for {', '.join(missing)}")
            continue
        try:
            verdicts[check.id] = check.parser({p.name: output.sections[p.name] for p in check.probes})
        except Exception as exc:  # noqa: BLE001 - one odd output must not stop the fleet
            verdicts[check.id] = Verdict.error(f"parser failed: {type(exc).__name__}: {exc}"[:200])
    return verdicts

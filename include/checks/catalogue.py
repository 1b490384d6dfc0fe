"""The check catalogue: one declarative entry per check. Add a check by adding an entry (and its probe).

Check ids are part of the outside contract (shared/CONTRACT.md) and never change meaning.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from include.checks import aws_side, fixes, parsers, probes, rulesets
from include.checks.fixes import Fix
from include.checks.probes import Probe
from include.checks.sections import ScriptOutput
from include.core.status import Verdict


@dataclass(frozen=True)
class CheckOptions:
    """Per-fleet choices some parsers need (params of the run)."""

    rule_groups: tuple[rulesets.RuleGroup, ...] = field(default_factory=lambda: rulesets.CIS)


# The frameworks a check can evidence (Check.frameworks keys), in the order they are shown everywhere.
CIS_AL2023 = "CIS AL2023"  # CIS Amazon Linux 2023 Benchmark, section numbers as in `references`
NIST = "NIST 800-53r5"  # NIST SP 800-53 Rev. 5, AU family
PCI = "PCI DSS 4.0.1"  # PCI DSS v4.0.1, requirement 10
ISO = "ISO 27001:2022"  # ISO/IEC 27001:2022 Annex A
SOC2 = "SOC 2"  # AICPA Trust Services Criteria (2017, rev. 2022)
FRAMEWORKS: tuple[str, ...] = (CIS_AL2023, NIST, PCI, ISO, SOC2)

AUDIT_TRAIL = "audit-trail"  # is the audit trail recorded and delivered? (the default profile)
CIS = "cis"  # hardening depth on top of it (include/verify/profiles.py)


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    severity: str  # critical | high | medium | low
    profile: str  # the smallest built-in profile whose status it decides: audit-trail or cis
    probes: tuple[Probe, ...]  # what runs on the host (fixed strings)
    parser: Callable[[Mapping[str, str]], Verdict] | None  # None: judged on the AWS side, by `judge`
    remediation: str
    references: tuple[str, ...] = ()
    rationale: str = ""
    aws_side: bool = False
    takes_options: bool = False  # parser(outputs, options) instead of parser(outputs)
    judge: Callable[[aws_side.HostFacts, aws_side.AwsView], "Verdict | aws_side.Canary"] | None = None
    # framework (one of FRAMEWORKS) → the requirement ids this check evidences (a failure is a gap in each)
    frameworks: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    # what remediation may do when this check fails (include/checks/fixes.py): fixed steps, or manual and why
    fix: Fix | None = None

    @property
    def command(self) -> str:
        return "\n".join(p.command for p in self.probes)


CATALOGUE: tuple[Check, ...] = (
    Check(
        id="auditd.installed",
        title="auditd is installed",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITD_INSTALLED,),
        parser=parsers.auditd_installed,
        remediation="Install the audit daemon: `dnf install audit` (AL2023/RHEL) or `apt-get install auditd` (Ubuntu/Debian).",
        references=("CIS Amazon Linux 2023 6.3.1.1", "CIS RHEL 9 6.3.1.1", "CIS Ubuntu 22.04 4.1.1.1"),
        rationale="Without the audit daemon, kernel audit events are not written anywhere durable.",
        frameworks={CIS_AL2023: ("6.3.1.1",), NIST: ("AU-2", "AU-12"), PCI: ("10.2.1",), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_INSTALL,
    ),
    Check(
        id="auditd.running",
        title="kernel audit is enabled and auditd is running",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITCTL_STATUS, probes.AUDITD_SERVICE),
        parser=parsers.auditd_running,
        remediation="Start auditd (`service auditd start`; on systemd `systemctl start auditd`) and check `auditctl -s` shows enabled 1 and a pid.",
        references=("CIS Amazon Linux 2023 6.3.1.2", "NIST 800-53 AU-12"),
        rationale="Rules only record while the kernel audit is enabled and a daemon is receiving events.",
        frameworks={CIS_AL2023: ("6.3.1.2",), NIST: ("AU-12",), PCI: ("10.2.1", "10.7.2"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_START,
    ),
    Check(
        id="auditd.enabled_on_boot",
        title="auditd starts at boot",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITD_SERVICE,),
        parser=parsers.auditd_enabled_on_boot,
        remediation="`systemctl enable auditd`.",
        references=("CIS Amazon Linux 2023 6.3.1.2", "CIS Ubuntu 22.04 4.1.1.2"),
        rationale="A daemon that does not start at boot leaves a silent gap after every reboot.",
        frameworks={CIS_AL2023: ("6.3.1.2",), NIST: ("AU-12",), PCI: ("10.2.1",), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_START,
    ),
    Check(
        id="auditd.rules_loaded",
        title="audit rules are loaded in the kernel",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITCTL_STATUS, probes.AUDITCTL_RULES),
        parser=parsers.auditd_rules_loaded,
        remediation="Put rules in /etc/audit/rules.d/*.rules and load them with `augenrules --load`; verify with `auditctl -l`.",
        references=("CIS Amazon Linux 2023 6.3.3", "NIST 800-53 AU-2"),
        rationale="With no rules loaded the kernel records almost nothing of interest; rules files on disk are not proof.",
        frameworks={CIS_AL2023: ("6.3.3",), NIST: ("AU-2", "AU-12"), PCI: ("10.2.1", "10.2.2"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.AUGENRULES,
    ),
    Check(
        id="auditd.config",
        title="auditd.conf keeps logs and never ignores a full disk",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITD_CONF,),
        parser=parsers.auditd_config,
        rationale="Default or careless settings rotate away evidence or keep running blind when the disk fills.",
        remediation="In /etc/audit/auditd.conf set max_log_file (MB), max_log_file_action = keep_logs (or rotate with num_logs ≥ 2), and never `ignore` for space_left_action, admin_space_left_action, disk_full_action, disk_error_action; then `service auditd reload`.",
        references=("CIS Amazon Linux 2023 6.3.2.1–6.3.2.4", "CIS RHEL 9 6.3.2.x", "CIS Ubuntu 22.04 4.1.2.x"),
        frameworks={CIS_AL2023: ("6.3.2.1", "6.3.2.2", "6.3.2.3", "6.3.2.4"), NIST: ("AU-4", "AU-5", "AU-11"),
                    PCI: ("10.5.1", "10.7.2"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_CONFIG,
    ),
    Check(
        id="auditd.rules_cover_cis",
        title="loaded audit rules cover the CIS rule groups",
        severity="high",
        profile=CIS,
        probes=(probes.AUDITCTL_RULES,),
        parser=parsers.auditd_rules_cover,
        takes_options=True,
        rationale="Judged on the kernel's loaded rules (auditctl -l), not on files in rules.d that may never have been loaded.",
        remediation="Add the missing groups' rules to /etc/audit/rules.d/ (e.g. from the CIS benchmark or the audit package's 30-stig.rules) and run `augenrules --load`.",
        references=("CIS Amazon Linux 2023 6.3.3.1–6.3.3.21", "CIS RHEL 9 6.3.3.x", "CIS Ubuntu 22.04 4.1.3.x"),
        frameworks={CIS_AL2023: tuple(f"6.3.3.{n}" for n in range(1, 22) if n != 20),  # 6.3.3.20 is auditd.immutable
                    NIST: ("AU-2", "AU-3", "AU-12"),
                    PCI: ("10.2.1.1", "10.2.1.2", "10.2.1.4", "10.2.1.5", "10.2.1.7", "10.2.2"), ISO: ("A.8.15",),
                    SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_RULES_CIS,
    ),
    Check(
        id="auditd.immutable",
        title="the audit configuration is immutable (-e 2)",
        severity="medium",
        profile=CIS,
        probes=(probes.AUDITCTL_STATUS,),
        parser=parsers.auditd_immutable,
        rationale="Without -e 2 anyone with root can silently delete rules or disable auditing until the next check.",
        remediation="Make `-e 2` the last line of the last file in /etc/audit/rules.d/ (e.g. 99-finalize.rules), `augenrules --load`, and reboot to apply.",
        references=("CIS Amazon Linux 2023 6.3.3.20", "CIS Ubuntu 22.04 4.1.3.20"),
        frameworks={CIS_AL2023: ("6.3.3.20",), NIST: ("AU-9",), PCI: ("10.3.2",), ISO: ("A.8.15",)},
        fix=fixes.AUDITD_IMMUTABLE,
    ),
    Check(
        id="auditd.boot_params",
        title="the kernel audits from boot with a large backlog",
        severity="medium",
        profile=CIS,
        probes=(probes.KERNEL_CMDLINE,),
        parser=parsers.auditd_boot_params,
        rationale="audit=1 audits processes started before auditd; a small backlog drops events under load.",
        remediation="Add `audit=1 audit_backlog_limit=8192` to GRUB_CMDLINE_LINUX (grubby --update-kernel ALL --args … on AL2023/RHEL; update-grub on Ubuntu) and reboot.",
        references=("CIS Amazon Linux 2023 6.3.1.3–6.3.1.4", "CIS Ubuntu 22.04 4.1.1.3–4.1.1.4"),
        frameworks={CIS_AL2023: ("6.3.1.3", "6.3.1.4"), NIST: ("AU-5", "AU-12"), PCI: ("10.2.1",), ISO: ("A.8.15",)},
        fix=fixes.AUDITD_BOOT_PARAMS,
    ),
    Check(
        id="auditd.log_permissions",
        title="audit logs are root-owned and not world-readable",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDIT_LOG_PERMS,),
        parser=parsers.auditd_log_permissions,
        rationale="Readable audit logs leak sensitive activity; writable ones can be altered.",
        remediation="`chown root /var/log/audit /var/log/audit/*; chmod 750 /var/log/audit; chmod 640 /var/log/audit/*` (group root or the log_group of auditd.conf).",
        references=("CIS Amazon Linux 2023 6.3.4.1–6.3.4.4", "CIS Ubuntu 22.04 4.1.4.1–4.1.4.4"),
        frameworks={CIS_AL2023: ("6.3.4.1", "6.3.4.2", "6.3.4.3", "6.3.4.4"), NIST: ("AU-9",), PCI: ("10.3.1", "10.3.2"),
                    ISO: ("A.8.15",)},
        fix=fixes.AUDIT_LOG_PERMS,
    ),
    Check(
        id="auditd.backlog_lost",
        title="the kernel is not losing audit events",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.AUDITCTL_STATUS, probes.AUDITCTL_STATUS_END),
        parser=parsers.auditd_backlog_lost,
        rationale="A growing `lost` counter means events are being dropped right now, whatever the rules say.",
        remediation="Raise the backlog (`-b 8192` in rules, audit_backlog_limit on the kernel command line), check rate_limit, and reduce noisy rules.",
        references=("auditctl(8): -s lost counter", "CIS Amazon Linux 2023 6.3.1.4"),
        frameworks={CIS_AL2023: ("6.3.1.4",), NIST: ("AU-4", "AU-5"), PCI: ("10.2.1", "10.7.2"), ISO: ("A.8.15",),
                    SOC2: ("CC7.2",)},
        fix=fixes.AUDITD_BACKLOG,
    ),
    Check(
        id="cwagent.installed",
        title="the Amazon CloudWatch agent is installed",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.CWAGENT_INSTALLED,),
        parser=parsers.cwagent_installed,
        remediation="Install the agent: `dnf install amazon-cloudwatch-agent` or the .deb from AWS; see the CloudWatch agent install guide.",
        references=("AWS CloudWatch agent: Installing the CloudWatch agent",),
        rationale="Logs that stay on the host are lost with it and can be erased by an intruder with root.",
        frameworks={NIST: ("AU-4", "AU-9"), PCI: ("10.3.3", "10.5.1"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_INSTALL,
    ),
    Check(
        id="cwagent.running",
        title="the CloudWatch agent is running",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.CWAGENT_STATUS,),
        parser=parsers.cwagent_running,
        remediation="`sudo amazon-cloudwatch-agent-ctl -a start` (after `-a fetch-config`); check its log in /opt/aws/amazon-cloudwatch-agent/logs/.",
        references=("AWS CloudWatch agent: Starting the CloudWatch agent",),
        rationale="An installed but stopped agent ships nothing.",
        frameworks={NIST: ("AU-4", "AU-9"), PCI: ("10.3.3", "10.7.2"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_START,
    ),
    Check(
        id="cwagent.ships_audit_log",
        title="the agent config ships /var/log/audit/audit.log",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.CWAGENT_CONFIG,),
        parser=parsers.cwagent_ships_audit_log,
        remediation="Add a logs.logs_collected.files.collect_list entry with file_path /var/log/audit/audit.log, then `amazon-cloudwatch-agent-ctl -a fetch-config -s`.",
        references=("AWS CloudWatch agent configuration file: logs section",),
        rationale="The agent must be told to collect the audit log; many configs ship only syslog.",
        frameworks={NIST: ("AU-4", "AU-6", "AU-9"), PCI: ("10.3.3", "10.5.1"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_AUDIT_FRAGMENT,
    ),
    Check(
        id="cwagent.config_valid",
        title="the running agent config agrees with the JSON and can read the audit log",
        severity="high",
        profile=AUDIT_TRAIL,
        probes=(probes.CWAGENT_STATUS, probes.CWAGENT_CONFIG, probes.CWAGENT_TOML, probes.AUDIT_LOG_PERMS),
        parser=parsers.cwagent_config_valid,
        rationale="The agent runs its translated TOML, not the JSON; a stale translation, an i-UNKNOWN stream or a run_as_user without read access ships nothing.",
        remediation="`amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:<json>`; make sure instance metadata is reachable (IMDSv2 hop limit) and that run_as_user can read /var/log/audit/audit.log (or run as root).",
        references=("AWS CloudWatch agent: configuration file, run_as_user", "amazon-cloudwatch-agent-ctl -a status"),
        frameworks={NIST: ("AU-4", "AU-9"), PCI: ("10.3.3",), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_CONFIG,
    ),
    Check(
        id="cwagent.canary_delivered",
        title="a marker written to the audit log arrives in CloudWatch Logs (opt-in)",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.CANARY, probes.CWAGENT_CONFIG, probes.CWAGENT_TOML, probes.HOST_IDENTITY),
        parser=None,
        aws_side=True,
        judge=aws_side.canary_delivered,
        rationale="The only end-to-end proof: a unique event written through the kernel audit is found in the host's stream. Off unless the `canary` param is true (it writes one USER record per host per run).",
        remediation="Follow the path of one event: `ausearch -m USER -ts recent` on the host, then the agent log (/opt/aws/amazon-cloudwatch-agent/logs/amazon-cloudwatch-agent.log), then the instance role's logs:PutLogEvents permission.",
        references=("auditctl(8) -m", "AWS CloudWatch Logs FilterLogEvents"),
        frameworks={NIST: ("AU-5", "AU-6", "AU-9"), PCI: ("10.3.3", "10.7.2"), ISO: ("A.8.15",), SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_DELIVERY,
    ),
    Check(
        id="cwagent.log_stream_fresh",
        title="the host's audit log stream received an event recently",
        severity="critical",
        profile=AUDIT_TRAIL,
        probes=(probes.CWAGENT_CONFIG, probes.CWAGENT_TOML, probes.HOST_IDENTITY),
        parser=None,
        aws_side=True,
        judge=aws_side.log_stream_fresh,
        remediation="Check the agent log for delivery errors, the instance role's logs:PutLogEvents permission, and that auditd writes to /var/log/audit/audit.log.",
        references=("AWS CloudWatch Logs DescribeLogStreams",),
        rationale="The only host-independent proof that events leave the host and reach CloudWatch Logs.",
        frameworks={NIST: ("AU-4", "AU-6", "AU-9"), PCI: ("10.3.3", "10.5.1", "10.7.2"), ISO: ("A.8.15",),
                    SOC2: ("CC7.2",)},
        fix=fixes.CWAGENT_DELIVERY,
    ),
)

BY_ID: dict[str, Check] = {c.id: c for c in CATALOGUE}
CANARY_CHECK = "cwagent.canary_delivered"
HOST_PROBES: tuple[Probe, ...] = tuple(dict.fromkeys(p for c in CATALOGUE for p in c.probes if p is not probes.CANARY))
SCRIPT: str = probes.build_script(HOST_PROBES)
# Two constants, never assembled per host: the canary probe is added only when the run opts in.
SCRIPT_WITH_CANARY: str = probes.build_script(HOST_PROBES + (probes.CANARY,))


def requirements_of(check_id: str) -> list[str]:
    """The requirements a check evidences, "NIST 800-53r5 AU-12" style, in FRAMEWORKS order ([] if unknown)."""
    check = BY_ID.get(check_id)
    if check is None:
        return []
    return [f"{fw} {req}" for fw in FRAMEWORKS for req in check.frameworks.get(fw, ())]


def requirement_order(requirement: str) -> tuple:
    """Sort key for "NIST 800-53r5 AU-12" style strings: FRAMEWORKS order, then ids numerically (6.3.3.2 < 6.3.3.10)."""
    fw = next((f for f in FRAMEWORKS if requirement.startswith(f + " ")), "")
    rid = requirement[len(fw) + 1:] if fw else requirement
    parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in rid.replace("-", ".").split(".")]
    return (FRAMEWORKS.index(fw) if fw else len(FRAMEWORKS), parts)


def check_meta() -> dict[str, dict[str, Any]]:
    """What the report and the exports need to explain a check: title, severity, remediation, why, references,
    frameworks (framework → requirement ids), requirements (requirements_of) and opt_in (the canary)."""
    return {c.id: {"title": c.title, "severity": c.severity, "remediation": c.remediation, "rationale": c.rationale,
                   "references": list(c.references),
                   "frameworks": {fw: list(c.frameworks[fw]) for fw in FRAMEWORKS if c.frameworks.get(fw)},
                   "requirements": requirements_of(c.id),
                   "opt_in": c.id == CANARY_CHECK} for c in CATALOGUE}  # opt_in: runs only when the run asks


def missing_probes(check: Check, output: ScriptOutput) -> list[str]:
    return [p.name for p in check.probes if output.get(p.name) is None]


def evaluate_host_checks(output: ScriptOutput, options: CheckOptions | None = None) -> dict[str, Verdict]:
    """Run every host-side parser. A parser never crashes the host: a bug or junk becomes ERROR."""
    options = options or CheckOptions()
    verdicts: dict[str, Verdict] = {}
    for check in CATALOGUE:
        if check.aws_side:
            continue
        missing = missing_probes(check, output)
        if missing:  # missing, repeated or cut: what could not be seen is ERROR, never PASS
            why = ", ".join(f"{name} ({output.why_missing(name)})" for name in missing)
            verdicts[check.id] = Verdict.error(f"no usable output for {why}"[:300])
            continue
        try:
            outputs = {p.name: output.sections[p.name] for p in check.probes}
            verdicts[check.id] = check.parser(outputs, options) if check.takes_options else check.parser(outputs)
        except Exception as exc:  # noqa: BLE001 - one odd output must not stop the fleet
            verdicts[check.id] = Verdict.error(f"parser failed: {type(exc).__name__}: {exc}"[:200])
    return verdicts


def evaluate_aws_checks(host: aws_side.HostFacts, aws: aws_side.AwsView,
                        ) -> tuple[dict[str, Verdict], aws_side.Canary | None]:
    """Run every AWS-side judge. An AWS error for one host is that check's ERROR, never the batch's."""
    verdicts: dict[str, Verdict] = {}
    pending = None
    for check in CATALOGUE:
        if not check.aws_side:
            continue
        try:
            result = check.judge(host, aws)
        except Exception as exc:  # noqa: BLE001 - throttled past retries, budget spent, ...
            result = Verdict.error(f"CloudWatch Logs lookup failed: {type(exc).__name__}: {exc}"[:200])
        if isinstance(result, aws_side.Canary):
            pending = result  # its verdict comes when the batch's canaries have been searched
        else:
            verdicts[check.id] = result
    return verdicts, pending

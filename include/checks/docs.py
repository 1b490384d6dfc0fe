"""Render docs/CHECKS.md from the catalogue, so the documentation cannot drift from the code.

    python -m include.checks.docs > docs/CHECKS.md
"""
from __future__ import annotations

from include.checks.catalogue import CATALOGUE, FRAMEWORKS, requirement_order, requirements_of
from include.checks.fixes import remediation_sudoers
from include.checks.probes import sudoers
from include.checks.rulesets import CIS

HEADER = """# Checks

Generated from `include/checks/catalogue.py` by `python -m include.checks.docs` (a test fails when this file
is stale). Every check yields PASS, FAIL, ERROR (could not be evaluated: sudo refused, timeout, junk) or
NOT_APPLICABLE, with a one-line detail. All host commands below run in ONE `/bin/sh -s` session per host
(the combined script in `include/checks/probes.py`); they are fixed strings — no instance data ever reaches
a shell — and privileged reads use `sudo -n` with absolute paths.

Distro variants are handled inside the commands: `auditctl` at /usr/sbin or /sbin, the package database
(`rpm -q audit` on Amazon Linux 2/2023 and RHEL family, `dpkg-query auditd` on Ubuntu/Debian), and
`systemctl` only where systemd runs (otherwise `auditd.enabled_on_boot` is NOT_APPLICABLE).

Which checks decide a host's status is the run's `profile` (include/verify/profiles.py): `audit-trail` (default:
is the audit trail recorded and delivered?) or `cis` (adds the hardening checks). Every check runs and is
stored whatever the profile; failures outside it are reported as `advisory_failed`, never hidden.

| id | profile | severity | title |
| --- | --- | --- | --- |
"""


def render() -> str:
    out = [HEADER]
    out += [f"| `{c.id}` | {c.profile} | {c.severity} | {c.title} |\n" for c in CATALOGUE]
    for c in CATALOGUE:
        out.append(f"\n## `{c.id}` — {c.title}\n\n")
        out.append(f"- **Profile:** {c.profile}{' (and cis)' if c.profile == 'audit-trail' else ''}\n"
                   f"- **Severity:** {c.severity}\n- **Why:** {c.rationale}\n")
        judge = (f"`include/checks/aws_side.py: {c.judge.__name__}` on the AWS side: {c.judge.__doc__.split(chr(10))[0]}"
                 if c.aws_side else f"`include/checks/parsers.py: {c.parser.__name__}` on the probe output")
        out.append(f"- **Judged by:** {judge}\n")
        out.append(f"- **Remediation:** {c.remediation}\n- **References:** {'; '.join(c.references)}\n")
        mapped = [f"{fw} {', '.join(c.frameworks[fw])}" for fw in FRAMEWORKS if c.frameworks.get(fw)]
        out.append(f"- **Requirements evidenced:** {'; '.join(mapped) or '—'}\n")
        out.append("- **Commands:**\n\n```sh\n" + c.command + "\n```\n")
        out.append(_fix(c.fix))
    out.append(REQUIREMENTS_HEADER)
    evidencing: dict[str, list[str]] = {}
    for c in CATALOGUE:
        for req in requirements_of(c.id):
            evidencing.setdefault(req, []).append(c.id)
    out += [f"| {req} | {', '.join(f'`{cid}`' for cid in ids)} |\n" for req, ids in _in_order(evidencing).items()]
    out.append("\n## CIS rule groups (`auditd.rules_cover_cis`, rule_set `cis`)\n\n"
               "A group is covered by a loaded rule with one of its keys, OR a watch on one of its paths, OR one of "
               "its syscalls (site-specific keys are fine). `-a never,…` rules cover nothing, and a `never` rule that "
               "comes first shadows what it matches: `-a never,task` disables everything, `-a never,exit …` takes the "
               "syscalls of later rules whose conditions include its own. Choose `minimal` or a "
               "JSON file of the same shape with the `rule_set` param.\n\n| group | keys | watches | syscalls |\n"
               "| --- | --- | --- | --- |\n")
    for g in CIS:
        out.append(f"| {g.name} | {', '.join(g.keys)} | {', '.join(g.watches) or '—'} | {', '.join(g.syscalls) or '—'} |\n")
    out.append("\n## sudoers allowlist for the login user\n\n```\n" + SUDOERS + "```\n")
    out.append(REMEDIATION_HEADER + "```\n" + REMEDIATION_SUDOERS + "```\n")
    return "".join(out)


REQUIREMENTS_HEADER = """
## Requirements → checks

Each check names the framework requirements it evidences (`Check.frameworks` in the catalogue): a failing check
is a gap in each of them. The report's "By requirement" section, the CSV's `requirements` column and the OCSF
export's `compliance.requirements` all come from this one mapping. CIS numbers are the CIS Amazon Linux 2023
Benchmark sections of the checks' references; NIST is SP 800-53 Rev. 5; PCI DSS is v4.0.1 requirement 10.

| requirement | evidenced by |
| --- | --- |
"""


def _fix(fix) -> str:
    if fix is None:
        return "- **Fix:** manual: no fix declared\n"
    if not fix.automatic:
        return f"- **Fix:** manual: {fix.manual}\n"
    steps = "".join(f"\n```sh\n{s.command}\n```\n" + ("(stdin: the managed fragment rendered from the run's "
                                                         "`log_group`, never part of the command)\n"
                                                         if s.stdin else "") for s in fix.steps)
    return f"- **Fix** (`{fix.name}`, approved runs only): {fix.summary}\n{steps}"


REMEDIATION_HEADER = """
## sudoers for the remediation login (a separate user)

Only the remediation DAG uses it (its own connection); the daily audit's login above stays read-only. Each fix
runs these exact commands with `sudo -n`; guards run unprivileged in fixed `/bin/sh -c` scripts
(`include/checks/fixes.py`). Arguments escape `,` `:` `=` as sudoers requires.

"""


def _in_order(evidencing: dict[str, list[str]]) -> dict[str, list[str]]:
    return dict(sorted(evidencing.items(), key=lambda kv: requirement_order(kv[0])))


SUDOERS = sudoers("ec2-user")
REMEDIATION_SUDOERS = remediation_sudoers("ec2-remediate")

if __name__ == "__main__":
    print(render(), end="")

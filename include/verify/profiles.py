"""Profiles: which checks decide a host's status (param `profile`).

Every check runs and is stored whatever the profile; the profile only says which ones answer the run's
question. `audit-trail` (default) asks the mission's question — is the audit trail recorded and delivered?
`cis` adds hardening depth. A JSON file may define a custom profile:

    {"name": "pci-web", "extends": "audit-trail", "add": ["auditd.immutable"], "remove": ["auditd.config"]}
or  {"name": "minimal", "checks": ["auditd.running", "cwagent.log_stream_fresh"]}

Security state fails closed: an unknown check id, an empty profile or a malformed file is refused at the
start of the run, never silently read as "fewer checks".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from include.checks.catalogue import AUDIT_TRAIL, BY_ID, CATALOGUE, CIS

# Each catalogue entry names the smallest built-in profile it belongs to; `cis` includes `audit-trail`.
AUDIT_TRAIL_CHECKS: tuple[str, ...] = tuple(c.id for c in CATALOGUE if c.profile == AUDIT_TRAIL)
HARDENING_CHECKS: tuple[str, ...] = tuple(c.id for c in CATALOGUE if c.profile == CIS)


@dataclass(frozen=True)
class Profile:
    name: str
    checks: frozenset[str]

    def decides(self, check_id: str) -> bool:
        return check_id in self.checks


BUILT_IN: dict[str, Profile] = {
    AUDIT_TRAIL: Profile(AUDIT_TRAIL, frozenset(AUDIT_TRAIL_CHECKS)),
    CIS: Profile(CIS, frozenset(AUDIT_TRAIL_CHECKS + HARDENING_CHECKS)),
}
_FILE_KEYS = {"name", "checks", "extends", "add", "remove", "description"}


def _ids(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a list of check ids")
    return value


def load_profile(spec: str | None) -> Profile:
    """A built-in name or the path of a JSON profile file; ValueError naming the field otherwise."""
    spec = spec or AUDIT_TRAIL
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"profile must be one of {sorted(BUILT_IN)} or a JSON file path, not {spec!r}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"profile file {spec}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"profile file {spec}: must be a JSON object")
    if unknown := sorted(set(data) - _FILE_KEYS):
        raise ValueError(f"profile file {spec}: unknown field(s) {unknown}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"profile file {spec}: field 'name' must be a non-empty string")
    if "checks" in data:
        if {"extends", "add", "remove"} & set(data):
            raise ValueError(f"profile file {spec}: give either 'checks' or 'extends'/'add'/'remove', not both")
        checks = set(_ids(data["checks"], f"profile file {spec}: field 'checks'"))
    else:
        base = data.get("extends")
        if base not in BUILT_IN:
            raise ValueError(f"profile file {spec}: field 'extends' must be one of {sorted(BUILT_IN)}")
        checks = set(BUILT_IN[base].checks)
        checks |= set(_ids(data.get("add", []), f"profile file {spec}: field 'add'"))
        checks -= set(_ids(data.get("remove", []), f"profile file {spec}: field 'remove'"))
    if unknown := sorted(checks - set(BY_ID)):
        raise ValueError(f"profile file {spec}: unknown check id(s) {unknown}")
    if not checks:
        raise ValueError(f"profile file {spec}: the profile decides no check")
    return Profile(name.strip(), frozenset(checks))

"""The demo fleet: ~20 hosts of varied health, and the status each one must end up with."""
from __future__ import annotations

import copy

from devstack.standins.hosts.fleet import SSH_PORT

# (last octet, name, environment, profile, behaviour, expected status under the default audit-trail profile,
# extras). Hosts failing only CIS hardening checks (db-3, db-4, log-2) are COMPLIANT: their gaps are advisory.
# Every host is SSM-managed and Online unless extras say `ssm` (a ping status, or None: not managed); `by`
# gives the expected status under another transport where it differs from SSH's (expected_status).
_HOSTS = [
    (10, "web-1", "prod", "compliant", "ok", "COMPLIANT", {}),
    (11, "web-2", "prod", "compliant_fragment", "ok", "COMPLIANT", {}),
    (12, "batch-1", "prod", "compliant_no_systemd", "ok", "COMPLIANT", {}),
    (13, "api-1", "prod", "compliant", "ok", "COMPLIANT", {}),
    (14, "api-2", "staging", "compliant", "ok", "COMPLIANT", {}),
    (15, "db-1", "prod", "auditd_stopped", "ok", "NON_COMPLIANT", {}),
    (16, "db-2", "prod", "no_rules", "ok", "NON_COMPLIANT", {}),
    (17, "cache-1", "staging", "auditd_not_enabled", "ok", "NON_COMPLIANT", {}),
    (18, "queue-1", "prod", "agent_stopped", "ok", "NON_COMPLIANT", {}),
    (19, "queue-2", "staging", "agent_not_shipping", "ok", "NON_COMPLIANT", {}),
    (20, "search-1", "prod", "stale_stream", "ok", "NON_COMPLIANT", {}),
    (21, "legacy-1", "dev", "auditd_missing", "ok", "NON_COMPLIANT", {}),
    (22, "legacy-2", "dev", "agent_missing", "ok", "NON_COMPLIANT", {}),
    (23, "ops-1", "prod", "sudo_password", "ok", "ERROR", {"ssm": None, "by": {"ssm": "UNREACHABLE"}}),
    (24, "edge-1", "prod", "compliant", "down", "UNREACHABLE", {"ssm": None}),
    (25, "edge-2", "prod", "compliant", "auth_reject", "AUTH_FAILED", {"by": {"ssm": "COMPLIANT", "auto": "COMPLIANT"}}),
    (26, "bastion-1", "prod", "compliant", "ok", "HOST_KEY_MISMATCH",
     {"pinned_other_key": True, "by": {"ssm": "COMPLIANT", "auto": "COMPLIANT"}}),
    (27, "tarpit-1", "dev", "compliant", "hang_banner", "UNREACHABLE", {"ssm": None}),
    (28, "weird-1", "dev", "compliant", "junk", "ERROR", {}),
    (29, "win-1", "prod", "compliant", "down", "NOT_APPLICABLE", {"windows": True, "ssm": None}),
    (32, "db-3", "prod", "not_immutable", "ok", "COMPLIANT", {}),
    (33, "db-4", "prod", "rules_incomplete", "ok", "COMPLIANT", {}),
    (34, "log-1", "staging", "weak_auditd_conf", "ok", "NON_COMPLIANT", {}),
    (35, "log-2", "staging", "no_boot_params", "ok", "COMPLIANT", {}),
    (36, "log-3", "dev", "loose_log_perms", "ok", "NON_COMPLIANT", {}),
    (37, "busy-1", "prod", "losing_events", "ok", "NON_COMPLIANT", {}),
    (38, "queue-3", "prod", "agent_stale_translation", "ok", "NON_COMPLIANT", {}),
    (39, "queue-4", "prod", "agent_unknown_stream", "ok", "NON_COMPLIANT", {}),
    (40, "queue-5", "staging", "agent_cannot_read", "ok", "NON_COMPLIANT", {}),
    # Reached only through SSM: no inbound SSH (its agent listener still runs).
    (41, "ssm-1", "prod", "compliant", "ssm_only", "UNREACHABLE", {"by": {"ssm": "COMPLIANT", "auto": "COMPLIANT"}}),
    # Its SSM agent has lost its connection: SSM cannot reach it, SSH can (auto falls back).
    (42, "ssm-2", "staging", "compliant", "ok", "COMPLIANT", {"ssm": "ConnectionLost", "by": {"ssm": "UNREACHABLE"}}),
    (30, "old-1", "prod", "compliant", "down", None, {"state": "stopped"}),
    (31, "gone-1", "prod", "compliant", "down", None, {"state": "terminated"}),
]


def demo_fleet() -> list[dict]:
    """Fresh host entries (seeding adds instance ids to them)."""
    hosts = []
    for octet, name, env, profile, behaviour, expected, extras in _HOSTS:
        address = f"127.42.0.{octet}"
        hosts.append({
            "address": address, "port": SSH_PORT, "name": name, "environment": env, "profile": profile,
            "behaviour": behaviour, "expected": expected, "ssm": "Online",
            "identity": {"hostname": f"ip-{address.replace('.', '-')}"},
            **copy.deepcopy(extras),
        })
    return hosts


def expected_status(host: dict, transport: str) -> str | None:
    """What the host must end up as when the run's transport is `transport` (eic is SSH's path)."""
    return host.get("by", {}).get(transport, host.get("expected"))

"""Airflow's simple auth manager, except that the users named in `EC2_AUDIT_NO_DAG_USERS` may read no DAG.

Every simple-auth role (viewer, user, op, admin) can read every DAG in Airflow 3.3.2
(`SimpleAuthManager.is_authorized_dag` allows GET from VIEWER up), so a signed-in user *without* DAG access
needs another auth manager. This one is a real auth manager, loaded by the real `airflow api-server` through
`AIRFLOW__CORE__AUTH_MANAGER=devstack.stack.dag_denying_auth_manager.DagDenyingAuthManager`; login, tokens and
every other permission stay the simple auth manager's. Used by tests/integration/report/test_dashboard_browser.py.
"""
from __future__ import annotations

import os

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def _denied() -> set[str]:
    return {u.strip() for u in os.environ.get("EC2_AUDIT_NO_DAG_USERS", "").split(",") if u.strip()}


class DagDenyingAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() in _denied():
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)

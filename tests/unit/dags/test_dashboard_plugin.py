"""The plugin's params are typed (FastAPI): only a date and an instance id reach the evidence store."""
from __future__ import annotations

import pytest


@pytest.fixture()
def client(monkeypatch):
    from fastapi.testclient import TestClient

    plugin = pytest.importorskip("plugins.ec2_audit_dashboard")
    seen = []
    monkeypatch.setattr(plugin, "_fleet", lambda day: seen.append(("fleet", day)) or "fleet")
    monkeypatch.setattr(plugin, "_host", lambda iid, day=None: seen.append(("host", iid, day)) or "host")
    auth = plugin.app.router.dependencies[0].dependency  # Airflow's requires_access_dag: not this test's subject
    plugin.app.dependency_overrides[auth] = lambda: None
    try:
        yield TestClient(plugin.app), seen
    finally:
        plugin.app.dependency_overrides.clear()


def test_a_day_must_be_a_date_and_an_id_an_instance_id(client):
    http, seen = client
    assert http.get("/", params={"day": "2026-12-01"}).status_code == 200
    assert http.get("/").status_code == 200
    assert http.get("/host/i-0123456789abcdef0").status_code == 200
    assert http.get("/host/i-0123456789abcdef0", params={"day": "2026-12-03"}).status_code == 200
    for bad in ("2026-13-01", "20261201", "x' OR 1=1", "1e9"):
        assert http.get("/", params={"day": bad}).status_code == 422, bad
        assert http.get("/host/i-0123456789abcdef0", params={"day": bad}).status_code == 422, bad
    for bad in ("i-XYZ", "i-" + "0" * 40, "%3Cscript%3E", "i-0123456789abcdef0;rm"):
        assert http.get(f"/host/{bad}").status_code in (404, 422), bad
    assert seen == [("fleet", "2026-12-01"), ("fleet", None), ("host", "i-0123456789abcdef0", None),
                    ("host", "i-0123456789abcdef0", "2026-12-03")]

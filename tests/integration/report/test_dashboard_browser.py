"""The compliance dashboard plugin in a real Airflow API server, seen through a real headless Chromium.

A moto server process holds 30 days of evidence; `airflow api-server` loads plugins/ec2_audit_dashboard.py
(the simple auth manager's login and roles, through devstack/stack/dag_denying_auth_manager.py: "auditor" may read
the DAG, "outsider" is signed in but may not). Anonymous requests are refused (401, and 403 for a forged
token); FastAPI's /docs, /redoc and /openapi.json are not served at all; a signed-in user without read access
to the DAG gets 403 on every page; after signing in on Airflow's own login page the auditor's browser sees
the fleet page and a host's history. Screenshots are saved as test artifacts under .local/artifacts/.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest

from devstack import procs
from devstack.procs import PROJECT, free_port, http_ok, wait_until
from devstack.stack import local_aws
from devstack.standins.aws.seed import REGION, clients
from include.evidence.records import RunSummary
from include.evidence.store import EvidenceStore
from tests._components import CHROMIUM

pytestmark = pytest.mark.needs_chromium
ARTIFACTS = PROJECT / ".local" / "artifacts"
PASSWORD = uuid.uuid4().hex
OUTSIDER_PASSWORD = uuid.uuid4().hex  # signed in, but no read access to the DAG
LAST_DAY = date(2031, 3, 30)


def seed(endpoint: str) -> dict[str, list[str]]:
    """30 days: the fleet degrades (one more failing host every 10 days); one host has a malicious Name tag."""
    store = EvidenceStore(clients(endpoint, REGION)[2], "ec2_audit_evidence")
    store.ensure_tables()
    ids = [f"i-{n:017x}" for n in range(12)]
    failing_today = []
    for back in range(30):
        day = (LAST_DAY - timedelta(days=back)).isoformat()
        failing = set(ids[: 1 + (29 - back) // 10])
        items = [{"instance_id": i, "audit_date": day, "item_type": "instance", "run_id": f"scheduled__{day}",
                  "status": "NON_COMPLIANT" if i in failing else "COMPLIANT",
                  "failed_checks": ["auditd.running"] if i in failing else [], "region": REGION,
                  "account_id": "123456789012", "checked_at": f"{day}T06:01:00Z", "output_sha256": "ab" * 32,
                  "tags": {"Name": "<script>alert(1)</script>" if i == ids[0] else f"web-{i[-2:]}"}} for i in ids]
        store.put_items(items)
        compliant = len(ids) - len(failing)
        store.put_summary(day, RunSummary(run_id=f"scheduled__{day}", discovered=len(ids), checked=len(ids),
                                          status_counts={"COMPLIANT": compliant, "NON_COMPLIANT": len(failing)},
                                          compliance_pct=round(100 * compliant / len(ids), 1)), 400)
        if back == 0:
            failing_today = sorted(failing)
    return {"ids": ids, "failing_today": failing_today}


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    started = []
    try:
        moto, endpoint = local_aws.spawn_moto()
        started.append(moto)
        seeded = seed(endpoint)
        (root / "passwords.json").write_text(json.dumps({"auditor": PASSWORD, "outsider": OUTSIDER_PASSWORD}))
        port = free_port()
        env = {**os.environ, "AIRFLOW_HOME": str(root / "home"), "PYTHONPATH": str(PROJECT),
               "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
               "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               # Every simple-auth role may read every DAG: the denying subclass takes DAG access from "outsider".
               "AIRFLOW__CORE__AUTH_MANAGER": "devstack.stack.dag_denying_auth_manager.DagDenyingAuthManager",
               "EC2_AUDIT_NO_DAG_USERS": "outsider",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "auditor:viewer,outsider:viewer",
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(root / "passwords.json"),
               "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
               "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                       "extra": {"endpoint_url": endpoint, "region_name": REGION}})}
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        started.append(procs.spawn([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
                                   root / "api-server.log", env, log_mode="wb"))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/api/v2/monitor/health"), 120, "airflow api-server", started[1])
        yield {"base": base, **seeded, "log": root / "api-server.log"}
    finally:
        for proc in reversed(started):
            procs.stop_group(proc)


def status_of(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_anonymous_and_forged_requests_are_refused(airflow_ui):
    base = airflow_ui["base"]
    assert status_of(f"{base}/ec2-audit/") == 401
    assert status_of(f"{base}/ec2-audit/host/{airflow_ui['ids'][0]}") == 401
    assert status_of(f"{base}/ec2-audit/", {"Authorization": "Bearer not.a.token"}) == 403
    assert status_of(f"{base}/ec2-audit/", {"Cookie": "_token=forged"}) == 403


def token_for(base: str, username: str, password: str) -> str:
    """A JWT from the simple auth manager's own token endpoint (what the login page posts to)."""
    request = urllib.request.Request(f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": username, "password": password}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["access_token"]


def test_fastapi_docs_and_schema_are_not_served(airflow_ui):
    """FastAPI serves /docs, /redoc and /openapi.json outside the app's dependencies: they must not exist."""
    base = airflow_ui["base"]
    auditor = {"Authorization": f"Bearer {token_for(base, 'auditor', PASSWORD)}"}
    assert status_of(f"{base}/ec2-audit/", auditor) == 200  # the token works ...
    for path in ("docs", "redoc", "openapi.json", "docs/oauth2-redirect"):
        assert status_of(f"{base}/ec2-audit/{path}") in (401, 404), path  # ... but no schema, signed in or not
        assert status_of(f"{base}/ec2-audit/{path}", auditor) == 404, path


def test_signed_in_user_without_dag_access_gets_403(airflow_ui):
    base, host = airflow_ui["base"], airflow_ui["ids"][0]
    outsider = {"Authorization": f"Bearer {token_for(base, 'outsider', OUTSIDER_PASSWORD)}"}
    assert status_of(f"{base}/api/v2/monitor/health", outsider) == 200  # a valid, signed-in user ...
    assert status_of(f"{base}/ec2-audit/", outsider) == 403  # ... refused every page of the dashboard
    assert status_of(f"{base}/ec2-audit/?day={LAST_DAY.isoformat()}", outsider) == 403
    assert status_of(f"{base}/ec2-audit/host/{host}", outsider) == 403


@contextmanager
def browser_page():
    """A page of a fresh headless Debian Chromium (Playwright), closed afterwards."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/auth/login?next={base}/ec2-audit/")  # Airflow's own login page
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ec2-audit/", timeout=30_000)


def test_browser_signed_in_without_dag_access_sees_403_not_the_fleet(airflow_ui):
    base, failing = airflow_ui["base"], airflow_ui["failing_today"]
    with browser_page() as page:
        sign_in(page, base, "outsider", OUTSIDER_PASSWORD)
        assert any(c["name"] == "_token" for c in page.context.cookies()), "signed in: the UI's JWT cookie is set"
        for url in (f"{base}/ec2-audit/", f"{base}/ec2-audit/host/{failing[0]}"):
            response = page.goto(url)
            assert response.status == 403, (url, response.status)
            text = page.inner_text("body")
            assert failing[0] not in text and "compliant on" not in text and "NON_COMPLIANT" not in text
        page.screenshot(path=str(ARTIFACTS / "dashboard-no-dag-access.png"))


def test_signed_in_user_sees_fleet_trend_failing_hosts_and_history(airflow_ui):
    from include.checks.catalogue import check_meta

    base, failing = airflow_ui["base"], airflow_ui["failing_today"]
    with browser_page() as page:
        alerts = []
        page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
        assert page.goto(f"{base}/ec2-audit/").status == 401  # the browser, not signed in
        page.screenshot(path=str(ARTIFACTS / "dashboard-anonymous.png"))

        sign_in(page, base, "auditor", PASSWORD)
        page.wait_for_selector("h1")
        text = page.inner_text("body")
        assert f"compliant on {LAST_DAY.isoformat()}" in text, airflow_ui["log"].read_text()[-3000:]
        assert f"{round(100 * (12 - len(failing)) / 12, 1)}%" in text
        assert f"Failing hosts ({len(failing)})" in text
        assert failing and all(i in text for i in failing), text  # every failing host is listed ...
        remediation = check_meta()["auditd.running"]["remediation"]
        assert remediation and text.count(remediation) == len(failing), text  # ... with its remediation
        chart = page.locator("img[alt='compliance trend']")
        assert chart.evaluate("img => img.complete && img.naturalWidth") > 300
        assert "<script>alert(1)</script>" in text and alerts == []  # shown as text, never run
        page.screenshot(path=str(ARTIFACTS / "dashboard-fleet.png"), full_page=True)

        day = LAST_DAY.isoformat()
        page.click(f"a[href='host/{failing[0]}?day={day}']")  # the fleet's day goes with the link
        page.wait_for_url(f"{base}/ec2-audit/host/{failing[0]}?day={day}")
        rows = page.locator("h2:has-text('History') + table tr")
        assert rows.count() == 1 + 30  # header + one row per stored day
        text = page.inner_text("body")
        assert "NON_COMPLIANT" in text and f"Observations on {day} (1)" in text
        page.screenshot(path=str(ARTIFACTS / "dashboard-host.png"), full_page=True)
        earlier = (LAST_DAY - timedelta(days=29)).isoformat()  # the host's history picks the day shown
        page.click(f"a[href='?day={earlier}']")
        page.wait_for_url(f"{base}/ec2-audit/host/{failing[0]}?day={earlier}")
        assert f"Observations on {earlier} (1)" in page.inner_text("body")

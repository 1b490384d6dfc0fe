"""The UI path a new user takes, in a real headless Chromium against a real Airflow on the local stack.

`airflow standalone` (api-server, scheduler, dag-processor, triggerer; LocalExecutor) runs on a LocalStack
(moto server, a small simulated fleet on 127.42.5.x, SMTP sink). The test signs in on Airflow's own login
page, opens the DAG's trigger dialog, presses Trigger without touching a param and sees the run succeed; then
picks Backfill in the same dialog, backfills two past days and sees both runs succeed and rebuild their
reports from stored evidence without contacting any host. Screenshots go to .local/artifacts/.

It fails when any optional param's default is refused by the form (the Trigger button stays disabled).
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from devstack.procs import PROJECT, wait_for
from devstack.stack.local_stack import LocalStack
from devstack.stack.standalone import Api, Standalone
from devstack.standins.aws.seed import REGION, clients
from devstack.standins.hosts.fleet import SSH_PORT
from include.evidence.records import RunSummary
from tests._components import CHROMIUM

pytestmark = pytest.mark.needs_chromium
ARTIFACTS = PROJECT / ".local" / "artifacts"
DAG_ID = "ec2_audit_compliance"
USER = "operator"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Two past days, well over 36 h old: mode auto → rebuild.
BACKFILL_DAYS = [date.today() - timedelta(days=9), date.today() - timedelta(days=8)]
RUN_TIMEOUT = 420  # seconds for one run (or the backfill) to finish; every wait below is bounded


def fleet() -> list[dict]:
    """Three healthy-ish hosts on 127.42.5.x (other tests use other 127.42.x ranges)."""
    hosts = []
    for octet, name, profile in ((1, "ui-web-1", "compliant"), (2, "ui-db-1", "auditd_stopped"),
                                 (3, "ui-api-1", "compliant")):
        address = f"127.42.5.{octet}"
        hosts.append({"address": address, "port": SSH_PORT, "name": name, "environment": "prod", "profile": profile,
                      "behaviour": "ok", "identity": {"hostname": f"ip-{address.replace('.', '-')}"}})
    return hosts


def seed_backfill_days(stack: LocalStack) -> dict[str, str]:
    """Evidence for the backfill days, as an earlier live run stored it; returns day → seeding run id."""
    from include.evidence.store import EvidenceStore

    store = EvidenceStore(clients(stack.endpoint, REGION)[2], "ec2_audit_evidence")
    store.ensure_tables()
    seeded = {}
    for day in BACKFILL_DAYS:
        iso, run_id = day.isoformat(), f"seed-{day.isoformat()}"
        items = [{"instance_id": h["instance_id"], "audit_date": iso, "item_type": "instance", "run_id": run_id,
                  "status": "COMPLIANT", "failed_checks": [], "region": REGION, "account_id": "123456789012",
                  "checked_at": f"{iso}T06:01:00Z", "output_sha256": "ab" * 32,
                  "tags": {"Name": h["name"], "Environment": "prod"}} for h in stack.fleet]
        store.put_items(items)
        store.put_summary(iso, RunSummary(run_id=run_id, discovered=len(items), checked=len(items),
                                          status_counts={"COMPLIANT": len(items)}, compliance_pct=100.0), 400)
        seeded[iso] = run_id
    return seeded


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-trigger")
    with LocalStack(root, fleet()) as stack:
        seeded = seed_backfill_days(stack)
        # Every run here misses its report deadline (0.6 s): only runs with alert_recipients are told.
        with Standalone(stack, root, [DAG_ID], {"EC2_AUDIT_REPORT_DEADLINE_MINUTES": "0.01"}, user=USER) as af:
            yield {"base": af.base, "api": af.api, "stack": stack, "seeded": seeded, "log": af.log,
                   "password": af.password, "report_dir": af.airflow_home / "reports" / "ec2_audit"}


def pick_date_time(page, trigger, day: date, clock: str) -> None:
    """The backfill form's From/To pickers: open the popover, type the date and time (UTC), close it."""
    from playwright.sync_api import expect

    trigger.click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    expect(popover).to_be_visible()
    popover.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
    popover.get_by_placeholder("HH:mm").fill(clock)
    page.get_by_role("dialog").get_by_text("Date Range", exact=True).click()  # outside the popover: closes it
    expect(popover).to_have_count(0)
    expect(trigger).to_contain_text(day.strftime("%Y"))


def finished(api: Api, run_ids: set[str] | None = None, run_type: str | None = None, count: int = 1):
    runs = [r for r in api.runs(DAG_ID) if (run_ids is None or r["dag_run_id"] in run_ids)
            and (run_type is None or r["run_type"] == run_type)]
    if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def test_trigger_with_defaults_then_backfill_two_past_days_from_the_same_dialog(airflow):
    from playwright.sync_api import expect, sync_playwright

    base, api = airflow["base"], airflow["api"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    diagnose = lambda: airflow["log"].read_text(errors="replace")[-4000:]  # noqa: E731
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            page.goto(f"{base}/auth/login?next={base}/dags/{DAG_ID}")  # Airflow's own login page
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", airflow["password"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/dags/{DAG_ID}**", timeout=60_000)

            # ---- Single run, every param at its default.
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            expect(dialog.get_by_text("Run Parameters")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "ui-trigger-form.png"), full_page=True)
            trigger = dialog.get_by_role("button", name="Trigger")
            expect(trigger).to_be_enabled(timeout=15_000)  # was disabled: "Run Parameters" invalid with the defaults
            expect(dialog.get_by_text("This field is required")).to_have_count(0)
            before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
            trigger.click()
            new = wait_for(lambda: {r["dag_run_id"] for r in api.runs(DAG_ID)} - before, 60, "a run created by Trigger")
            assert len(new) == 1
            (run_id,) = new
            runs = wait_for(lambda: finished(api, new), RUN_TIMEOUT, f"run {run_id} to finish", diagnose)
            page.screenshot(path=str(ARTIFACTS / "ui-trigger-done.png"), full_page=True)
            assert runs[0]["state"] == "success", api.task_failures(DAG_ID, run_id) + diagnose()
            assert runs[0]["run_type"] == "manual"
            today = datetime.now(timezone.utc).date().isoformat()
            live_report = airflow["report_dir"] / f"compliance-{today}.json"
            assert json.loads(live_report.read_text())["mode"] == "live"  # the defaults: live, report in the home

            # ---- Backfill two past days from the same dialog.
            page.goto(f"{base}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            dialog.get_by_text("Backfill", exact=True).first.click()
            for n, (day, clock) in enumerate(((BACKFILL_DAYS[0], "00:00"), (BACKFILL_DAYS[-1], "23:00"))):
                pick_date_time(page, dialog.get_by_test_id("datetime-input").nth(n), day, clock)
            expect(dialog.get_by_text("2 runs will be triggered.")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "ui-backfill-form.png"), full_page=True)
            run_backfill = dialog.get_by_role("button", name="Run Backfill")
            expect(run_backfill).to_be_enabled(timeout=15_000)
            run_backfill.click()
            runs = wait_for(lambda: finished(api, run_type="backfill", count=2), RUN_TIMEOUT,
                            "two backfill runs to finish", diagnose)
            page.goto(f"{base}/dags/{DAG_ID}/runs")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(ARTIFACTS / "ui-backfill-done.png"), full_page=True)
            assert len(runs) == 2
            assert all(r["state"] == "success" for r in runs), [api.task_failures(DAG_ID, r["dag_run_id"]) for r in runs]
            assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in BACKFILL_DAYS]
            for r in runs:  # the form sent the defaults as they stand, and the run's own check accepted them
                assert (r.get("conf") or {}).get("waivers_file") in (None, ""), r.get("conf")
        except BaseException:  # what the browser showed when it went wrong, for the artifacts
            page.screenshot(path=str(ARTIFACTS / "ui-failure.png"), full_page=True)
            (ARTIFACTS / "ui-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()

    # Both days rebuilt from stored evidence; no host was contacted (the stored items are the seed's, untouched).
    from include.evidence.store import EvidenceStore

    store = EvidenceStore(clients(airflow["stack"].endpoint, REGION)[2], "ec2_audit_evidence")
    for day in BACKFILL_DAYS:
        iso = day.isoformat()
        report = json.loads((airflow["report_dir"] / f"compliance-{iso}.json").read_text())
        assert report["mode"] == "rebuild", report
        assert "no host was contacted" in (airflow["report_dir"] / f"compliance-{iso}.html").read_text()
        items = [it.to_item() for it in store.day_items(iso)]
        assert len(items) == len(airflow["stack"].fleet)
        assert {it["run_id"] for it in items} == {airflow["seeded"][iso]}  # a live run would have rewritten them


def test_a_run_that_misses_its_report_deadline_sends_a_late_notice(airflow):
    """The DeadlineAlert through the real scheduler and triggerer: the run is not done 0.6 s after it was
    queued, so its alert_recipients get the LATE email (include/notify/deadline.py) in the SMTP sink."""
    api, stack = airflow["api"], airflow["stack"]
    run_id = api.trigger(DAG_ID, {"alert_recipients": ["late@example.test"], "recipients": [], "mode": "live"})
    wait_for(lambda: finished(api, {run_id}), RUN_TIMEOUT, f"run {run_id} to finish",
             lambda: airflow["log"].read_text()[-3000:])

    def late_mail():
        import email

        for path in stack.received_mail():
            message = email.message_from_bytes(path.read_bytes())
            if message["Subject"].startswith("LATE") and "late@example.test" in message["To"]:
                return message
        return None

    message = wait_for(late_mail, 120, "the late-report email", lambda: airflow["log"].read_text()[-3000:])
    assert "the audit report for" in message["Subject"] and "not out 0.01 min after the run was queued" in message["Subject"]
    body = message.get_payload(decode=True) or b"".join(p.get_payload(decode=True) or b"" for p in message.walk())
    assert run_id.encode() in body

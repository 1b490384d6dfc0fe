"""report_dir as a local folder (a path or file://) works as before: same names, each file replaced atomically
(temp file in the same folder + os.replace), plain paths in XCom; send reads them back; bad values fail early."""
from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from include.report.built import Built
from include.settings.params import AuditParams
from include.tasks.params import audit_params

DAY = "2031-03-15"
NAMES = {"html": f"compliance-{DAY}.html", "csv": f"compliance-{DAY}.csv", "json": f"compliance-{DAY}.json",
         "trend_png": f"compliance-{DAY}-trend.png", "email_html": f"compliance-{DAY}.email.html"}


def _report(run_id="run-local"):
    from include.report.build import build_report

    items = [{"instance_id": "i-0000000000000001", "audit_date": DAY, "run_id": run_id, "status": "COMPLIANT",
              "failed_checks": [], "name": "a", "environment": "prod", "region": "us-east-1"},
             {"instance_id": "i-0000000000000002", "audit_date": DAY, "run_id": run_id, "status": "NON_COMPLIANT",
              "failed_checks": ["auditd.running"], "name": "b", "environment": "prod", "region": "us-east-1"}]
    from include.evidence.records import EvidenceItem

    return build_report([EvidenceItem.from_item(it) for it in items], audit_date=DAY, discovered=2, run_id=run_id, mode="live",
                        generated_at=datetime(2031, 3, 15, 6, tzinfo=timezone.utc), trend_png=b"\x89PNG fake chart")


@pytest.fixture
def replaces(monkeypatch):
    """Every os.replace(src, dst) call, still performed."""
    calls, real = [], os.replace

    def spy(src, dst, *a, **kw):
        calls.append((os.fspath(src), os.fspath(dst)))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", spy)
    return calls


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_local_folder_same_names_each_file_replaced_atomically(tmp_path, replaces, as_url):
    from include.report.build import write_report

    folder = tmp_path / "nested" / "reports"  # created, parents too
    report_dir = folder.as_uri() if as_url else str(folder)
    first = write_report(_report("run-1"), report_dir, DAY, run_id="run-1", mode="live")
    assert first == {kind: str(folder / name) for kind, name in NAMES.items()}  # plain local paths, as before
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES.values())  # no temp file left behind
    for name in NAMES.values():
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644

    replaces.clear()
    report = _report("run-2")
    second = write_report(report, report_dir, DAY, run_id="run-2", mode="live")
    assert second == first
    # Each file arrived whole under its name: written beside it as a dot-temp file, then os.replace'd.
    assert sorted(os.path.basename(dst) for _, dst in replaces) == sorted(NAMES.values())
    for src, dst in replaces:
        assert os.path.dirname(src) == str(folder) == os.path.dirname(dst)
        assert os.path.basename(src).startswith(f".{os.path.basename(dst)}.")
    assert (folder / NAMES["csv"]).read_text(encoding="utf-8") == report.csv
    assert (folder / NAMES["html"]).read_text(encoding="utf-8") == report.html
    assert (folder / NAMES["trend_png"]).read_bytes() == b"\x89PNG fake chart"
    assert json.loads((folder / NAMES["json"]).read_text())["run_id"] == "run-2"


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    from include.report.build import write_report

    write_report(_report("run-1"), str(tmp_path), DAY, run_id="run-1")
    before = (tmp_path / NAMES["html"]).read_bytes()
    real = os.replace

    def fail_on_html(src, dst, *a, **kw):
        if os.fspath(dst).endswith(".html") and not os.fspath(dst).endswith(".email.html"):
            raise OSError("disk full")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", fail_on_html)
    with pytest.raises(OSError, match="disk full"):
        write_report(_report("run-2"), str(tmp_path), DAY, run_id="run-2")
    assert (tmp_path / NAMES["html"]).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temp file is cleaned up


def test_send_reads_the_written_files_and_attaches_their_bytes(tmp_path, monkeypatch):
    from include.notify import email as notify
    from include.report.build import write_report
    from include.tasks import audit as pipeline

    report = _report()
    paths = write_report(report, str(tmp_path), DAY, run_id="run-local")

    class Store:
        def emailed_by(self, day):
            return None

        def mark_emailed(self, day, run_id):
            self.marked = (day, run_id)

    sent = []
    monkeypatch.setattr(pipeline, "evidence_store", lambda params: Store())
    monkeypatch.setattr(notify, "send_report_email", lambda **kw: sent.append(kw))
    built = Built(DAY, "run-local", "live", subject=report.subject, paths=paths)
    pipeline.send(AuditParams(recipients=["a@example.test"], report_dir=str(tmp_path)), built)
    [mail] = sent
    assert mail["html"] == report.email_html
    assert [(name, bytes(data)) for name, data in mail["attachments"]] == [
        (NAMES["csv"], report.csv.encode()), (NAMES["trend_png"], b"\x89PNG fake chart")]


def test_send_report_email_attaches_bytes_under_their_names(monkeypatch):
    from airflow.providers.smtp.hooks import smtp

    from include.notify import email as notify

    seen = {}

    class Hook:
        from_email = None

        def __init__(self, smtp_conn_id):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_email_smtp(self, *, to, subject, html_content, files, from_email):
            seen.update(to=to, files={os.path.basename(f): open(f, "rb").read() for f in files}, sender=from_email)

    monkeypatch.setattr(smtp, "SmtpHook", Hook)
    notify.send_report_email(conn_id="smtp_default", recipients=["a@example.test"], subject="s", html="<p>x</p>",
                             attachments=[("compliance-x.csv", b"a,b\n"), ("chart.png", b"\x89PNG")])
    assert seen == {"to": ["a@example.test"], "files": {"compliance-x.csv": b"a,b\n", "chart.png": b"\x89PNG"},
                    "sender": notify.DEFAULT_FROM}
    with pytest.raises(ValueError, match="not a file name"):
        notify.send_report_email(conn_id="smtp_default", recipients=["a@example.test"], subject="s", html="x",
                                 attachments=[("..", b"")])


@pytest.mark.parametrize("value", [None, "", "/var/reports", "reports/rel", "file:///var/reports",
                                   "s3://bucket/prefix", "s3://bucket", "s3://other_conn@bucket/p"])
def test_report_dir_accepts_local_folders_and_s3(value):
    audit_params({"report_dir": value})


@pytest.mark.parametrize("value, says", [("s3:///prefix", "names no bucket"),
                                         ("nosuchfs://bucket/prefix", "no filesystem for nosuchfs://")])
def test_a_bad_report_dir_fails_at_once_naming_the_param(value, says):
    with pytest.raises(ValueError, match=f"param report_dir: .*{says}"):
        audit_params({"report_dir": value})

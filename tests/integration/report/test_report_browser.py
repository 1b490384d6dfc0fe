"""The report as a person sees it: rendered by a real headless Chromium at mail-client width.

Checks layout, not pixels: the page renders, the title and the trend chart are visible, and nothing
spills past the viewport (a wide table would force horizontal scrolling in a mail client).
"""
from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem
from include.report.build import build_report, write_report
from include.report.trend import render_png, trend_points
from tests._components import CHROMIUM
from tests.factories import run_summaries, stored_item

pytestmark = pytest.mark.needs_chromium
WIDTH = 1300  # wider than the report's 1100 px column: the right margin must stay empty


def chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=60)


def sample_items(n: int = 60) -> list[EvidenceItem]:
    statuses = ["COMPLIANT"] * 6 + ["NON_COMPLIANT"] * 3 + ["UNREACHABLE", "AUTH_FAILED"]
    items = []
    for i in range(n):
        status = statuses[i % len(statuses)]
        failed = ["auditd.running", "cwagent.log_stream_fresh"] if status == "NON_COMPLIANT" else []
        items.append(EvidenceItem.from_item(stored_item(
            f"i-{i:017x}", status, failed, detail=lambda c: f"{c} failed on this host",
            name=f"web-{i}" if i % 7 else "<script>alert(1)</script>", environment=["prod", "staging", "dev"][i % 3],
            region="us-east-1", account_id="123456789012", private_ip=f"10.0.{i // 250}.{i % 250}",
            status_detail="connection refused" if status == "UNREACHABLE" else "")))
    return items


def test_report_renders_in_headless_chromium(tmp_path):
    day = "2026-11-23"
    summaries = [{"audit_date": f"2026-11-{d:02d}", "compliance_pct": Decimal(50 + d),
                  "status_counts": {"NON_COMPLIANT": 20 - d // 2}} for d in range(1, 24)]
    png = render_png(trend_points(run_summaries(summaries), day), "trend")
    report = build_report(sample_items(), audit_date=day, discovered=62, run_id="run-1", mode="live",
                          generated_at=datetime(2026, 11, 23, 6, tzinfo=timezone.utc), check_meta=check_meta(),
                          trend_png=png)
    paths = write_report(report, tmp_path, day)
    shot = tmp_path / "report.png"
    result = chromium(f"--window-size={WIDTH},2400", f"--screenshot={shot}", Path(paths["html"]).as_uri())
    assert shot.exists(), result.stderr.decode(errors="replace")[-2000:]

    dom = chromium("--dump-dom", Path(paths["html"]).as_uri()).stdout.decode()
    assert "<script>alert(1)</script>" not in dom  # escaped text, never markup
    assert "EC2 audit compliance — 2026-11-23" in dom

    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size[0] == WIDTH
    top = image.crop((0, 0, WIDTH, 60))
    assert min(top.getdata()) < 100  # the title is drawn
    # The chart (green line, red bars) shows near the top: look for non-grey colour in the first 600 px.
    colour = Image.open(shot).convert("RGB").crop((0, 60, WIDTH, 600))
    assert any(abs(r - g) > 60 or abs(g - b) > 60 for r, g, b in colour.getdata())
    # Nothing wider than the viewport: the report's content column ends well before the right edge.
    right_edge = image.crop((WIDTH - 150, 0, WIDTH, image.size[1]))
    assert min(right_edge.getdata()) > 200, "content spills to the right edge (horizontal overflow)"

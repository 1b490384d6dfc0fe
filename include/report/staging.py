"""The verify batches' items, staged beside the report for the report step, so it need not read the day back.

Each verify batch try writes the items it stored (exactly the dicts it put into DynamoDB) as one gzip'd JSON
lines file under `<report_dir>/.staging/<day>/<run>/`. `build_report` takes an item from there only when the
day's digest (include/evidence/digest.py, written from DynamoDB when the day was sealed) names the same run, status
and item hash (of every field a reader sees) for that instance; every other instance (checked by an earlier run, written by a try whose
file was lost, or a report_dir this worker cannot see) is read from DynamoDB. So the report is always the
stored evidence; staging only saves reading it twice. The folder is removed once the report is written.
"""
from __future__ import annotations

import gzip
import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

from include.report import storage as report_store

log = logging.getLogger(__name__)

FOLDER = ".staging"
KEEP_DAYS = 3  # a worker whose local report_dir the report step never sees removes its own leftovers after this


def _safe(text: str) -> str:
    return report_store.safe_name(text, 150)


def folder(report_dir: str, audit_date: str, run_id: str) -> str:
    return report_store.join(report_dir, f"{FOLDER}/{_safe(audit_date)}/{_safe(run_id)}")


def write_batch(report_dir: str, audit_date: str, run_id: str, label: str, items: list[dict]) -> str | None:
    """One file for one batch try; a failure is logged, never raised (the report then reads DynamoDB)."""
    if not items:
        return None
    try:
        where = folder(report_dir, audit_date, run_id)
        report_store.prepare(where)
        url = report_store.join(where, f"{_safe(label)}-{uuid.uuid4().hex[:8]}.jsonl.gz")
        body = "".join(json.dumps(it, separators=(",", ":"), default=str) + "\n" for it in items)
        report_store.put(url, gzip.compress(body.encode(), compresslevel=1))
        prune(report_dir, audit_date)
        return url
    except Exception as exc:  # noqa: BLE001 - staging only saves a read; the evidence is already stored
        log.warning("could not stage %d items for the report (%s): it will read them from DynamoDB", len(items), exc)
        return None


def _files(where: str) -> list[str]:
    if report_store.is_local(where):
        from pathlib import Path

        path = Path(where)
        return sorted(str(p) for p in path.glob("*.jsonl.gz")) if path.is_dir() else []
    location = report_store.location(where)
    try:
        return sorted(str(p) for p in location.iterdir() if p.name.endswith(".jsonl.gz"))
    except FileNotFoundError:
        return []


def read(report_dir: str, audit_date: str, run_id: str) -> dict[str, dict]:
    """Every staged item of the run, by instance id (a later try's item of an instance wins: files sort by
    name, but one instance is stored by one try only: a retry skips what its run stored)."""
    items: dict[str, dict] = {}
    try:
        for url in _files(folder(report_dir, audit_date, run_id)):
            for line in gzip.decompress(report_store.read_bytes(url)).decode().splitlines():
                if line:
                    it = json.loads(line)
                    items[it["instance_id"]] = it
    except Exception as exc:  # noqa: BLE001 - unreadable staging: read everything from DynamoDB
        log.warning("staged items unreadable (%s): the report reads the day from DynamoDB", exc)
        return {}
    return items


def matching(digest: Mapping[str, Any], staged: Mapping[str, dict]) -> tuple[list[dict], list[str]]:
    """(staged items the digest vouches for, ids to read from DynamoDB). Pure.

    A staged copy is used only when the hash of everything a reader sees in it (day_digest.item_sha256,
    recomputed here, never taken from the copy) starts as the stored item's does: status and run alone would let
    a copy with other failed_checks or check details through."""
    from include.evidence.digest import ITEM_HASH_HEX, item_sha256

    found, missing = [], []
    for iid, entry in digest.items():
        it = staged.get(iid)
        if (it is not None and entry.item and it.get("run_id") == entry.run_id and it.get("status") == entry.status
                and item_sha256(it)[:ITEM_HASH_HEX] == entry.item):
            found.append(it)
        else:
            missing.append(iid)
    return found, missing


def prune(report_dir: str, today: str, keep_days: int = KEEP_DAYS) -> list[str]:
    """Remove a local report_dir's staging folders of days more than `keep_days` before `today`: on a worker
    (Celery, Edge) whose local folder the report step cannot see, nobody else would. Object stores: an S3
    lifecycle rule on the `.staging/` prefix does it (docs)."""
    from datetime import date, timedelta
    from pathlib import Path

    if not report_store.is_local(report_dir):
        return []
    root = Path(report_store.join(report_dir, FOLDER))
    try:
        cutoff = (date.fromisoformat(today) - timedelta(days=keep_days)).isoformat()
    except ValueError:
        return []
    removed = []
    for day_dir in sorted(root.iterdir()) if root.is_dir() else []:
        if day_dir.is_dir() and day_dir.name < cutoff:
            shutil.rmtree(day_dir, ignore_errors=True)
            removed.append(day_dir.name)
    return removed


def clear(report_dir: str, audit_date: str, run_id: str) -> None:
    where = folder(report_dir, audit_date, run_id)
    try:
        if report_store.is_local(where):
            from pathlib import Path

            shutil.rmtree(where, ignore_errors=True)
            for empty in (Path(where).parent, Path(where).parent.parent):  # the day's folder, then .staging
                if empty.is_dir() and not any(empty.iterdir()):
                    empty.rmdir()
        else:
            for url in _files(where):
                report_store.location(url).unlink()
    except Exception as exc:  # noqa: BLE001 - a leftover staging file costs disk, not correctness
        log.warning("could not remove the staged items %s: %s", where, exc)


"""Evidence items, hosts and outcomes as the tests build them: one builder per shape, so a field the code adds
or renames changes here once. An item comes in the shape the code under test meets it in: as the store returns
it (`stored_item`, a dict) or as the typed record (`evidence_item`). A test names the fields it is about; a
test file keeps a short preset (its `item(...)`) when many of its tests share the same ones."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from include.core.host import Host, HostOutcome
from include.evidence import digest as day_digest
from include.evidence.records import EvidenceItem, RunSummary

REGION, ACCOUNT = "us-east-1", "123456789012"

Detail = str | Callable[[str], str]  # a check's detail: the same text for each, or made from the check id


def verdicts(checks: Iterable[str], status: str = "FAIL", detail: Detail = "off") -> dict[str, dict[str, str]]:
    """check id → {status, detail}, as an item's `checks` holds them."""
    return {c: {"status": status, "detail": detail(c) if callable(detail) else detail} for c in checks}


def stored_item(iid: str, status: str = "COMPLIANT", failed: Iterable[str] = (), *, detail: Detail = "off",
                **fields) -> dict:
    """An evidence item as the store returns it: its status, its failed checks with a FAIL verdict each (unless
    `checks` is given), and the other `fields` as given."""
    failed = list(failed)
    return {"instance_id": iid, "status": status, "failed_checks": failed, "checks": verdicts(failed, detail=detail),
            **fields}


def hashed(item: dict) -> dict:
    """`item` with the hash evidence.instance_item stores in it (the one the day's digest vouches for)."""
    return {**item, day_digest.ITEM_HASH: day_digest.item_sha256(item)}


def evidence_item(iid: str, failed: Iterable[str] = (), *, advisory: Iterable[str] = (), passing: Iterable[str] = (),
                  errors: Iterable[str] = (), status: str | None = None, detail: Detail = "off",
                  **fields) -> EvidenceItem:
    """The typed record: FAIL verdicts for the failed and advisory checks, PASS ("ok") for `passing`, ERROR
    ("no output") for `errors` (unless `checks` is given); NON_COMPLIANT when a check failed, else COMPLIANT
    (unless `status` is given)."""
    failed, advisory = list(failed), list(advisory)
    fields.setdefault("checks", {**verdicts((*failed, *advisory), detail=detail), **verdicts(passing, "PASS", "ok"),
                                 **verdicts(errors, "ERROR", "no output")})
    fields.setdefault("advisory_failed", advisory)
    return EvidenceItem(instance_id=iid, status=status or ("NON_COMPLIANT" if failed else "COMPLIANT"),
                        failed_checks=failed, **fields)


def host(iid: str = "i-0abc", address: str = "10.0.0.5", *, region: str = REGION, account: str = ACCOUNT,
         **fields) -> Host:
    """A discovered host reached at `address` (private_ip, tags, ... only when given)."""
    return Host(iid, region, account, address, **fields)


def outcome(iid: str = "i-0abc", status=None, *, output: bytes = b"out", **fields) -> HostOutcome:
    """What reaching a host gave: its output (status None: it answered), or the status that stopped it."""
    return HostOutcome(iid, status, output=output, **fields)


def run_summaries(rows: Iterable[Mapping[str, Any]]) -> dict[str, RunSummary]:
    """Audit day → run summary, as EvidenceStore.summaries returns them, from stored-shape rows with `audit_date`."""
    return {str(row["audit_date"]): RunSummary.from_item(row) for row in rows}

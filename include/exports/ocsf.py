"""OCSF export: the day's evidence as OCSF Compliance Finding events (class 2003, category Findings), JSON Lines.

One event per (host, check) recorded in the day's evidence items: the check's verdict (PASS/FAIL/ERROR/
NOT_APPLICABLE) is the compliance status, the instance is the resource (and the device, and the cloud account), the
framework requirements of the check (catalogue `Check.frameworks`) are `compliance.requirements`/`standards`, and
the evidence the verdict rests on (the output's SHA-256, its size, the transport, the run) is carried. A host with no
recorded verdict (UNREACHABLE, AUTH_FAILED, HOST_KEY_MISMATCH, ERROR before any check ran, or NOT_APPLICABLE without
a session) still gets one event per check that always runs (the opt-in canary aside), with compliance status
Unknown (or Other for NOT_APPLICABLE), so a SIEM sees the gap instead of silence.

Every event is built with the pinned `py-ocsf-models` (pydantic) models, so it is validated as it is made;
`ComplianceFinding` 0.10.0 lacks the OCSF Cloud profile's `cloud` attribute, which is added here with the library's
own `Cloud` object (its `DetectionFinding` has it). `ocsf_events` is pure; `write_ocsf` writes the file through
include/report/storage.py (a local folder or s3://).
"""
from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from py_ocsf_models import OCSF_VERSION
from py_ocsf_models.events.findings.activity_id import ActivityID
from py_ocsf_models.events.findings.compliance_finding import ComplianceFinding
from py_ocsf_models.events.findings.compliance_finding_type_id import ComplianceFindingTypeID
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.events.findings.status_id import StatusID
from py_ocsf_models.objects.account import Account
from py_ocsf_models.objects.account import TypeID as AccountTypeID
from py_ocsf_models.objects.check import Check as OcsfCheck
from py_ocsf_models.objects.cloud import Cloud
from py_ocsf_models.objects.compliance import Compliance
from py_ocsf_models.objects.compliance_status import StatusID as ComplianceStatusID
from py_ocsf_models.objects.device import Device, DeviceType
from py_ocsf_models.objects.evidence_artifacts import EvidenceArtifacts
from py_ocsf_models.objects.finding_info import FindingInformation
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Feature, Product
from py_ocsf_models.objects.remediation import Remediation
from py_ocsf_models.objects.resource_details import ResourceDetails

from include import __version__
from include.core.status import CheckStatus, Status
from include.evidence.records import EvidenceItem

PRODUCT = Product(name="EC2 audit compliance", vendor_name="ec2-audit-compliance", version=__version__,
                  feature=Feature(name="ec2_audit_compliance"))
EVENT_NAMESPACE = uuid.UUID("6f1c1f2e-3d5a-5b7e-9c41-2b8e0f6a7d13")  # event uids: uuid5 of the event's identity
NOT_EVALUATED = "NOT_EVALUATED"  # status_code of an event for a host whose session yielded no verdict

# check status → (compliance status, finding status): a failure is New until waived (then Suppressed), what needs
# no action is Resolved, and what could not be judged is New with a Warning/Unknown compliance status.
CHECK_STATUS: dict[str, tuple[ComplianceStatusID, StatusID]] = {
    CheckStatus.PASS.value: (ComplianceStatusID.Pass, StatusID.Resolved),
    CheckStatus.FAIL.value: (ComplianceStatusID.Fail, StatusID.New),
    CheckStatus.ERROR.value: (ComplianceStatusID.Warning, StatusID.New),
    CheckStatus.NOT_APPLICABLE.value: (ComplianceStatusID.Other, StatusID.Resolved),
    NOT_EVALUATED: (ComplianceStatusID.Unknown, StatusID.New),
}
SEVERITY = {"critical": SeverityID.Critical, "high": SeverityID.High, "medium": SeverityID.Medium,
            "low": SeverityID.Low}


class ComplianceFindingEvent(ComplianceFinding):
    """The pinned ComplianceFinding plus the OCSF Cloud profile's `cloud` (metadata.profiles names it)."""

    cloud: Cloud


def file_name(audit_date: str) -> str:
    return f"compliance-{audit_date}.ocsf.jsonl"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _when(checked_at: str, fallback: datetime) -> datetime:
    try:
        moment = datetime.fromisoformat(checked_at)
    except (TypeError, ValueError):
        return fallback.astimezone(timezone.utc)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _caption(value) -> str:
    return {"InProgress": "In Progress"}.get(value.name, value.name)


def _compliance_caption(status: ComplianceStatusID, check_status: str) -> str:
    """The caption of the compliance status; for Other, the source's own word (NOT_APPLICABLE)."""
    return check_status if status == ComplianceStatusID.Other else status.name


def _listed_in(it: EvidenceItem, check_id: str) -> str:
    """Which evidence list names the check: failed_checks decide the status, advisory_failed do not."""
    for name in ("failed_checks", "advisory_failed", "waived_checks"):
        if check_id in getattr(it, name):
            return name
    return ""


def _verdicts(it: EvidenceItem, check_meta: Mapping[str, dict]) -> list[tuple[str, str, str]]:
    """(check id, check status, detail) for each check of the host: its recorded verdicts, or, with none, every
    always-run check as NOT_EVALUATED (NOT_APPLICABLE for a NOT_APPLICABLE host) with the host's reason."""
    if it.checks:
        return [(cid, str((v or {}).get("status", "")) or CheckStatus.ERROR.value, str((v or {}).get("detail", "")))
                for cid, v in sorted(it.checks.items())]
    status = CheckStatus.NOT_APPLICABLE.value if it.status == Status.NOT_APPLICABLE else NOT_EVALUATED
    detail = f"host {it.status or 'without a status'}: {it.status_detail}".rstrip(": ")
    return [(cid, status, detail) for cid in sorted(check_meta) if not check_meta[cid].get("opt_in")]


@dataclass(frozen=True)
class _HostParts:
    """What every event of one host shares, built (and validated) once per host rather than once per check:
    pydantic keeps a model instance it is handed as it is, so its checks' events reuse these."""
    account: str
    compliant: bool | None
    cloud: Cloud
    device: Device | None
    resources: list[ResourceDetails]
    evidences: list[EvidenceArtifacts]


def _host_parts(it: EvidenceItem) -> _HostParts:
    account = it.account_id or "unknown"
    arn = f"arn:aws:ec2:{it.region}:{it.account_id}:instance/{it.instance_id}" if it.account_id and it.region else ""
    compliant = {Status.COMPLIANT: True, Status.NON_COMPLIANT: False}.get(Status.parse(it.status))
    return _HostParts(
        account, compliant,
        cloud=Cloud(provider="AWS", region=it.region or None,
                    account=Account(uid=account, name=account, type_id=AccountTypeID.AWS_Account,
                                    type="AWS Account")),
        device=Device(uid=it.instance_id, instance_uid=it.instance_id, hostname=it.display_name or it.instance_id,
                      name=it.display_name, ip=it.private_ip, region=it.region, type_id=DeviceType.Virtual,
                      type="Virtual", is_compliant=compliant) if it.private_ip and it.region else None,
        resources=[ResourceDetails(
            uid=it.instance_id, name=it.display_name or None, region=it.region or None, cloud_partition="aws",
            type="AWS::EC2::Instance", labels=[f"{k}:{v}" for k, v in sorted(it.tags.items())] or None,
            data={"account_id": it.account_id, "private_ip": it.private_ip, "arn": arn,
                  "environment": it.display_environment, "platform": it.platform})],
        evidences=[EvidenceArtifacts(name="host script output", data={
            "output_sha256": it.output_sha256, "output_bytes": it.output_bytes,
            "output_truncated": it.output_truncated, "transport": it.transport, "reached_by": it.reached_by,
            "run_id": it.run_id, "checked_at": it.checked_at})])


@dataclass(frozen=True)
class _CheckParts:
    """What every host's event of one check with one verdict shares (built once per run and verdict)."""
    severity: SeverityID
    title: str
    compliance: Compliance
    remediation: Remediation | None


def _check_parts(check_id: str, check_status: str, meta: Mapping[str, Any]) -> _CheckParts:
    compliance_status, _ = CHECK_STATUS.get(check_status, (ComplianceStatusID.Other, StatusID.Other))
    severity = SEVERITY.get(str(meta.get("severity", "")), SeverityID.Unknown)
    title = str(meta.get("title") or check_id)
    standards = list(meta.get("frameworks", {})) or None
    requirements = list(meta.get("requirements", ())) or None
    return _CheckParts(
        severity, title,
        compliance=Compliance(
            control=check_id, desc=title, requirements=requirements, standards=standards,
            status_id=compliance_status,
            checks=[OcsfCheck(uid=check_id, name=title, severity=str(meta.get("severity") or "") or None,
                              severity_id=severity, status=_compliance_caption(compliance_status, check_status),
                              status_id=compliance_status,
                              standards=standards, version=__version__)]),
        remediation=Remediation(desc=meta["remediation"], references=list(meta.get("references", ())) or None)
        if meta.get("remediation") else None)


def _event(it: EvidenceItem, check_id: str, check_status: str, detail: str, meta: Mapping[str, Any],
           generated_at: datetime, host: _HostParts | None = None,
           check: _CheckParts | None = None) -> ComplianceFindingEvent:
    host = host or _host_parts(it)
    check = check or _check_parts(check_id, check_status, meta)
    _, finding_status = CHECK_STATUS.get(check_status, (ComplianceStatusID.Other, StatusID.Other))
    listed = _listed_in(it, check_id)
    if check_status == CheckStatus.FAIL and (listed == "waived_checks" or it.status == Status.WAIVED):
        finding_status = StatusID.Suppressed  # an approved, unexpired waiver covers it (include/verify/waivers.py)
    when = _when(it.checked_at, generated_at)
    finding_uid = f"ec2-audit/{host.account}/{it.region or 'unknown'}/{it.instance_id}/{check_id}"  # stable across days
    return ComplianceFindingEvent(
        activity_id=ActivityID.Create, activity_name="Create",
        type_uid=ComplianceFindingTypeID.Create, type_name="Compliance Finding: Create",
        class_name="Compliance Finding", category_name="Findings",
        time=_millis(when), time_dt=when,
        severity_id=check.severity, severity=_caption(check.severity),
        status_id=finding_status, status=_caption(finding_status), status_code=check_status,
        status_detail=detail or None,
        message=f"{check_id} {check_status} on {it.instance_id}" + (f": {detail}" if detail else ""),
        metadata=Metadata(
            product=PRODUCT, version=OCSF_VERSION, profiles=["cloud"], event_code=check_id,
            uid=str(uuid.uuid5(EVENT_NAMESPACE, f"{it.audit_date}/{it.run_id}/{it.instance_id}/{check_id}")),
            correlation_uid=it.run_id or None, processed_time=generated_at.astimezone(timezone.utc)),
        finding_info=FindingInformation(uid=finding_uid, title=check.title, desc=meta.get("rationale") or None,
                                        types=["Audit trail"], created_time=_millis(when), created_time_dt=when),
        compliance=check.compliance,
        remediation=check.remediation,
        cloud=host.cloud,
        device=host.device,
        resources=host.resources,
        evidences=host.evidences,
        unmapped={"audit_date": it.audit_date, "run_id": it.run_id, "mode": it.mode, "host_status": it.status,
                  "host_status_detail": it.status_detail, "profile": it.profile, "listed_in": listed},
    )


HOST_FIELDS = ("cloud", "device", "resources", "evidences")
CHECK_FIELDS = ("compliance", "remediation")
FIELD_ORDER = tuple(ComplianceFindingEvent.model_fields)


def _dumped(model: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON form of these shared fields, as the event's own model_dump would write them."""
    return model.model_dump(mode="json", exclude_none=True, include=set(fields))


def iter_ocsf_events(items: list[EvidenceItem], check_meta: Mapping[str, dict], generated_at: datetime) -> Iterator[dict]:
    """The day's events one at a time (pure): hosts by instance id, checks by id; JSON-ready dicts. Each event
    is a validated model; the parts it shares with the host's other events, or with the check's on other hosts,
    are turned into JSON once (at 10,000 hosts × 16 checks the repeated work was most of build_report's CPU)."""
    checks: dict[tuple[str, str], tuple[_CheckParts, dict | None]] = {}
    for it in sorted(items, key=lambda i: i.instance_id):
        host, host_json = _host_parts(it), None
        for check_id, check_status, detail in _verdicts(it, check_meta):
            meta = check_meta.get(check_id, {})
            if (check_id, check_status) not in checks:
                checks[(check_id, check_status)] = (_check_parts(check_id, check_status, meta), None)
            check, check_json = checks[(check_id, check_status)]
            event = _event(it, check_id, check_status, detail, meta, generated_at, host, check)
            if host_json is None:
                host_json = _dumped(event, HOST_FIELDS)
            if check_json is None:
                check_json = _dumped(event, CHECK_FIELDS)
                checks[(check_id, check_status)] = (check, check_json)
            own = event.model_dump(mode="json", exclude_none=True, exclude=set(HOST_FIELDS + CHECK_FIELDS))
            parts = {**own, **host_json, **check_json}
            yield {name: parts[name] for name in FIELD_ORDER if name in parts}


def ocsf_events(items: list[EvidenceItem], check_meta: Mapping[str, dict], generated_at: datetime) -> list[dict]:
    """The day's events (pure): one per (host, check). At fleet scale prefer iter_ocsf_events into write_ocsf: a
    list holds ~19 KB of Python objects per event (16 checks × 10,000 hosts ≈ 3 GB), the file ~3 KB."""
    return list(iter_ocsf_events(items, check_meta, generated_at))


def to_jsonl(events: Iterable[dict]) -> bytes:
    """One compact JSON object per line, UTF-8, built line by line (no second copy of a list of strings)."""
    out = io.BytesIO()
    for event in events:
        out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        out.write(b"\n")
    return out.getvalue()


def write_ocsf(report_dir: str, audit_date: str, events: Iterable[dict]) -> str:
    """Write `compliance-YYYY-MM-DD.ocsf.jsonl` into report_dir (local folder or s3://, one whole-file write through
    include/report/storage.py); `events` is ocsf_events' list or iter_ocsf_events' generator. Returns its path/URL."""
    from include.report import storage as report_store

    directory = str(report_dir)
    report_store.prepare(directory)
    target = report_store.join(directory, file_name(audit_date))
    report_store.put(target, to_jsonl(events))
    return target

"""AWS Security Hub export (`securityhub` param): the day's failing checks as ASFF findings, one per (host, check).

Pure part: `findings()` turns the day's evidence items into the findings to import —
  * FAILED, RecordState ACTIVE, for every failing check of every host: the profile's `failed_checks`, the
    `advisory_failed` ones (ProductFields `ec2audit/advisory` = "true" and a severity one step lower), and
    waived failures (`ec2audit/waived` names the waiver; still FAILED: the check does fail);
  * PASSED for each check that had an open finding of ours and whose verdict today is PASS;
  * for a host that could not be verified (UNREACHABLE, AUTH_FAILED, HOST_KEY_MISMATCH, ERROR: models.Status
    `unverified`) a finding of its own, check `host.verified`, Compliance.Status WARNING with the status and
    its reason — not silence; PASSED (then RESOLVED) once the host is verified again;
  * the same finding re-imported with RecordState ARCHIVED for each instance that had an ACTIVE finding of
    ours and is gone — unless it is in `missing_evidence` (discovered, not recorded: a coverage gap is not a
    fixed host). A check that is not PASS today (ERROR, host unreachable) leaves its finding as it is: what
    was not seen is never "passed".
Only what the run re-checked is touched (`RunScope`): items of instances this run discovered are imported and
resolved; a finding is archived only when the run listed every running instance of the finding's account and
region (no `tag_filters`, no `instance_ids`) and the instance was not among them. A run narrowed by `regions`,
`accounts`, `tag_filters` or `instance_ids` leaves every other finding exactly as it is.
The `Id` is stable per (account, region, instance, check), so each day updates the same finding; CreatedAt and
FirstObservedAt are kept from the finding already in Security Hub.

Workflow (what AWS documents, and so what is done here):
  * "For findings from controls, if Compliance.Status is PASSED, then Security Hub automatically sets the
    workflow status to RESOLVED" — only for Security Hub's own control findings, not for ours (Security Hub
    User Guide, "Setting the workflow status of findings", findings-workflow-status.html);
  * "After a finding is created, BatchImportFindings cannot be used to update ... Workflow" (API Reference,
    BatchImportFindings) — a provider's Workflow on an update is ignored;
  * customers (and tools on their behalf) set it with BatchUpdateFindings (User Guide, "BatchImportFindings
    for finding providers": "Customers, SIEMs, ticketing, SOAR, and other types of tools must use the
    BatchUpdateFindings operation ...");
  * Security Hub itself resets RESOLVED/NOTIFIED to NEW when Compliance.Status goes from PASSED to FAILED or
    RecordState from ARCHIVED to ACTIVE (same Workflow page), so a regression reopens the finding by itself.
So `export()` imports the PASSED finding with BatchImportFindings and then sets Workflow.Status RESOLVED for
it with BatchUpdateFindings (one more permission: securityhub:BatchUpdateFindings).
Severity and Types go both top-level (needed to create) and in FindingProviderFields, the only place
BatchImportFindings may update them ("Finding providers also should not use BatchImportFindings to update
... Severity, Types. Instead, finding providers use FindingProviderFields").

I/O part: `open_findings()` (GetFindings, paginated, filtered to our product ARN, our Id prefix and ACTIVE —
and checked again here, so a finding of another product is never touched), `export()` (BatchImportFindings
≤ 100 a call, FailedFindings and throttling retried with backoff, bounded; BatchUpdateFindings ≤ 100 a call)
and `export_day()`, the one call the DAG makes. A refused permission or a hub that is not enabled is a
`SecurityHubError` naming it — never "0 findings sent" as success; findings still failing after the retries
raise too, with the counts.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from include.aws.errors import DENIED, THROTTLED, error_code
from include.core.status import Status
from include.evidence.records import EvidenceItem

SCHEMA_VERSION = "2018-10-08"
ID_PREFIX = "ec2-audit"
FLAG = "ec2audit/"  # ProductFields keys
MAX_BATCH = 100  # BatchImportFindings and BatchUpdateFindings: at most 100 findings a request
MAX_FINDING_BYTES = 240 * 1024  # "The maximum allowed size for a finding is 240 Kb"
MAX_REQUIREMENTS = 32  # Compliance.RelatedRequirements: at most 32 items
MAX_PAGES = 10_000  # GetFindings pages (100 each) read at most: a bounded loop, 1,000,000 findings
# Security Hub's own throttling/limit answers, on top of the shared transient codes.
RETRYABLE = THROTTLED | {"LimitExceededException", "InternalException", "TooManyRequests"}
# FailedFindings codes that another attempt cannot fix (everything else is retried).
PERMANENT = DENIED | {"InvalidInput", "InvalidInputException", "InvalidAccess", "InvalidAccessException"}
NOT_ENABLED = {"InvalidAccess", "InvalidAccessException"}  # the account is not subscribed to Security Hub

SEVERITY = {"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW"}
LOWER = {"CRITICAL": "HIGH", "HIGH": "MEDIUM", "MEDIUM": "LOW", "LOW": "INFORMATIONAL",
         "INFORMATIONAL": "INFORMATIONAL"}
STANDARDS = "Software and Configuration Checks/Industry and Regulatory Standards/"
# Catalogue framework → the ASFF types taxonomy classifier (Industry and Regulatory Standards category).
FRAMEWORK_TYPES = {"CIS AL2023": "CIS Host Hardening Benchmarks", "NIST 800-53r5": "NIST 800-53 Controls (USA)",
                   "PCI DSS 4.0.1": "PCI-DSS Controls", "ISO 27001:2022": "ISO 27001 Controls", "SOC 2": "SOC 2"}
DEFAULT_TYPE = STANDARDS + FRAMEWORK_TYPES["CIS AL2023"]
# An unverified host's own finding: its check id (the Id's last part) and what it says per status.
UNVERIFIED_CHECK = "host.verified"
UNVERIFIED_SEVERITY = {Status.HOST_KEY_MISMATCH: "high"}  # a changed host key may be someone else's host


@dataclass(frozen=True)
class RunScope:
    """What one run re-checked in one account: the regions it discovered in, the running instances it found
    there, and whether that listing was the whole of those regions (no tag_filters / instance_ids). Security
    Hub findings outside it are not this run's to resolve or archive."""

    regions: frozenset[str] = frozenset()
    instances: frozenset[str] = frozenset()
    complete: bool = False

    def covers(self, instance_id: str) -> bool:
        return instance_id in self.instances

    def gone(self, region: str, instance_id: str) -> bool:
        """The run listed every running instance of that region and this one was not among them."""
        return self.complete and region in self.regions and instance_id not in self.instances


def run_scopes(instances: Mapping[str, Iterable[str]], narrowed: bool) -> dict[str, RunScope]:
    """Discovery's inventory (scope key → running ids, include/aws/accounts.py) → account (as the `accounts`
    param names it; "" = the connection's own) → RunScope. `narrowed`: tag_filters or instance_ids were set."""
    from include.aws.accounts import parse_scope

    regions: dict[str, set[str]] = {}
    found: dict[str, set[str]] = {}
    for key, ids in instances.items():
        account, region = parse_scope(key)
        regions.setdefault(account, set()).add(region)
        found.setdefault(account, set()).update(ids)
    return {a: RunScope(frozenset(regions[a]), frozenset(found[a]), complete=not narrowed) for a in regions}


class SecurityHubError(RuntimeError):
    """The export did not happen as asked: names the permission, the setting or the findings that failed."""

    def __init__(self, message: str, result: "ExportResult | None" = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    sent: int = 0  # findings Security Hub accepted (each counted once, whatever its attempts)
    failed: int = 0  # findings still failing after the retries
    archived: int = 0  # of those sent: RecordState ARCHIVED (vanished instances)
    resolved: int = 0  # PASSED findings whose Workflow.Status was set to RESOLVED
    calls: int = 0  # BatchImportFindings requests
    update_calls: int = 0  # BatchUpdateFindings requests
    retried: int = 0  # finding re-sends after a FailedFindings answer
    throttled: int = 0  # requests retried after a throttling answer
    errors: dict[str, int] = field(default_factory=dict)  # FailedFindings error code → findings, last attempt

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- naming
def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def product_arn(account_id: str, region: str) -> str:
    """The account's own ("default") product: what a custom integration imports under."""
    return f"arn:{partition(region)}:securityhub:{region}:{account_id}:product/{account_id}/default"


def finding_id(account_id: str, region: str, instance_id: str, check_id: str) -> str:
    return f"{ID_PREFIX}/{account_id}/{region}/{instance_id}/{check_id}"


def parse_finding_id(value: str) -> tuple[str, str, str, str] | None:
    """(account, region, instance, check) of one of our ids, else None."""
    parts = value.split("/")
    if len(parts) != 5 or parts[0] != ID_PREFIX or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3], parts[4]


def timestamp(value: datetime | str) -> str:
    """ASFF's timestamp form, UTC with milliseconds: 2025-01-31T23:00:00.000Z."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- the pure builder
def _item(value: EvidenceItem | Mapping[str, Any]) -> EvidenceItem:
    return value if isinstance(value, EvidenceItem) else EvidenceItem.from_item(value)


def _requirements(check_id: str, meta: Mapping[str, Any]) -> list[str]:
    found = meta.get("requirements")
    if found is None:  # an older check_meta: ask the catalogue, if it knows (getattr: optional there)
        from include.checks import catalogue

        requirements_of = getattr(catalogue, "requirements_of", None)
        found = requirements_of(check_id) if requirements_of else []
    return [str(r)[:256] for r in found][:MAX_REQUIREMENTS]


def _types(meta: Mapping[str, Any]) -> list[str]:
    frameworks = meta.get("frameworks") or {}
    types = [STANDARDS + FRAMEWORK_TYPES[fw] for fw in FRAMEWORK_TYPES if fw in frameworks]
    return types or [DEFAULT_TYPE]


def _waiver(item: EvidenceItem, check_id: str) -> str:
    for entry in item.waived_checks:  # "check: waiver label" (include/verify/waivers.py)
        cid, _, label = str(entry).partition(": ")
        if cid == check_id:
            return label or "waived"
    return ""


def _resource(item: EvidenceItem, account_id: str, region: str) -> dict[str, Any]:
    part = partition(region)
    tags = {k: v for k, v in (("Name", item.display_name), ("Environment", item.display_environment)) if v}
    resource: dict[str, Any] = {"Type": "AwsEc2Instance", "Partition": part, "Region": region,
                                "Id": f"arn:{part}:ec2:{region}:{account_id}:instance/{item.instance_id}"}
    if tags:
        resource["Tags"] = tags
    if item.private_ip:
        resource["Details"] = {"AwsEc2Instance": {"IpV4Addresses": [item.private_ip]}}
    return resource


def _finding(item: EvidenceItem, check_id: str, meta: Mapping[str, Any], *, account_id: str, region: str,
             arn: str, now: str, status: str, advisory: bool, waiver: str,
             before: Mapping[str, Any] | None) -> dict[str, Any]:
    title = str(meta.get("title") or check_id)
    label = SEVERITY.get(str(meta.get("severity", "")).lower(), "MEDIUM")
    if advisory:
        label = LOWER[label]
    verdict = item.checks.get(check_id) or {}
    detail = str(verdict.get("detail", ""))
    words = [str(meta.get("rationale") or title)]
    if detail:
        words.append(f"Evidence ({'passes' if status == 'PASSED' else 'fails'} on {item.audit_date}): {detail}")
    types = _types(meta)
    severity = {"Label": label, "Original": str(meta.get("severity") or label.lower())}
    fields = {"check_id": check_id, "audit_date": item.audit_date, "run_id": item.run_id, "profile": item.profile,
              "transport": item.transport, "output_sha256": item.output_sha256, "host_status": item.status,
              "advisory": "true" if advisory else "false", "waived": waiver}
    finding: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": finding_id(account_id, item.region or region, item.instance_id, check_id),
        "ProductArn": arn, "GeneratorId": check_id, "AwsAccountId": account_id,
        "ProductName": "EC2 audit trail", "CompanyName": "ec2-audit",
        "Types": types, "Severity": severity,
        "FindingProviderFields": {"Types": types, "Severity": severity},
        "CreatedAt": (before or {}).get("CreatedAt") or now, "UpdatedAt": now,
        "FirstObservedAt": (before or {}).get("FirstObservedAt") or now,
        "LastObservedAt": timestamp(item.checked_at) if item.checked_at else now,
        "Title": (("[advisory] " if advisory else "") + title)[:256],
        "Description": " ".join(words)[:1024],
        "Remediation": {"Recommendation": {"Text": str(meta.get("remediation") or "See the audit report.")[:512]}},
        "ProductFields": {FLAG + k: str(v)[:2048] for k, v in fields.items() if v},
        "Resources": [_resource(item, account_id, item.region or region)],
        "Compliance": {"Status": status},
        "RecordState": "ACTIVE",
    }
    requirements = _requirements(check_id, meta)
    if requirements:
        finding["Compliance"]["RelatedRequirements"] = requirements
    return finding


def _archived(before: Mapping[str, Any], finding_key: str, *, account_id: str, region: str, arn: str,
              now: str) -> dict[str, Any]:
    """A vanished instance's finding sent back as Security Hub holds it, ARCHIVED (rebuilt from its id if only
    the id is known)."""
    keep = {k: v for k, v in before.items() if k in _IMPORTABLE}
    if not keep.get("Resources"):
        _, fregion, instance_id, check_id = parse_finding_id(finding_key) or ("", region, "", "")
        part = partition(fregion)
        keep = {"SchemaVersion": SCHEMA_VERSION, "Id": finding_key, "ProductArn": arn, "GeneratorId": check_id,
                "AwsAccountId": account_id, "Types": [DEFAULT_TYPE], "CreatedAt": now,
                "Severity": {"Label": "INFORMATIONAL"}, "Title": check_id,
                "Description": f"{check_id} on {instance_id}: the instance is no longer in the audited fleet.",
                "Resources": [{"Type": "AwsEc2Instance", "Partition": part, "Region": fregion,
                               "Id": f"arn:{part}:ec2:{fregion}:{account_id}:instance/{instance_id}"}]}
    fields = dict(keep.get("ProductFields") or {})
    fields[FLAG + "archived"] = "instance no longer in the fleet"
    return {**keep, "ProductFields": {k: v for k, v in fields.items() if not k.startswith("aws/")},
            "UpdatedAt": now, "RecordState": "ARCHIVED"}


# What a finding from GetFindings may carry back into BatchImportFindings (not the fields Security Hub adds
# itself — ProcessedAt, Workflow, WorkflowState, Note ... — which an import may not set on an update).
_IMPORTABLE = frozenset({"SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "ProductName",
                         "CompanyName", "Types", "Severity", "FindingProviderFields", "CreatedAt",
                         "FirstObservedAt", "LastObservedAt", "Title", "Description", "Remediation",
                         "ProductFields", "Resources", "Compliance"})


def _resolved_already(before: Mapping[str, Any]) -> bool:
    return ((before.get("Compliance") or {}).get("Status") == "PASSED"
            and (before.get("Workflow") or {}).get("Status") == "RESOLVED")


def _unverified_meta(item: EvidenceItem, status: Status) -> dict[str, Any]:
    reason = " ".join((item.status_detail or "no reason recorded").split())
    return {"title": f"EC2 audit could not verify this host: {status}",
            "severity": UNVERIFIED_SEVERITY.get(status, "medium"), "requirements": [],
            "rationale": f"On {item.audit_date} the audit could not verify this host ({status}: {reason}); its "
                         "audit trail is unproven, not compliant. Earlier findings of its checks are left open.",
            "remediation": "Restore the audit's access to the host (network, SSM agent, login, sudoers); for "
                           "HOST_KEY_MISMATCH confirm the new host key before accepting it (docs/SECURITY.md)."}


def findings(items: Iterable[EvidenceItem | Mapping[str, Any]], check_meta: Mapping[str, Mapping[str, Any]],
             account_id: str, region: str, product_arn: str, generated_at: datetime | str,
             previous_ids: Iterable[str] | Mapping[str, Mapping[str, Any]] = (),
             missing_evidence: Iterable[str] = (), *, scope: RunScope) -> list[dict]:
    """The ASFF findings to import for one account's day (pure; see the module docstring).

    `previous_ids`: our ACTIVE findings already in Security Hub — their ids, or id → finding as GetFindings
    returns it (then CreatedAt/FirstObservedAt are kept, archived findings are re-sent as stored, and a
    finding already PASSED and RESOLVED is not sent again). Items of another account are left out (the caller
    exports each account with its own client: BatchImportFindings takes only the caller's own findings).
    `missing_evidence`: instances discovered today without evidence — their findings are left alone.
    `scope`: what this run re-checked in this account (required: no caller gets a fleet-wide archive by
    forgetting it); items of other instances are left out, findings outside it are left alone.
    Sorted by Id, each Id once.
    """
    now = timestamp(generated_at)
    previous: Mapping[str, Mapping[str, Any]] = (previous_ids if isinstance(previous_ids, Mapping)
                                                 else {i: {} for i in previous_ids})
    previous = {k: v for k, v in previous.items() if parse_finding_id(k) and parse_finding_id(k)[0] == account_id}
    out: dict[str, dict] = {}
    present: set[str] = set()
    for raw in items:
        item = _item(raw)
        if item.item_type != "instance" or (item.account_id and item.account_id != account_id):
            continue
        if not scope.covers(item.instance_id):  # another run's host: not re-checked here
            continue
        present.add(item.instance_id)
        kwargs = dict(account_id=account_id, region=region, arn=product_arn, now=now)
        status = Status.parse(item.status)
        fid = finding_id(account_id, item.region or region, item.instance_id, UNVERIFIED_CHECK)
        if status is not None and status.unverified:
            out[fid] = _finding(item, UNVERIFIED_CHECK, _unverified_meta(item, status), status="WARNING",
                                advisory=False, waiver="", before=previous.get(fid), **kwargs)
        elif status is not None and fid in previous and not _resolved_already(previous[fid]):
            label = str((previous[fid].get("Severity") or {}).get("Label") or "medium").lower()
            out[fid] = _finding(item, UNVERIFIED_CHECK, {"title": "EC2 audit verified this host again",
                                                         "severity": label, "requirements": []},
                                status="PASSED", advisory=False, waiver="", before=previous[fid], **kwargs)
        failing = {c: False for c in item.failed_checks}
        failing.update({c: True for c in item.advisory_failed if c not in failing})
        for entry in item.waived_checks:
            failing.setdefault(str(entry).partition(": ")[0], False)
        for check_id, advisory in sorted(failing.items()):
            fid = finding_id(account_id, item.region or region, item.instance_id, check_id)
            out[fid] = _finding(item, check_id, check_meta.get(check_id, {}), status="FAILED", advisory=advisory,
                                waiver=_waiver(item, check_id), before=previous.get(fid), **kwargs)
        for check_id, verdict in sorted(item.checks.items()):
            fid = finding_id(account_id, item.region or region, item.instance_id, check_id)
            if (fid in previous and fid not in out and (verdict or {}).get("status") == "PASS"
                    and not _resolved_already(previous[fid])):
                out[fid] = _finding(item, check_id, check_meta.get(check_id, {}), status="PASSED",
                                    advisory=False, waiver="", before=previous[fid],
                                    **kwargs)
    keep = present | set(missing_evidence)
    for fid, before in sorted(previous.items()):
        _, fregion, instance_id, _ = parse_finding_id(fid)
        if instance_id not in keep and fid not in out and scope.gone(fregion, instance_id):
            out[fid] = _archived(before, fid, account_id=account_id, region=region, arn=product_arn, now=now)
    return [out[k] for k in sorted(out)]


# -- Security Hub calls
def _denied(exc: BaseException, permission: str, account_id: str = "", region: str = "") -> SecurityHubError | None:
    code, message = error_code(exc)
    message = " ".join(message.split())[:300]
    where = f" (account {account_id or '?'}, region {region or '?'})" if account_id or region else ""
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in DENIED or status == 403:  # 403 is a refusal whatever the body (an IAM layer may not speak JSON)
        return SecurityHubError(f"Security Hub refused {permission}{where}: {code}: {message} — grant "
                                f"{permission} to the audit's role")
    if code in NOT_ENABLED:
        return SecurityHubError(f"Security Hub is not enabled{where}: {code}: {message} — enable Security Hub "
                                f"in that account and region, or turn the securityhub param off")
    return None


def _call(fn: Callable[..., dict], permission: str, result: ExportResult | None, attempts: int,
          sleep: Callable[[float], None], base_delay: float, **kwargs) -> dict:
    """One request, throttling retried (bounded); a refusal is a SecurityHubError naming the permission."""
    for attempt in range(attempts):
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - sorted below: denied, throttled, or raised as it is
            refused = _denied(exc, permission)
            if refused is not None:
                refused.result = result
                raise refused from exc
            if error_code(exc)[0] not in RETRYABLE or attempt == attempts - 1:
                raise
            if result is not None:
                result.throttled += 1
            sleep(min(base_delay * 2 ** attempt, 20.0))
    raise AssertionError("unreachable")  # pragma: no cover


def open_findings(client, product_arn: str, account_id: str, *, max_pages: int = MAX_PAGES,
                  sleep: Callable[[float], None] = time.sleep, base_delay: float = 0.5) -> dict[str, dict]:
    """Our ACTIVE findings in this hub, Id → finding (GetFindings, 100 a page, NextToken followed, bounded).

    Filtered by the server (ProductArn, Id prefix, AwsAccountId, RecordState) and checked again here, so a
    finding of another product or account is never counted, resolved or archived."""
    filters = {"ProductArn": [{"Value": product_arn, "Comparison": "EQUALS"}],
               "AwsAccountId": [{"Value": account_id, "Comparison": "EQUALS"}],
               "Id": [{"Value": f"{ID_PREFIX}/{account_id}/", "Comparison": "PREFIX"}],
               "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}]}
    found: dict[str, dict] = {}
    token = None
    for _ in range(max_pages):
        kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = _call(client.get_findings, "securityhub:GetFindings", None, 8, sleep, base_delay, **kwargs)
        for f in page.get("Findings", []):
            fid = str(f.get("Id", ""))
            ours = parse_finding_id(fid)
            if (ours and ours[0] == account_id and f.get("ProductArn") == product_arn
                    and f.get("RecordState", "ACTIVE") == "ACTIVE"):
                found[fid] = f
        token = page.get("NextToken")
        if not token:
            return found
    raise SecurityHubError(f"GetFindings returned more than {max_pages} pages of our findings; not exporting "
                           "on a partial view")


def open_finding_ids(client, product_arn: str, account_id: str, **kwargs) -> set[str]:
    return set(open_findings(client, product_arn, account_id, **kwargs))


def export(client, findings: list[dict], *, keep_workflow: Iterable[str] = (), max_attempts: int = 5,
           base_delay: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> ExportResult:
    """Import `findings` (≤ 100 a request), retry FailedFindings and throttling (bounded, with backoff), then set
    Workflow.Status RESOLVED on the PASSED ones (BatchUpdateFindings, ≤ 100 a request) — except the ids in
    `keep_workflow` (a customer's SUPPRESSED stays theirs).

    Raises SecurityHubError (with `.result`) on a refused permission, a hub not enabled, or findings still
    failing after `max_attempts`."""
    result = ExportResult()
    by_id = {f["Id"]: f for f in findings}
    for fid, f in by_id.items():
        size = len(json.dumps(f, separators=(",", ":")).encode())
        if size > MAX_FINDING_BYTES:
            raise SecurityHubError(f"finding {fid} is {size} bytes, over Security Hub's 240 KB", result)
    pending = list(by_id)
    accepted: set[str] = set()
    last_errors: dict[str, tuple[str, str]] = {}
    for attempt in range(max_attempts):
        if not pending:
            break
        if attempt:
            result.retried += len(pending)
            sleep(min(base_delay * 2 ** (attempt - 1), 20.0))
        failed_now: dict[str, tuple[str, str]] = {}
        for start in range(0, len(pending), MAX_BATCH):
            chunk = pending[start:start + MAX_BATCH]
            result.calls += 1
            answer = _call(client.batch_import_findings, "securityhub:BatchImportFindings", result, 8, sleep,
                           base_delay, Findings=[by_id[i] for i in chunk])
            failures = {str(f.get("Id", "")): (str(f.get("ErrorCode", "")), str(f.get("ErrorMessage", "")))
                        for f in answer.get("FailedFindings", [])}
            if answer.get("FailedCount", len(failures)) and not failures:  # a count with no ids: all of them
                failures = {i: ("Unknown", "FailedCount without FailedFindings") for i in chunk}
            for code, message in failures.values():
                refused = _denied(_Coded(code, message), "securityhub:BatchImportFindings")
                if refused is not None:  # per finding, as AWS answers for a hub not enabled: no retry helps
                    result.sent, result.failed = len(accepted), len(by_id) - len(accepted)
                    refused.result = result
                    raise refused
            failed_now.update({i: e for i, e in failures.items() if i in by_id})
            accepted.update(i for i in chunk if i not in failures)
        last_errors.update(failed_now)
        # Retry what failed for a passing reason; a permanent code (invalid input) is reported, not re-sent.
        pending = [i for i in pending if i in failed_now and failed_now[i][0] not in PERMANENT]
    result.sent = len(accepted)
    result.archived = sum(1 for i in accepted if by_id[i].get("RecordState") == "ARCHIVED")
    failed = {i: e for i, e in last_errors.items() if i not in accepted}
    result.failed = len(failed)
    for code, _ in failed.values():
        result.errors[code] = result.errors.get(code, 0) + 1
    keep = set(keep_workflow)
    passed = [i for i in sorted(accepted) if (by_id[i].get("Compliance") or {}).get("Status") == "PASSED"
              and by_id[i].get("RecordState") != "ARCHIVED" and i not in keep]
    result.resolved = _resolve(client, passed, by_id, result, max_attempts, base_delay, sleep)
    if failed:
        sample = "; ".join(f"{i}: {c} {m}"[:200] for i, (c, m) in sorted(failed.items())[:3])
        raise SecurityHubError(f"Security Hub did not accept {len(failed)} of {len(by_id)} findings after "
                               f"{max_attempts} attempts ({result.sent} sent): {sample}", result)
    return result


class _Coded(Exception):
    """A FailedFindings entry shaped like a botocore error, for _denied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.response = {"Error": {"Code": code, "Message": message}}


def _resolve(client, ids: list[str], by_id: Mapping[str, dict], result: ExportResult, max_attempts: int,
             base_delay: float, sleep: Callable[[float], None]) -> int:
    """Workflow.Status RESOLVED for these (just imported as PASSED) findings; returns how many were set."""
    done: set[str] = set()
    pending = list(ids)
    unprocessed: dict[str, str] = {}
    for attempt in range(max_attempts):
        if not pending:
            break
        if attempt:
            sleep(min(base_delay * 2 ** (attempt - 1), 20.0))
        unprocessed = {}
        for start in range(0, len(pending), MAX_BATCH):
            chunk = pending[start:start + MAX_BATCH]
            result.update_calls += 1
            answer = _call(client.batch_update_findings, "securityhub:BatchUpdateFindings", result, 8, sleep,
                           base_delay, Workflow={"Status": "RESOLVED"},
                           FindingIdentifiers=[{"Id": i, "ProductArn": by_id[i]["ProductArn"]} for i in chunk],
                           Note={"Text": "The audit found this check passing again.",
                                 "UpdatedBy": "ec2-audit"})
            for entry in answer.get("UnprocessedFindings", []):
                ident = entry.get("FindingIdentifier") or {}
                unprocessed[str(ident.get("Id", ""))] = str(entry.get("ErrorCode", ""))
            done.update(i for i in chunk if i not in unprocessed)
        pending = [i for i in pending if i in unprocessed]
    if pending:
        sample = ", ".join(f"{i} ({unprocessed.get(i, '')})" for i in pending[:3])
        raise SecurityHubError(f"Security Hub imported {len(pending)} PASSED findings but did not set them "
                               f"RESOLVED after {max_attempts} attempts: {sample}", result)
    return len(done)


def export_day(client, items: Iterable[EvidenceItem | Mapping[str, Any]],
               check_meta: Mapping[str, Mapping[str, Any]], account_id: str, region: str,
               generated_at: datetime | str, *, scope: RunScope, missing_evidence: Iterable[str] = (),
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """The day's export for one account's hub (the DAG's one call): read our open findings, build, import,
    resolve — within `scope`, what this run re-checked. Returns JSON-able counts; raises SecurityHubError
    (see export)."""
    items = [_item(i) for i in items]
    arn = product_arn(account_id, region)
    before = open_findings(client, arn, account_id, sleep=sleep)
    built = findings(items, check_meta, account_id, region, arn, generated_at, previous_ids=before,
                     missing_evidence=missing_evidence, scope=scope)
    suppressed = {i for i, f in before.items() if (f.get("Workflow") or {}).get("Status") == "SUPPRESSED"}
    result = export(client, built, keep_workflow=suppressed, sleep=sleep)
    active = [f for f in built if f["RecordState"] == "ACTIVE"]
    return {"product_arn": arn, "open_before": len(before),
            "compliance_failed": sum(1 for f in active if f["Compliance"]["Status"] == "FAILED"),
            "compliance_passed": sum(1 for f in active if f["Compliance"]["Status"] == "PASSED"),
            "unverified": sum(1 for f in active if f["Compliance"]["Status"] == "WARNING"),
            "other_accounts": sum(1 for i in items if i.account_id and i.account_id != account_id),
            **{k: v for k, v in result.to_dict().items() if k != "errors"}}

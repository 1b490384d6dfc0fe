"""Security Hub as AWS documents it, where moto differs.

moto's GetFindings ignores its Filters and BatchImportFindings takes anything, and it has no
BatchUpdateFindings. Here, as AWS documents them: GetFindings applies the string filters (EQUALS, PREFIX,
CONTAINS and their negations — positive values OR'd, negative ones AND'd — on Id, ProductArn, GeneratorId,
AwsAccountId, Title, RecordState, ComplianceStatus, WorkflowStatus, SeverityLabel, ResourceId, ResourceType,
Type) and the ProductFields map filter, and refuses any other filter rather than ignoring it; MaxResults
1–100. BatchImportFindings takes at most 100 findings (else InvalidInputException); a finding without the
required ASFF fields, with bad values, over 240 KB, or not under this account's default product ARN fails in
FailedFindings (InvalidInput); with the hub not enabled every finding fails with InvalidAccess. A new finding
gets Workflow NEW, ProcessedAt, and FindingProviderFields from the top-level Severity/Types (or the reverse);
an update by Id keeps Workflow, Note, UserDefinedFields and VerificationState (an import cannot change them),
takes Severity/Types from FindingProviderFields unless a customer set them, and resets Workflow RESOLVED or
NOTIFIED to NEW when Compliance.Status leaves PASSED or RecordState goes ARCHIVED → ACTIVE. BatchUpdateFindings
(≤ 100 identifiers) sets Workflow, Note, VerificationState, Severity, Types, UserDefinedFields, Confidence and
Criticality; unknown findings come back in UnprocessedFindings. Faults on demand:
`POST /moto-api/ec2audit/securityhub-faults` `{"action": "BatchImportFindings", "ids": [...], "code":
"InternalException", "times": 1}` makes those findings fail that many times; calls per action and the largest
batch seen: `GET /moto-api/ec2audit/securityhub-calls`.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime

from devstack.clock import aws_millis, now
from devstack.standins.aws.patching import answer_with, count_calls

SECURITYHUB_CALLS: dict[str, int] = {}  # Security Hub action → calls served (GET /moto-api/ec2audit/securityhub-calls)
SECURITYHUB_LARGEST: dict[str, int] = {}  # action → most findings in one request

REQUIRED = ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt", "UpdatedAt",
            "Title", "Description", "Resources")
CUSTOMER_OWNED = ("Note", "UserDefinedFields", "VerificationState", "Workflow", "WorkflowState")
PROVIDER_FIELDS = ("Severity", "Types", "Confidence", "Criticality", "RelatedFindings")
LABELS = {"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
WORKFLOWS = {"NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"}
KNOWN_FILTERS = {"Id", "ProductArn", "GeneratorId", "AwsAccountId", "Title", "ProductName", "CompanyName",
                 "RecordState", "ComplianceStatus", "WorkflowStatus", "SeverityLabel", "ResourceId",
                 "ResourceType", "Type", "ProductFields"}
COMPARISONS = {"EQUALS": lambda v, w: v == w, "PREFIX": lambda v, w: v.startswith(w), "CONTAINS": lambda v, w: w in v,
               "NOT_EQUALS": lambda v, w: v != w, "PREFIX_NOT_EQUALS": lambda v, w: not v.startswith(w),
               "NOT_CONTAINS": lambda v, w: w not in v}
NEGATIVE = {"NOT_EQUALS", "PREFIX_NOT_EQUALS", "NOT_CONTAINS"}


def stamp() -> str:
    return aws_millis(now())


def invalid(message: str):
    from moto.securityhub.exceptions import SecurityHubClientError

    return SecurityHubClientError("InvalidInputException", message)


def not_enabled():
    from moto.securityhub.exceptions import SecurityHubClientError

    return SecurityHubClientError("InvalidAccessException", "Account is not subscribed to AWS Security Hub")


def body(response) -> dict:
    raw = response.body.decode() if isinstance(response.body, bytes) else response.body
    return json.loads(raw) if raw else {}


# -- GetFindings' filters
def values(finding: dict, key: str) -> list:
    simple = {"Id", "ProductArn", "GeneratorId", "AwsAccountId", "Title", "ProductName", "CompanyName"}
    if key in simple:
        return [finding.get(key)]
    return {"RecordState": lambda: [finding.get("RecordState", "ACTIVE")],
            "ComplianceStatus": lambda: [(finding.get("Compliance") or {}).get("Status")],
            "WorkflowStatus": lambda: [(finding.get("Workflow") or {}).get("Status")],
            "SeverityLabel": lambda: [(finding.get("Severity") or {}).get("Label")],
            "ResourceId": lambda: [r.get("Id") for r in finding.get("Resources") or []],
            "ResourceType": lambda: [r.get("Type") for r in finding.get("Resources") or []],
            "Type": lambda: list(finding.get("Types") or [])}[key]()


def matches(present: list, conditions: list[dict], get=lambda c: c.get("Value")) -> bool:
    present = [v for v in present if isinstance(v, str)]
    pos = [c for c in conditions if c.get("Comparison") not in NEGATIVE]
    neg = [c for c in conditions if c.get("Comparison") in NEGATIVE]
    for c in conditions:
        if c.get("Comparison") not in COMPARISONS:
            raise invalid(f"Comparison {c.get('Comparison')!r} is not one of {sorted(COMPARISONS)}")
    ok_pos = not pos or any(COMPARISONS[c["Comparison"]](v, get(c) or "") for c in pos for v in present)
    ok_neg = all(COMPARISONS[c["Comparison"]](v, get(c) or "") for c in neg for v in present)
    return ok_pos and ok_neg


def selected(finding: dict, filters: dict) -> bool:
    for key, conditions in filters.items():
        if key == "ProductFields":
            fields = finding.get("ProductFields") or {}
            for c in conditions:
                if not matches([fields.get(c.get("Key"))] if c.get("Key") in fields else [], [c]):
                    return False
        elif not matches(values(finding, key), conditions):
            return False
    return True


# -- BatchImportFindings: validation, a new finding, an update by Id
def problems(finding: dict, account: str, region: str) -> str:
    missing = [k for k in REQUIRED if not finding.get(k)]
    fpf = finding.get("FindingProviderFields") or {}
    if not (finding.get("Severity") or fpf.get("Severity")):
        missing.append("Severity")
    if not (finding.get("Types") or fpf.get("Types")):
        missing.append("Types")
    if missing:
        return f"Finding is missing required fields: {missing}"
    if finding["AwsAccountId"] != account:
        return f"AwsAccountId {finding['AwsAccountId']} is not the calling account {account}"
    if finding["ProductArn"] != f"arn:aws:securityhub:{region}:{account}:product/{account}/default":
        return f"ProductArn {finding['ProductArn']} is not this account's default product in {region}"
    for key in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        if key in finding:
            try:
                datetime.fromisoformat(str(finding[key]).replace("Z", "+00:00"))
            except ValueError:
                return f"{key} {finding[key]!r} is not a timestamp"
    for severity in (finding.get("Severity"), fpf.get("Severity")):
        if severity and severity.get("Label") not in LABELS:
            return f"Severity.Label {severity.get('Label')!r} is not one of {sorted(LABELS)}"
    if finding.get("RecordState", "ACTIVE") not in ("ACTIVE", "ARCHIVED"):
        return f"RecordState {finding.get('RecordState')!r} is not ACTIVE or ARCHIVED"
    status = (finding.get("Compliance") or {}).get("Status")
    if status is not None and status not in ("PASSED", "WARNING", "FAILED", "NOT_AVAILABLE"):
        return f"Compliance.Status {status!r} is not valid"
    if not isinstance(finding["Resources"], list) or not finding["Resources"]:
        return "Finding must contain at least one resource in the Resources array"
    if len(json.dumps(finding).encode()) > 240 * 1024:
        return "Finding is larger than 240 KB"
    return ""


def create(finding: dict, processed_at: str) -> dict:
    fpf = dict(finding.get("FindingProviderFields") or {})
    for key in PROVIDER_FIELDS:
        if key in finding and key not in fpf:
            fpf[key] = finding[key]
        elif key in fpf and key not in finding:
            finding[key] = fpf[key]
    workflow = (finding.get("Workflow") or {}).get("Status", "NEW")
    return {**finding, "FindingProviderFields": fpf, "RecordState": finding.get("RecordState", "ACTIVE"),
            "Workflow": {"Status": workflow if workflow in WORKFLOWS else "NEW"},
            "WorkflowState": "NEW", "ProcessedAt": processed_at}


def update(old: dict, finding: dict, processed_at: str, customer_set: set[str]) -> dict:
    """`customer_set`: the top-level fields a customer set on this finding (BatchUpdateFindings)."""
    incoming = {k: v for k, v in finding.items() if k not in CUSTOMER_OWNED}
    merged = {**old, **incoming, "ProcessedAt": processed_at}
    fpf = {**(old.get("FindingProviderFields") or {}), **(finding.get("FindingProviderFields") or {})}
    merged["FindingProviderFields"] = fpf
    for key in PROVIDER_FIELDS:
        if key in customer_set:
            merged[key] = old.get(key)  # set by a customer: an import does not change it
        elif key in (finding.get("FindingProviderFields") or {}):
            merged[key] = fpf[key]
        elif key in old:
            merged[key] = old[key]  # the provider should not update it top-level
    was = (old.get("Compliance") or {}).get("Status")
    now_status = (merged.get("Compliance") or {}).get("Status")
    reopened = (was == "PASSED" and now_status in ("FAILED", "WARNING", "NOT_AVAILABLE")) or (
        old.get("RecordState") == "ARCHIVED" and merged.get("RecordState", "ACTIVE") == "ACTIVE")
    if reopened and (old.get("Workflow") or {}).get("Status") in ("RESOLVED", "NOTIFIED"):
        merged["Workflow"] = {"Status": "NEW"}
        merged["WorkflowState"] = "NEW"
    return merged


def checked_update_request(params: dict) -> tuple[list[dict], str | None, dict | None]:
    """BatchUpdateFindings' (identifiers, workflow status, note), refused as AWS refuses them."""
    identifiers = params.get("FindingIdentifiers") or []
    if not 1 <= len(identifiers) <= 100:
        raise invalid(f"FindingIdentifiers must hold between 1 and 100 identifiers, not {len(identifiers)}")
    workflow = (params.get("Workflow") or {}).get("Status")
    if workflow is not None and workflow not in WORKFLOWS:
        raise invalid(f"Workflow.Status {workflow!r} is not one of {sorted(WORKFLOWS)}")
    note = params.get("Note")
    if note is not None and not (note.get("Text") and note.get("UpdatedBy")):
        raise invalid("Note needs Text and UpdatedBy")
    return identifiers, workflow, note


class FindingsHub:
    """The stand-in's Security Hub state beyond moto's: injected faults and the fields customers set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the counters, the faults and every backend's findings
        self.faults: dict[tuple[str, str], list[str]] = {}  # (action, finding id) → error codes still to answer
        self.customer_set: dict[str, set[str]] = {}  # finding id → top-level fields a customer set

    def fault(self, action: str, finding_id: str) -> str:
        codes = self.faults.get((action, finding_id))
        if not codes:
            return ""
        code = codes.pop(0)
        if not codes:
            self.faults.pop((action, finding_id))
        return code

    @staticmethod
    def _largest(action: str, n: int) -> None:
        SECURITYHUB_LARGEST[action] = max(SECURITYHUB_LARGEST.get(action, 0), n)

    def get_findings(self, response):
        backend = response.securityhub_backend
        if not backend.enabled:
            raise not_enabled()
        params = body(response)
        filters = params.get("Filters") or {}
        unknown = set(filters) - KNOWN_FILTERS
        if unknown:
            raise invalid(f"the Security Hub stand-in does not filter by {sorted(unknown)}")
        limit = params.get("MaxResults", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise invalid("MaxResults must be a number between 1 and 100")
        token = params.get("NextToken") or "0"
        if not token.isdigit():
            raise invalid("The NextToken is not valid")
        with self.lock:
            chosen = [json.loads(json.dumps(f.data)) for f in backend.findings if selected(f.data, filters)]
        start = int(token)
        answer = {"Findings": chosen[start:start + limit]}
        if start + limit < len(chosen):
            answer["NextToken"] = str(start + limit)
        return json.dumps(answer)

    def batch_import_findings(self, response):
        from moto.securityhub.models import Finding

        backend = response.securityhub_backend
        incoming = body(response).get("Findings") or []
        if not 1 <= len(incoming) <= 100:
            raise invalid(f"Findings must hold between 1 and 100 findings, not {len(incoming)}")
        with self.lock:
            self._largest("BatchImportFindings", len(incoming))
            failed, success, processed_at = [], 0, stamp()
            by_id = {f.id: f for f in backend.findings}
            for finding in incoming:
                fid = str(finding.get("Id", ""))
                if not backend.enabled:
                    failed.append({"Id": fid, "ErrorCode": "InvalidAccess",
                                   "ErrorMessage": "Account is not subscribed to AWS Security Hub"})
                    continue
                why = problems(finding, response.current_account, response.region)
                code = "InvalidInput" if why else self.fault("BatchImportFindings", fid)
                if code:
                    failed.append({"Id": fid, "ErrorCode": code, "ErrorMessage": why or "injected fault"})
                    continue
                if fid in by_id:
                    old = by_id[fid].data
                    by_id[fid].data = update(old, finding, processed_at, self.customer_set.get(old["Id"], set()))
                else:
                    by_id[fid] = Finding(fid, create(dict(finding), processed_at))
                    backend.findings.append(by_id[fid])
                success += 1
        return json.dumps({"FailedCount": len(failed), "SuccessCount": success, "FailedFindings": failed})

    def batch_update_findings(self, response):
        backend = response.securityhub_backend
        if not backend.enabled:
            raise not_enabled()
        params = body(response)
        identifiers, workflow, note = checked_update_request(params)
        with self.lock:
            self._largest("BatchUpdateFindings", len(identifiers))
            by_id = {f.id: f for f in backend.findings}
            processed, unprocessed = [], []
            for ident in identifiers:
                fid, arn = ident.get("Id", ""), ident.get("ProductArn", "")
                found = by_id.get(fid)
                code = "FindingNotFound" if found is None or found.data.get("ProductArn") != arn else self.fault(
                    "BatchUpdateFindings", fid)
                if code:
                    unprocessed.append({"FindingIdentifier": {"Id": fid, "ProductArn": arn}, "ErrorCode": code,
                                        "ErrorMessage": "injected fault" if found else "Finding not found"})
                    continue
                self._customer_update(fid, found.data, params, workflow, note)
                processed.append({"Id": fid, "ProductArn": arn})
        return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})

    def _customer_update(self, fid: str, data: dict, params: dict, workflow: str | None, note: dict | None) -> None:
        """What BatchUpdateFindings changes on one finding (under the lock); remembers what the customer set."""
        if workflow is not None:
            data["Workflow"] = {"Status": workflow}
            data["WorkflowState"] = {"NEW": "NEW", "NOTIFIED": "ASSIGNED", "RESOLVED": "RESOLVED",
                                     "SUPPRESSED": "DEFERRED"}[workflow]
        if note is not None:
            data["Note"] = {**note, "UpdatedAt": stamp()}
        for key in ("VerificationState", "UserDefinedFields", "Confidence", "Criticality", "Types"):
            if key in params:
                data[key] = params[key]
                self.customer_set.setdefault(fid, set()).add(key)
        if "Severity" in params:
            data["Severity"] = {**(data.get("Severity") or {}), **params["Severity"]}
            self.customer_set.setdefault(fid, set()).add("Severity")

    # -- POST /moto-api/ec2audit/securityhub-faults, GET /moto-api/ec2audit/securityhub-calls
    def set_faults(self, request, full_url, headers):
        asked = json.loads(request.data.decode() or "{}")
        with self.lock:
            for fid in asked.get("ids", []):
                self.faults.setdefault((asked.get("action", "BatchImportFindings"), fid), []).extend(
                    [asked.get("code", "InternalException")] * int(asked.get("times", 1)))
        return 200, {"Content-Type": "application/json"}, json.dumps({"faults": len(self.faults)})

    def calls(self, request, full_url, headers):
        with self.lock:
            answer = {"calls": dict(sorted(SECURITYHUB_CALLS.items())), "largest_batch": dict(SECURITYHUB_LARGEST)}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)


def security_hub_as_aws() -> None:
    """Patch moto's Security Hub responses with FindingsHub's."""
    from moto.moto_api._internal import urls as moto_api_urls
    from moto.securityhub import urls as securityhub_urls
    from moto.securityhub.responses import SecurityHubResponse as SH

    hub = FindingsHub()
    count_calls(SH, SECURITYHUB_CALLS, hub.lock)
    answer_with(SH, {"get_findings": hub.get_findings, "batch_import_findings": hub.batch_import_findings,
                     "batch_update_findings": hub.batch_update_findings})
    securityhub_urls.url_paths["{0}/findings/batchupdate$"] = SH.dispatch
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/securityhub-faults"] = hub.set_faults
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/securityhub-calls"] = hub.calls

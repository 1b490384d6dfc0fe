"""include/exports/securityhub.py: the pure ASFF builder and the export against a fake Security Hub client."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem
from include.exports import securityhub as sh
from tests.factories import evidence_item

ACCOUNT, REGION = "111122223333", "eu-west-1"
ARN = sh.product_arn(ACCOUNT, REGION)
DAY1, DAY2 = "2025-03-01T06:00:00Z", "2025-03-02T06:00:00Z"
META = check_meta()


def item(iid: str, failed=(), advisory=(), passing=(), errors=(), day="2025-03-01", **kw) -> EvidenceItem:
    return evidence_item(iid, failed, advisory=advisory, passing=passing, errors=errors, detail=lambda c: f"{c} failing",
                         audit_date=day, run_id=f"scheduled__{day}", profile="audit-trail", transport="ssh",
                         region=REGION, account_id=ACCOUNT, name=f"web-{iid}", environment="prod",
                         output_sha256="ab" * 32, checked_at=f"{day}T06:01:02Z", private_ip="10.0.0.5", **kw)


def whole(items, missing=()) -> sh.RunScope:
    """A run that listed all of REGION and found exactly these instances running."""
    ids = {(i.instance_id if isinstance(i, EvidenceItem) else i["instance_id"]) for i in items}
    return sh.RunScope(frozenset({REGION}), frozenset(ids | set(missing)), complete=True)


def build(items, generated_at=DAY1, previous=(), missing=(), scope=None):
    return sh.findings(items, META, ACCOUNT, REGION, ARN, generated_at, previous_ids=previous,
                       missing_evidence=missing, scope=scope or whole(items, missing))


def by_id(found):
    return {f["Id"]: f for f in found}


def fid(iid, check):
    return sh.finding_id(ACCOUNT, REGION, iid, check)


# -- the builder
def test_one_failed_finding_per_failing_check_with_stable_ids():
    items = [item("i-1", failed=["auditd.running", "cwagent.running"], advisory=["auditd.immutable"],
                  passing=["auditd.installed"]), item("i-2", passing=["auditd.running"])]
    day1, day2 = build(items), build(items, generated_at=DAY2)
    assert [f["Id"] for f in day1] == sorted([fid("i-1", "auditd.immutable"), fid("i-1", "auditd.running"),
                                              fid("i-1", "cwagent.running")])
    assert [f["Id"] for f in day1] == [f["Id"] for f in day2]  # the same findings, updated
    assert fid("i-1", "auditd.running") == f"ec2-audit/{ACCOUNT}/{REGION}/i-1/auditd.running"
    assert {f["Compliance"]["Status"] for f in day1} == {"FAILED"}
    assert {f["RecordState"] for f in day1} == {"ACTIVE"}
    assert "Workflow" not in day1[0]  # Security Hub's: NEW on creation, never ours to update


def test_finding_shape_from_the_catalogue_and_the_evidence():
    f = by_id(build([item("i-1", failed=["auditd.running"])]))[fid("i-1", "auditd.running")]
    assert f["SchemaVersion"] == "2018-10-08" and f["ProductArn"] == ARN
    assert ARN == f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default"
    assert f["GeneratorId"] == "auditd.running" and f["AwsAccountId"] == ACCOUNT
    assert f["Severity"] == {"Label": "CRITICAL", "Original": "critical"}
    assert f["FindingProviderFields"]["Severity"] == f["Severity"]
    assert f["Title"] == META["auditd.running"]["title"]
    assert f["Remediation"]["Recommendation"]["Text"] == META["auditd.running"]["remediation"]
    assert META["auditd.running"]["rationale"] in f["Description"] and "auditd.running failing" in f["Description"]
    assert all(t.startswith("Software and Configuration Checks/Industry and Regulatory Standards/") for t in f["Types"])
    (resource,) = f["Resources"]
    assert resource == {"Type": "AwsEc2Instance", "Partition": "aws", "Region": REGION,
                        "Id": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1",
                        "Tags": {"Name": "web-i-1", "Environment": "prod"},
                        "Details": {"AwsEc2Instance": {"IpV4Addresses": ["10.0.0.5"]}}}
    fields = f["ProductFields"]
    assert fields["ec2audit/output_sha256"] == "ab" * 32 and fields["ec2audit/run_id"] == "scheduled__2025-03-01"
    assert fields["ec2audit/audit_date"] == "2025-03-01" and fields["ec2audit/profile"] == "audit-trail"
    assert fields["ec2audit/transport"] == "ssh" and fields["ec2audit/advisory"] == "false"
    assert all(v for v in fields.values())  # no empty values (ASFF's maps take non-empty strings)
    assert f["CreatedAt"] == f["FirstObservedAt"] == f["UpdatedAt"] == "2025-03-01T06:00:00.000Z"
    assert f["LastObservedAt"] == "2025-03-01T06:01:02.000Z"
    assert f["Compliance"]["RelatedRequirements"] == META["auditd.running"]["requirements"][:32]
    assert f["Compliance"]["RelatedRequirements"]  # the catalogue maps it (NIST AU-12 ...)


def test_related_requirements_capped_at_32():
    meta = {"auditd.running": {**META["auditd.running"], "requirements": [f"X {n}" for n in range(40)]}}
    items = [item("i-1", failed=["auditd.running"])]
    (f,) = sh.findings(items, meta, ACCOUNT, REGION, ARN, DAY1, scope=whole(items))
    assert f["Compliance"]["RelatedRequirements"] == [f"X {n}" for n in range(32)]


def test_advisory_failures_flagged_and_a_step_lower():
    f = by_id(build([item("i-1", advisory=["auditd.running"])]))[fid("i-1", "auditd.running")]
    assert f["ProductFields"]["ec2audit/advisory"] == "true"
    assert f["Severity"]["Label"] == "HIGH" and f["FindingProviderFields"]["Severity"]["Label"] == "HIGH"
    assert f["Title"].startswith("[advisory] ")


def test_passed_when_an_open_finding_passes_again():
    day1 = build([item("i-1", failed=["auditd.running"])])
    previous = {f["Id"]: {**f, "Workflow": {"Status": "NEW"}} for f in day1}
    day2 = by_id(build([item("i-1", passing=["auditd.running"], day="2025-03-02")], DAY2, previous))
    f = day2[fid("i-1", "auditd.running")]
    assert f["Compliance"]["Status"] == "PASSED" and f["RecordState"] == "ACTIVE"
    assert f["CreatedAt"] == f["FirstObservedAt"] == "2025-03-01T06:00:00.000Z"  # kept from the first import
    assert f["UpdatedAt"] == "2025-03-02T06:00:00.000Z"


def test_no_passed_finding_without_an_open_one_or_once_resolved():
    assert build([item("i-1", passing=["auditd.running"])]) == []
    done = {fid("i-1", "auditd.running"): {"Compliance": {"Status": "PASSED"}, "Workflow": {"Status": "RESOLVED"}}}
    assert build([item("i-1", passing=["auditd.running"])], DAY2, done) == []


def test_not_seen_is_never_passed():
    previous = [fid("i-1", "auditd.running"), fid("i-2", "cwagent.running")]
    items = [item("i-1", errors=["auditd.running"]),  # the check ran but could not judge
             EvidenceItem(instance_id="i-2", status="UNREACHABLE", region=REGION, account_id=ACCOUNT)]
    # left as they are: neither PASSED nor archived; the unreachable host gets its own finding instead
    assert [f["Id"] for f in build(items, DAY2, previous)] == [fid("i-2", sh.UNVERIFIED_CHECK)]


def test_vanished_instance_archived_but_a_coverage_gap_is_not():
    day1 = build([item("i-1", failed=["auditd.running"]), item("i-2", failed=["cwagent.running"]),
                  item("i-3", failed=["auditd.config"])])
    previous = {f["Id"]: f for f in day1}
    day2 = by_id(build([item("i-1", failed=["auditd.running"], day="2025-03-02")], DAY2, previous, missing=["i-3"]))
    assert set(day2) == {fid("i-1", "auditd.running"), fid("i-2", "cwagent.running")}
    gone = day2[fid("i-2", "cwagent.running")]
    assert gone["RecordState"] == "ARCHIVED" and gone["UpdatedAt"] == "2025-03-02T06:00:00.000Z"
    assert gone["Resources"] == previous[fid("i-2", "cwagent.running")]["Resources"]
    assert day2[fid("i-1", "auditd.running")]["RecordState"] == "ACTIVE"


def test_archived_from_the_id_alone_is_a_whole_finding():
    (gone,) = build([], DAY2, [fid("i-9", "auditd.running")])
    assert gone["RecordState"] == "ARCHIVED" and gone["Resources"][0]["Id"].endswith(":instance/i-9")
    missing = [k for k in ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt",
                           "UpdatedAt", "Title", "Description", "Resources", "Severity", "Types") if not gone.get(k)]
    assert missing == []


def test_other_accounts_and_foreign_findings_left_alone():
    other = item("i-7", failed=["auditd.running"])
    other = EvidenceItem(**{**other.to_item(), "account_id": "999988887777"})
    previous = ["other-tool/finding-1", sh.finding_id("999988887777", REGION, "i-8", "auditd.running")]
    assert build([other], DAY2, previous) == []


def test_items_may_be_plain_dynamodb_dicts():
    stored = EvidenceItem.from_item(item("i-1", failed=["auditd.running"]).to_item())  # as the store reads it
    assert build([stored]) == build([item("i-1", failed=["auditd.running"])])


def test_waived_failure_stays_failed_with_the_waiver_named():
    waived = item("i-1", passing=["auditd.installed"], waived_checks=["auditd.immutable: CHG-42 until 2025-06-01"])
    (f,) = build([waived])
    assert f["GeneratorId"] == "auditd.immutable" and f["Compliance"]["Status"] == "FAILED"
    assert f["ProductFields"]["ec2audit/waived"] == "CHG-42 until 2025-06-01"


# -- scope: a run touches only what it re-checked (issue 25, item 6)
WEST = "us-west-2"


def test_a_run_narrowed_by_region_leaves_the_other_regions_findings_alone():
    previous = {fid("i-1", "auditd.running"): {}, sh.finding_id(ACCOUNT, WEST, "i-9", "auditd.running"): {}}
    west = EvidenceItem(**{**item("i-8", failed=["cwagent.running"]).to_item(), "region": WEST})
    # the day also holds i-1 passing, stored by an earlier run: not this run's to resolve
    day = [item("i-1", passing=["auditd.running"]), west]
    scope = sh.RunScope(frozenset({WEST}), frozenset({"i-8"}), complete=True)
    found = by_id(build(day, DAY2, previous, scope=scope))
    assert set(found) == {sh.finding_id(ACCOUNT, WEST, "i-8", "cwagent.running"),  # its own host: imported
                          sh.finding_id(ACCOUNT, WEST, "i-9", "auditd.running")}  # gone from WEST: archived
    assert found[sh.finding_id(ACCOUNT, WEST, "i-9", "auditd.running")]["RecordState"] == "ARCHIVED"


def test_a_tag_filtered_run_archives_nothing_and_resolves_only_its_own_hosts():
    day1 = build([item(i, failed=["auditd.running"]) for i in ("i-1", "i-2", "i-3")])
    previous = {f["Id"]: f for f in day1}
    day = [item("i-1", passing=["auditd.running"]), item("i-2", passing=["auditd.running"])]  # i-2: earlier run
    scope = sh.RunScope(frozenset({REGION}), frozenset({"i-1"}), complete=False)  # tag_filters matched i-1 only
    found = build(day, DAY2, previous, scope=scope)
    assert [(f["Id"], f["Compliance"]["Status"], f["RecordState"]) for f in found] == [
        (fid("i-1", "auditd.running"), "PASSED", "ACTIVE")]  # i-2 not resolved, i-3 not archived


def test_an_empty_scope_touches_nothing():
    previous = {f["Id"]: f for f in build([item("i-1", failed=["auditd.running"])])}
    assert build([item("i-1", passing=["auditd.running"])], DAY2, previous, scope=sh.RunScope()) == []


@pytest.mark.parametrize("status,label", [("UNREACHABLE", "MEDIUM"), ("AUTH_FAILED", "MEDIUM"),
                                          ("HOST_KEY_MISMATCH", "HIGH"), ("ERROR", "MEDIUM")])
def test_an_unverified_host_gets_a_finding_of_its_own(status, label):
    lost = EvidenceItem(instance_id="i-4", audit_date="2025-03-01", run_id="r1", status=status,
                        status_detail=f"why {status}", region=REGION, account_id=ACCOUNT, checked_at=DAY1)
    (f,) = build([lost])
    assert f["Id"] == fid("i-4", sh.UNVERIFIED_CHECK) == f"ec2-audit/{ACCOUNT}/{REGION}/i-4/host.verified"
    assert (f["Compliance"]["Status"], f["RecordState"], f["Severity"]["Label"]) == ("WARNING", "ACTIVE", label)
    assert status in f["Title"] and f"{status}: why {status}" in f["Description"]
    assert f["ProductFields"]["ec2audit/host_status"] == status
    assert [g["Id"] for g in build([lost], DAY2)] == [f["Id"]]  # stable: the same finding the next day


def test_a_host_verified_again_resolves_its_unverified_finding():
    lost = EvidenceItem(instance_id="i-4", status="UNREACHABLE", region=REGION, account_id=ACCOUNT)
    previous = {f["Id"]: f for f in build([lost])}
    (f,) = build([item("i-4", passing=["auditd.running"], day="2025-03-02")], DAY2, previous)
    assert f["Id"] == fid("i-4", sh.UNVERIFIED_CHECK) and f["Compliance"]["Status"] == "PASSED"
    result = sh.export(FakeHub(), [f], sleep=no_sleep)
    assert result.resolved == 1
    assert build([item("i-5", passing=["auditd.running"])]) == []  # never unverified: nothing to say


def test_run_scopes_from_the_inventory():
    role = "arn:aws:iam::222222222222:role/audit"
    scopes = sh.run_scopes({REGION: ["i-1"], WEST: [], f"{role}|{REGION}": ["i-7"]}, narrowed=False)
    assert scopes[""] == sh.RunScope(frozenset({REGION, WEST}), frozenset({"i-1"}), True)
    assert scopes[role] == sh.RunScope(frozenset({REGION}), frozenset({"i-7"}), True)
    assert sh.run_scopes({REGION: ["i-1"]}, narrowed=True)[""].complete is False


# -- export against a fake client
class FakeHub:
    """Records calls; `fail_once` ids fail in FailedFindings on their first import; `errors` are raised in
    order before answering."""

    def __init__(self, fail_once=(), fail_always=(), errors=(), update_errors=(), code="InternalException"):
        self.imports: list[list[dict]] = []
        self.updates: list[dict] = []
        self.fail_once, self.fail_always, self.code = set(fail_once), set(fail_always), code
        self.errors, self.update_errors = list(errors), list(update_errors)

    def batch_import_findings(self, Findings):
        if self.errors:
            raise self.errors.pop(0)
        assert len(Findings) <= 100, "Security Hub refuses more than 100 findings a request"
        self.imports.append(Findings)
        failed = []
        for f in Findings:
            if f["Id"] in self.fail_once or f["Id"] in self.fail_always:
                self.fail_once.discard(f["Id"])
                failed.append({"Id": f["Id"], "ErrorCode": self.code, "ErrorMessage": "try later"})
        return {"FailedCount": len(failed), "SuccessCount": len(Findings) - len(failed), "FailedFindings": failed}

    def batch_update_findings(self, FindingIdentifiers, Workflow, Note):
        if self.update_errors:
            raise self.update_errors.pop(0)
        assert len(FindingIdentifiers) <= 100
        self.updates.append({"ids": [i["Id"] for i in FindingIdentifiers], "Workflow": Workflow})
        return {"ProcessedFindings": FindingIdentifiers, "UnprocessedFindings": []}

    def get_findings(self, **kwargs):
        if self.errors:
            raise self.errors.pop(0)
        return {"Findings": []}


def client_error(code: str, op="BatchImportFindings", status=400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} said no"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def many(n_hosts: int) -> list[dict]:
    return build([item(f"i-{n:04d}", failed=["auditd.running", "cwagent.running"]) for n in range(n_hosts)])


def no_sleep(_):
    return None


def test_export_at_most_100_a_call_and_failed_findings_retried_once_and_counted():
    found = many(120)  # 240 findings → 3 calls
    flaky = [found[5]["Id"], found[150]["Id"], found[239]["Id"]]
    hub = FakeHub(fail_once=flaky)
    result = sh.export(hub, found, sleep=no_sleep)
    assert [len(c) for c in hub.imports] == [100, 100, 40, 3]  # then only the three again
    assert [f["Id"] for f in hub.imports[-1]] == flaky
    assert (result.sent, result.failed, result.retried, result.calls) == (240, 0, 3, 4)
    assert hub.updates == [] and result.resolved == 0


def test_export_still_failing_raises_with_counts():
    found = many(3)
    hub = FakeHub(fail_always=[found[0]["Id"]])
    with pytest.raises(sh.SecurityHubError, match=r"did not accept 1 of 6 findings after 4 attempts \(5 sent\)") as e:
        sh.export(hub, found, max_attempts=4, sleep=no_sleep)
    assert len(hub.imports) == 4  # bounded
    assert (e.value.result.sent, e.value.result.failed, e.value.result.errors) == (5, 1, {"InternalException": 1})


def test_invalid_input_is_not_retried():
    found = many(2)
    hub = FakeHub(fail_always=[found[0]["Id"]], code="InvalidInput")
    with pytest.raises(sh.SecurityHubError, match="did not accept 1 of 4"):
        sh.export(hub, found, sleep=no_sleep)
    assert len(hub.imports) == 1


@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied", "UnrecognizedClientException"])
def test_access_denied_is_a_clear_error_naming_the_permission(code):
    hub = FakeHub(errors=[client_error(code)])
    with pytest.raises(sh.SecurityHubError, match=r"refused securityhub:BatchImportFindings.*grant"):
        sh.export(hub, many(1), sleep=no_sleep)


def test_a_bare_403_is_denied_too():
    hub = FakeHub(errors=[client_error("403", status=403)])
    with pytest.raises(sh.SecurityHubError, match="securityhub:BatchImportFindings"):
        sh.export(hub, many(1), sleep=no_sleep)


def test_hub_not_enabled_is_a_clear_error_not_zero_sent():
    hub = FakeHub(fail_always=[f["Id"] for f in many(2)], code="InvalidAccess")
    with pytest.raises(sh.SecurityHubError, match="not enabled") as e:
        sh.export(hub, many(2), sleep=no_sleep)
    assert e.value.result.sent == 0 and len(hub.imports) == 1


def test_get_findings_denied_names_its_permission():
    hub = FakeHub(errors=[client_error("AccessDeniedException", "GetFindings")])
    with pytest.raises(sh.SecurityHubError, match="securityhub:GetFindings"):
        sh.open_findings(hub, ARN, ACCOUNT, sleep=no_sleep)


def test_throttling_retried_and_counted():
    hub = FakeHub(errors=[client_error("TooManyRequestsException"), client_error("ThrottlingException")])
    result = sh.export(hub, many(1), sleep=no_sleep)
    assert (result.sent, result.throttled, len(hub.imports)) == (2, 2, 1)


def test_other_errors_raise_as_they_are():
    hub = FakeHub(errors=[client_error("ValidationException")])
    with pytest.raises(ClientError):
        sh.export(hub, many(1), sleep=no_sleep)


def test_passed_findings_resolved_with_batch_update_findings():
    day1 = build([item(f"i-{n}", failed=["auditd.running"]) for n in range(150)])
    previous = {f["Id"]: f for f in day1}
    day2 = build([item(f"i-{n}", passing=["auditd.running"], day="2025-03-02") for n in range(150)], DAY2, previous)
    hub = FakeHub()
    result = sh.export(hub, day2, sleep=no_sleep)
    assert [len(u["ids"]) for u in hub.updates] == [100, 50]
    assert {u["Workflow"]["Status"] for u in hub.updates} == {"RESOLVED"}
    assert (result.sent, result.resolved, result.update_calls) == (150, 150, 2)


def test_a_suppressed_finding_is_not_resolved_over_the_customer():
    day1 = build([item("i-1", failed=["auditd.running"]), item("i-2", failed=["auditd.running"])])
    before = {f["Id"]: {**f, "Workflow": {"Status": "SUPPRESSED" if "i-1" in f["Id"] else "NEW"}} for f in day1}

    class Hub(FakeHub):
        def get_findings(self, **kwargs):
            return {"Findings": list(before.values())}

    hub = Hub()
    items = [item(i, passing=["auditd.running"]) for i in ("i-1", "i-2")]
    counts = sh.export_day(hub, items, META, ACCOUNT, REGION, DAY2, scope=whole(items), sleep=no_sleep)
    assert hub.updates == [{"ids": [fid("i-2", "auditd.running")], "Workflow": {"Status": "RESOLVED"}}]
    assert (counts["sent"], counts["compliance_passed"], counts["resolved"]) == (2, 2, 1)


def test_batch_update_denied_names_its_permission():
    previous = {f["Id"]: f for f in build([item("i-1", failed=["auditd.running"])])}
    day2 = build([item("i-1", passing=["auditd.running"])], DAY2, previous)
    hub = FakeHub(update_errors=[client_error("AccessDeniedException", "BatchUpdateFindings")])
    with pytest.raises(sh.SecurityHubError, match="securityhub:BatchUpdateFindings") as e:
        sh.export(hub, day2, sleep=no_sleep)
    assert e.value.result.sent == 1  # imported as PASSED; only the workflow step was refused


def test_archived_counted():
    previous = {f["Id"]: f for f in build([item("i-1", failed=["auditd.running"]), item("i-2", failed=["auditd.config"])])}
    day2 = build([item("i-1", failed=["auditd.running"])], DAY2, previous)
    result = sh.export(FakeHub(), day2, sleep=no_sleep)
    assert (result.sent, result.archived, result.resolved) == (2, 1, 0)


def test_open_findings_follows_pages_and_keeps_only_ours():
    ours = {"Id": fid("i-1", "auditd.running"), "ProductArn": ARN, "RecordState": "ACTIVE"}
    pages = [{"Findings": [ours, {"Id": "other/1", "ProductArn": ARN}], "NextToken": "t1"},
             {"Findings": [{**ours, "Id": fid("i-2", "x"), "ProductArn": "arn:other"},
                           {**ours, "Id": fid("i-3", "auditd.running")}]}]
    seen = []

    class Paged:
        def get_findings(self, **kwargs):
            seen.append(kwargs)
            return pages[len(seen) - 1]

    found = sh.open_findings(Paged(), ARN, ACCOUNT, sleep=no_sleep)
    assert set(found) == {fid("i-1", "auditd.running"), fid("i-3", "auditd.running")}
    assert seen[1]["NextToken"] == "t1" and seen[0]["Filters"]["ProductArn"][0]["Value"] == ARN
    assert seen[0]["Filters"]["RecordState"] == [{"Value": "ACTIVE", "Comparison": "EQUALS"}]


def test_open_findings_bounded():
    class Endless:
        def get_findings(self, **kwargs):
            return {"Findings": [], "NextToken": "again"}

    with pytest.raises(sh.SecurityHubError, match="more than 3 pages"):
        sh.open_findings(Endless(), ARN, ACCOUNT, max_pages=3, sleep=no_sleep)


def test_export_day_counts_are_json():
    import json

    hub = FakeHub()
    items = [EvidenceItem.from_item(item("i-1", failed=["auditd.running"], advisory=["auditd.immutable"]).to_item())]
    counts = sh.export_day(hub, items, META, ACCOUNT, REGION, DAY1, scope=whole(items), sleep=no_sleep)
    assert json.loads(json.dumps(counts)) == counts
    assert counts["sent"] == 2 and counts["compliance_failed"] == 2 and counts["product_arn"] == ARN


def test_timestamps():
    assert sh.timestamp("2025-03-01T06:00:00Z") == "2025-03-01T06:00:00.000Z"
    assert sh.timestamp("2025-03-01T08:00:00.123456+02:00") == "2025-03-01T06:00:00.123Z"


# -- the DAG step: the scope comes from this run's inventory
@pytest.mark.parametrize("narrowing,archived", [({}, True), ({"tag_filters": {"Environment": ["prod"]}}, False),
                                                ({"instance_ids": ["i-1"]}, False)])  # a targeted run: i-1 only
def test_export_findings_touches_only_what_the_run_discovered(monkeypatch, narrowing, archived):
    from include.aws import clients as aws_clients
    from include.evidence.records import RunSummary
    from include.fleet.inventory import Inventory
    from include.report.built import Built
    from include.settings.params import AuditParams
    from include.tasks import audit as pipeline

    day1 = build([item(i, failed=["auditd.running"]) for i in ("i-1", "i-2", "i-gone")])
    west_id = sh.finding_id(ACCOUNT, WEST, "i-9", "auditd.running")  # a region this run did not list
    before = {**{f["Id"]: {**f, "Workflow": {"Status": "NEW"}} for f in day1},
              west_id: {**day1[0], "Id": west_id, "Workflow": {"Status": "NEW"}}}

    class Hub(FakeHub):
        def get_findings(self, **kwargs):
            return {"Findings": list(before.values())}

    class Store:
        def day_items(self, day):  # i-2 passes too, but an earlier run of the day checked it
            return [item(i, passing=["auditd.running"]) for i in ("i-1", "i-2")]

        def run_summary(self, day):
            return RunSummary()

    hub = Hub()
    monkeypatch.setattr(pipeline, "evidence_store", lambda params: Store())
    monkeypatch.setattr(aws_clients, "default_region", lambda: REGION)
    monkeypatch.setattr(aws_clients, "securityhub_client", lambda region, account="": (hub, ACCOUNT))
    monkeypatch.setattr(sh.time, "sleep", no_sleep)
    params = AuditParams(securityhub=True, regions=[REGION], create_table=False, **narrowing)
    built = {"audit_date": "2025-03-02", "run_id": "r2", "mode": "live"}
    pipeline.export_findings(params, Built.from_xcom(built),
                             Inventory.from_xcom({**built, "instances": {REGION: ["i-1"]}, "states": {}}))
    sent = {f["Id"]: (f["Compliance"]["Status"], f["RecordState"]) for batch in hub.imports for f in batch}
    expected = {fid("i-1", "auditd.running"): ("PASSED", "ACTIVE")}
    if archived:  # an unfiltered listing of REGION did not find them running: gone
        expected.update({fid(i, "auditd.running"): ("FAILED", "ARCHIVED") for i in ("i-2", "i-gone")})
    assert sent == expected  # never the other region's finding; i-2 never resolved by this run
    assert hub.updates == [{"ids": [fid("i-1", "auditd.running")], "Workflow": {"Status": "RESOLVED"}}]

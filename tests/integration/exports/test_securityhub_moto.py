"""Security Hub export against a real moto server process (devstack/standins/aws/securityhub.py: GetFindings filters,
BatchImportFindings validation and update by Id keeping the customer's Workflow, BatchUpdateFindings, faults
on demand), over real HTTP with boto3's `securityhub` client. The day's items are stored in DynamoDB and read
back with `EvidenceStore.day_items`, as the DAG reads them; every count is checked against a computation
from those stored items, written here without the module.

Each test uses its own region (Security Hub is regional), so none sees another's findings; run under
`flock /tmp/ec2audit-e2e.lock`.
"""
from __future__ import annotations

import json
import urllib.request

import boto3
import pytest

from devstack.stack import local_aws
from include.checks.catalogue import check_meta
from include.evidence.records import EvidenceItem
from include.evidence.store import EvidenceStore
from include.exports import securityhub as sh
from tests.factories import evidence_item

ACCOUNT = "123456789012"  # moto's
OTHER_ACCOUNT = "999988887777"
TABLE = "securityhub_evidence"
META = check_meta()
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def endpoint(moto):
    """The module's moto server (tests/integration/conftest.py) with the evidence tables made."""
    EvidenceStore(local_aws.dynamodb(moto), TABLE).ensure_tables()
    return moto


def hub(endpoint: str, region: str, enable: bool = True, **creds):
    client = boto3.client("securityhub", endpoint_url=endpoint, region_name=region, **(creds or CREDS))
    if enable:
        client.enable_security_hub()
    return client


def no_sleep(_):
    return None


def stored_day(endpoint: str, day: str, items: list[EvidenceItem]) -> list[EvidenceItem]:
    store = EvidenceStore(local_aws.dynamodb(endpoint), TABLE)
    store.put_items([i.to_item() for i in items])
    return store.day_items(day)


def host(iid: str, day: str, region: str, failed=(), advisory=(), passing=(), account=ACCOUNT) -> EvidenceItem:
    return evidence_item(iid, failed, advisory=advisory, passing=passing, detail=lambda c: f"{c} failing on {iid}",
                         audit_date=day, run_id=f"scheduled__{day}", checked_at=f"{day}T06:00:10Z",
                         profile="audit-trail", transport="ssh", region=region, account_id=account,
                         name=f"web-{iid}", environment="prod", output_sha256=(iid.encode().hex() * 8)[:64])


def all_findings(client, **filters) -> dict[str, dict]:
    found, token = {}, None
    for _ in range(100):
        page = client.get_findings(Filters=filters, MaxResults=100, **({"NextToken": token} if token else {}))
        found.update({f["Id"]: f for f in page["Findings"]})
        token = page.get("NextToken")
        if not token:
            return found
    raise AssertionError("GetFindings never ended")


# -- the independent computation: (instance, check) pairs straight from the stored items (their attributes)
def failing_pairs(items: list[EvidenceItem], account=ACCOUNT) -> set[tuple[str, str]]:
    items = [i.to_item() for i in items]
    return {(i["instance_id"], c) for i in items if i.get("account_id") in ("", account)
            for c in [*i.get("failed_checks", []), *i.get("advisory_failed", [])]}


def passing_pairs(items: list[EvidenceItem]) -> set[tuple[str, str]]:
    items = [i.to_item() for i in items]
    return {(i["instance_id"], c) for i in items for c, v in i.get("checks", {}).items() if v["status"] == "PASS"}


def scope_of(items: list[EvidenceItem], region: str, extra=(), complete=True) -> sh.RunScope:
    """A run that listed `region` whole (complete) and found these items' instances (and `extra`) running."""
    return sh.RunScope(frozenset({region}), frozenset({i.instance_id for i in items} | set(extra)), complete)


def foreign_finding(region: str) -> dict:
    """Another tool's finding under the same default product: never ours to touch."""
    return {"SchemaVersion": "2018-10-08", "Id": "other-tool/finding-1", "GeneratorId": "other-tool",
            "ProductArn": sh.product_arn(ACCOUNT, region), "AwsAccountId": ACCOUNT, "CreatedAt": "2025-01-01T00:00:00Z",
            "UpdatedAt": "2025-01-01T00:00:00Z", "Title": "other", "Description": "other",
            "Severity": {"Label": "LOW"}, "Types": ["Software and Configuration Checks"],
            "Resources": [{"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:x:1:instance/i-b"}]}


def test_three_days_failed_resolved_archived_reopened(endpoint):
    region = "us-east-1"
    client = hub(endpoint, region)
    assert client.batch_import_findings(Findings=[foreign_finding(region)])["SuccessCount"] == 1
    arn = sh.product_arn(ACCOUNT, region)

    # day 1: two failing hosts (one with an advisory failure too), one compliant, one of another account
    d1 = "2025-04-01"
    day1 = stored_day(endpoint, d1, [
        host("i-a", d1, region, failed=["auditd.running"], advisory=["auditd.immutable"], passing=["auditd.installed"]),
        host("i-b", d1, region, failed=["cwagent.running"], passing=["auditd.running"]),
        host("i-c", d1, region, passing=["auditd.running", "cwagent.running"]),
        host("i-gap", d1, region, failed=["auditd.config"]),
        host("i-x", d1, region, failed=["auditd.running"], account=OTHER_ACCOUNT)])
    counts1 = sh.export_day(client, day1, META, ACCOUNT, region, f"{d1}T06:30:00Z", scope=scope_of(day1, region),
                            sleep=no_sleep)
    expected1 = failing_pairs(day1)
    assert len(expected1) == 4
    ours = all_findings(client, ProductArn=[{"Value": arn, "Comparison": "EQUALS"}],
                        Id=[{"Value": "ec2-audit/", "Comparison": "PREFIX"}])
    assert {tuple(i.split("/")[3:]) for i in ours} == expected1
    assert {f["Compliance"]["Status"] for f in ours.values()} == {"FAILED"}
    assert {f["Workflow"]["Status"] for f in ours.values()} == {"NEW"}
    assert {f["RecordState"] for f in ours.values()} == {"ACTIVE"}
    advisory = ours[sh.finding_id(ACCOUNT, region, "i-a", "auditd.immutable")]
    assert advisory["ProductFields"]["ec2audit/advisory"] == "true" and advisory["Severity"]["Label"] == "LOW"
    assert counts1["sent"] == counts1["compliance_failed"] == len(expected1)
    assert (counts1["resolved"], counts1["archived"], counts1["failed"], counts1["open_before"]) == (0, 0, 0, 0)
    assert counts1["other_accounts"] == 1

    # a customer suppresses the advisory finding: the daily re-import must not undo that (Workflow is theirs)
    advisory_id = sh.finding_id(ACCOUNT, region, "i-a", "auditd.immutable")
    client.batch_update_findings(FindingIdentifiers=[{"Id": advisory_id, "ProductArn": arn}],
                                 Workflow={"Status": "SUPPRESSED"})

    # day 2: i-a's profile failure fixed (its advisory one not), i-b gone, i-gap discovered but not recorded
    d2 = "2025-04-02"
    day2 = stored_day(endpoint, d2, [
        host("i-a", d2, region, advisory=["auditd.immutable"], passing=["auditd.running", "auditd.installed"]),
        host("i-c", d2, region, passing=["auditd.running", "cwagent.running"])])
    counts2 = sh.export_day(client, day2, META, ACCOUNT, region, f"{d2}T06:30:00Z", missing_evidence=["i-gap"],
                            scope=scope_of(day2, region, ["i-gap"]), sleep=no_sleep)
    present = {i.instance_id for i in day2} | {"i-gap"}
    expected_resolved = expected1 & passing_pairs(day2)
    expected_archived = {p for p in expected1 if p[0] not in present}
    assert expected_resolved == {("i-a", "auditd.running")} and expected_archived == {("i-b", "cwagent.running")}
    after = all_findings(client)
    fixed = after[sh.finding_id(ACCOUNT, region, "i-a", "auditd.running")]
    assert fixed["Compliance"]["Status"] == "PASSED" and fixed["Workflow"]["Status"] == "RESOLVED"
    assert fixed["RecordState"] == "ACTIVE" and fixed["CreatedAt"] == "2025-04-01T06:30:00.000Z"
    assert fixed["UpdatedAt"] == "2025-04-02T06:30:00.000Z"
    gone = after[sh.finding_id(ACCOUNT, region, "i-b", "cwagent.running")]
    assert gone["RecordState"] == "ARCHIVED" and gone["Compliance"]["Status"] == "FAILED"
    gap = after[sh.finding_id(ACCOUNT, region, "i-gap", "auditd.config")]
    assert gap["RecordState"] == "ACTIVE" and gap["UpdatedAt"] == "2025-04-01T06:30:00.000Z"  # left alone
    still = after[sh.finding_id(ACCOUNT, region, "i-a", "auditd.immutable")]
    assert still["Compliance"]["Status"] == "FAILED" and still["UpdatedAt"] == "2025-04-02T06:30:00.000Z"
    assert still["Workflow"]["Status"] == "SUPPRESSED"
    assert after["other-tool/finding-1"]["UpdatedAt"] == "2025-01-01T00:00:00Z"  # never touched
    assert counts2["resolved"] == len(expected_resolved) and counts2["archived"] == len(expected_archived)
    assert counts2["open_before"] == len(expected1)
    assert counts2["compliance_failed"] == len(failing_pairs(day2))
    assert counts2["sent"] == len(failing_pairs(day2)) + len(expected_resolved) + len(expected_archived)
    active = all_findings(client, Id=[{"Value": "ec2-audit/", "Comparison": "PREFIX"}],
                          RecordState=[{"Value": "ACTIVE", "Comparison": "EQUALS"}])
    assert len(active) == len(expected1) - len(expected_archived)

    # day 3: i-a regresses. Security Hub itself reopens the RESOLVED finding (PASSED → FAILED resets NEW);
    # the finding already PASSED and RESOLVED is not sent again once it stays fixed.
    d3 = "2025-04-03"
    day3 = stored_day(endpoint, d3, [host("i-a", d3, region, failed=["auditd.running"], advisory=["auditd.immutable"]),
                                     host("i-c", d3, region, passing=["auditd.running", "cwagent.running"])])
    counts3 = sh.export_day(client, day3, META, ACCOUNT, region, f"{d3}T06:30:00Z", missing_evidence=["i-gap"],
                            scope=scope_of(day3, region, ["i-gap"]), sleep=no_sleep)
    reopened = all_findings(client)[sh.finding_id(ACCOUNT, region, "i-a", "auditd.running")]
    assert reopened["Compliance"]["Status"] == "FAILED" and reopened["Workflow"]["Status"] == "NEW"
    assert (counts3["sent"], counts3["resolved"], counts3["archived"]) == (2, 0, 0)


def test_a_narrowed_run_touches_only_its_scope_and_unverified_hosts_get_a_finding(endpoint):
    """Issue 25 item 6, against the server: a run narrowed by region, then by tags, never resolves or archives
    a finding it did not re-check; an unreachable host's finding is there (WARNING), then resolved."""
    hub_region, east, south = "ca-central-1", "ca-central-1", "sa-east-1"
    client = hub(endpoint, hub_region)
    when = "T06:30:00Z"
    d1, d2, d3 = "2025-06-01", "2025-06-02", "2025-06-03"
    day1 = stored_day(endpoint, d1, [host("i-e1", d1, east, failed=["auditd.running"]),
                                     host("i-s1", d1, south, failed=["cwagent.running"]),
                                     host("i-s2", d1, south, failed=["auditd.config"])])
    everything = sh.RunScope(frozenset({east, south}), frozenset({"i-e1", "i-s1", "i-s2"}), complete=True)
    sh.export_day(client, day1, META, ACCOUNT, hub_region, d1 + when, scope=everything, sleep=no_sleep)

    # day 2, regions=[sa-east-1]: i-s1 unreachable, i-s2 fails still; i-e1 was not listed: not this run's
    lost = EvidenceItem(instance_id="i-s1", audit_date=d2, run_id=f"manual__{d2}", checked_at=f"{d2}T06:00:10Z",
                        status="UNREACHABLE", status_detail="connect timed out after 15 s", transport="ssh",
                        region=south, account_id=ACCOUNT)
    day2 = stored_day(endpoint, d2, [lost, host("i-s2", d2, south, failed=["auditd.config"])])
    south_only = sh.RunScope(frozenset({south}), frozenset({"i-s1", "i-s2"}), complete=True)
    counts2 = sh.export_day(client, day2, META, ACCOUNT, hub_region, d2 + when, scope=south_only, sleep=no_sleep)
    after = all_findings(client, Id=[{"Value": "ec2-audit/", "Comparison": "PREFIX"}])
    east_f = after[sh.finding_id(ACCOUNT, east, "i-e1", "auditd.running")]
    assert (east_f["RecordState"], east_f["UpdatedAt"]) == ("ACTIVE", f"{d1}T06:30:00.000Z")  # untouched
    unverified = after[sh.finding_id(ACCOUNT, south, "i-s1", sh.UNVERIFIED_CHECK)]
    assert (unverified["Compliance"]["Status"], unverified["RecordState"], unverified["Workflow"]["Status"]) == (
        "WARNING", "ACTIVE", "NEW")
    assert "UNREACHABLE: connect timed out after 15 s" in unverified["Description"]
    old = after[sh.finding_id(ACCOUNT, south, "i-s1", "cwagent.running")]
    assert (old["Compliance"]["Status"], old["UpdatedAt"]) == ("FAILED", f"{d1}T06:30:00.000Z")  # not "passed"
    assert (counts2["unverified"], counts2["archived"], counts2["resolved"]) == (1, 0, 0)

    # day 3, tag_filters matching i-s1 only: it is back and passes; i-s2 is not running, but a filtered
    # listing cannot tell "gone" from "not tagged": nothing archived
    day3 = stored_day(endpoint, d3, [host("i-s1", d3, south, passing=["cwagent.running"])])
    tagged = sh.RunScope(frozenset({south}), frozenset({"i-s1"}), complete=False)
    counts3 = sh.export_day(client, day3, META, ACCOUNT, hub_region, d3 + when, scope=tagged, sleep=no_sleep)
    after = all_findings(client, Id=[{"Value": "ec2-audit/", "Comparison": "PREFIX"}])
    for check in (sh.UNVERIFIED_CHECK, "cwagent.running"):
        f = after[sh.finding_id(ACCOUNT, south, "i-s1", check)]
        assert (f["Compliance"]["Status"], f["Workflow"]["Status"]) == ("PASSED", "RESOLVED"), check
    assert after[sh.finding_id(ACCOUNT, south, "i-s2", "auditd.config")]["RecordState"] == "ACTIVE"
    assert (counts3["archived"], counts3["resolved"]) == (0, 2)


def test_over_100_findings_and_failed_findings_retried_against_the_server(endpoint):
    region = "us-west-2"
    client = hub(endpoint, region)
    day = "2025-05-01"  # each test its own audit day in the shared table
    items = stored_day(endpoint, day, [host(f"i-{n:03d}", day, region, failed=["auditd.running", "cwagent.running"])
                                       for n in range(70)])
    built = sh.findings(items, META, ACCOUNT, region, sh.product_arn(ACCOUNT, region), f"{day}T06:30:00Z",
                        scope=scope_of(items, region))
    flaky = [built[3]["Id"], built[120]["Id"]]
    request = urllib.request.Request(
        f"{endpoint}/moto-api/ec2audit/securityhub-faults", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"action": "BatchImportFindings", "ids": flaky, "code": "InternalException"}).encode())
    urllib.request.urlopen(request).read()
    before = json.load(urllib.request.urlopen(f"{endpoint}/moto-api/ec2audit/securityhub-calls"))["calls"]
    result = sh.export(client, built, sleep=no_sleep)
    calls = json.load(urllib.request.urlopen(f"{endpoint}/moto-api/ec2audit/securityhub-calls"))
    assert (result.sent, result.failed, result.retried, result.calls) == (140, 0, 2, 3)
    assert calls["calls"]["BatchImportFindings"] - before.get("BatchImportFindings", 0) == 3
    assert calls["largest_batch"]["BatchImportFindings"] <= 100
    stored = all_findings(client, Id=[{"Value": "ec2-audit/", "Comparison": "PREFIX"}])
    assert set(stored) == {f["Id"] for f in built} and len(stored) == len(failing_pairs(items)) == 140


def test_the_server_refuses_101_findings(endpoint):
    """What the ≤ 100 batching is for: the stand-in, as AWS, refuses a bigger request."""
    from botocore.exceptions import ClientError

    region = "ap-southeast-2"
    client = hub(endpoint, region)
    day = "2025-04-01"
    items = [host(f"i-{n:03d}", day, region, failed=["auditd.running"]) for n in range(101)]
    built = sh.findings(items, META, ACCOUNT, region, sh.product_arn(ACCOUNT, region), f"{day}T06:30:00Z",
                        scope=scope_of(items, region))
    with pytest.raises(ClientError, match="InvalidInputException"):
        client.batch_import_findings(Findings=built)


def test_hub_not_enabled_is_a_clear_error(endpoint):
    region = "eu-central-1"
    client = hub(endpoint, region, enable=False)
    items = [host("i-a", "2025-04-01", region, failed=["auditd.running"])]
    with pytest.raises(sh.SecurityHubError, match="not enabled"):
        sh.export_day(client, items, META, ACCOUNT, region, "2025-04-01T06:30:00Z", scope=scope_of(items, region),
                      sleep=no_sleep)
    with pytest.raises(sh.SecurityHubError, match="not enabled"):  # the import alone (FailedFindings InvalidAccess)
        sh.export(client, sh.findings(items, META, ACCOUNT, region, sh.product_arn(ACCOUNT, region),
                                      "2025-04-01T06:30:00Z", scope=scope_of(items, region)), sleep=no_sleep)


def test_missing_permission_is_a_clear_error_with_real_iam():
    """moto's IAM enforcement on (its own server: that switch is server-wide): a role that may read findings
    but not import them."""
    region = "us-east-1"
    with local_aws.moto() as ep:
        iam = boto3.client("iam", endpoint_url=ep, region_name=region, **CREDS)
        iam.create_user(UserName="auditor")
        iam.put_user_policy(UserName="auditor", PolicyName="read-only", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["securityhub:GetFindings"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="auditor")["AccessKey"]
        hub(ep, region)
        urllib.request.urlopen(urllib.request.Request(f"{ep}/moto-api/reset-auth", data=b"0", method="POST",
                                                      headers={"Content-Type": "text/plain"})).read()
        client = hub(ep, region, enable=False, aws_access_key_id=key["AccessKeyId"],
                     aws_secret_access_key=key["SecretAccessKey"])
        items = [host("i-a", "2025-04-01", region, failed=["auditd.running"])]
        with pytest.raises(sh.SecurityHubError, match="refused securityhub:BatchImportFindings"):
            sh.export_day(client, items, META, ACCOUNT, region, "2025-04-01T06:30:00Z",
                          scope=scope_of(items, region), sleep=no_sleep)

"""The quota table, the token-bucket math, and each service's throttle reply as botocore sees it.

The replies go through a real boto3 client pointed at a `QuotaProxy` on loopback (in this process) whose
buckets are closed: botocore must parse each one as that service's throttling error code and retry it — in
standard mode (its throttling-code list) and in legacy mode (`_retry.json`: EC2's RequestLimitExceeded only
with 503). Forwarded requests reach a canned upstream on loopback, never AWS.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker

from devstack.standins.aws import quotas as aq
from devstack.standins.aws.fault_proxy import FaultProxy, QuotaProxy

FINDING = {"SchemaVersion": "2018-10-08", "Id": "f", "ProductArn": "p", "GeneratorId": "g",
           "AwsAccountId": "123456789012", "CreatedAt": "2030-01-01T00:00:00Z", "UpdatedAt": "2030-01-01T00:00:00Z",
           "Title": "t", "Description": "d", "Resources": [{"Type": "Other", "Id": "r"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------- bucket math

def test_a_bucket_starts_full_takes_until_empty_and_refills_at_its_rate_never_above_its_size():
    clock = Clock()
    bucket = aq.TokenBucket(rate=20, burst=100, clock=clock)
    assert sum(bucket.take() for _ in range(150)) == 100  # the EC2 docs' example: 100 at once, then throttled
    clock.now += 1
    assert sum(bucket.take() for _ in range(50)) == 20  # 20 refilled in one second
    clock.now += 0.25
    assert bucket.take(5) and not bucket.take()  # refill is continuous: 5 tokens after 250 ms
    clock.now += 3600
    assert bucket.level() == 100  # refill beyond the size is discarded
    assert bucket.seconds_until(101) == float("inf")


def test_a_debit_goes_into_debt_and_the_bucket_recovers_at_its_rate():
    clock = Clock()
    bucket = aq.TokenBucket(rate=10, burst=10, clock=clock)
    bucket.debit(30)  # a read charged after the fact
    assert bucket.level() == -20 and not bucket.take()
    assert bucket.seconds_until(1) == pytest.approx(2.1)
    clock.now += 2.1
    assert bucket.take()


def test_a_clock_that_goes_back_adds_nothing():
    clock = Clock()
    bucket = aq.TokenBucket(rate=10, burst=10, clock=clock)
    assert bucket.take(10)
    clock.now -= 5
    assert bucket.level() == 0
    clock.now += 5.5  # back at the last stamp + 0.5 s
    assert bucket.level() == pytest.approx(5)


# ------------------------------------------------------------------------------------------ the table

def test_every_quota_names_its_source_and_what_it_says_and_stand_ins_are_marked():
    for (service, api), q in aq.QUOTAS.items():
        assert q.service == service and q.api == api
        assert q.source.startswith("https://") and q.says and q.rate > 0 and q.burst >= q.rate
        assert ("stand-in" in q.label) == (not q.published)
    assert {a for (s, a), q in aq.QUOTAS.items() if not q.published} >= {
        "SendCommand", "ListCommandInvocations", "GetCommandInvocation", "DescribeInstanceInformation"}
    assert all(q.published for (s, _), q in aq.QUOTAS.items() if s != "ssm")


@pytest.mark.parametrize("key, rate, burst", [
    (("ec2", "non-mutating"), 20, 100), (("ec2", "unfiltered-unpaginated"), 10, 50),
    (("logs", "DescribeLogStreams"), 25, 25), (("logs", "FilterLogEvents"), 5, 5),
    (("securityhub", "BatchImportFindings"), 10, 30), (("securityhub", "GetFindings"), 3, 6),
    (("dynamodb", "key-range-write"), 1000, 1000), (("dynamodb", "table-write"), 4000, 4000),
])
def test_the_published_numbers(key, rate, burst):
    assert (aq.QUOTAS[key].rate, aq.QUOTAS[key].burst) == (rate, burst)


def test_filter_log_events_is_not_adjustable():
    assert aq.QUOTAS["logs", "FilterLogEvents"].adjustable is False


def test_ec2_describe_calls_spend_the_smaller_bucket_only_without_filter_or_pagination():
    plain = aq.Call("ec2", "us-east-1", "k", "DescribeInstances", unfiltered=True)
    assert aq.quota_for(plain) is aq.QUOTAS["ec2", "unfiltered-unpaginated"]
    assert aq.quota_for(replace(plain, unfiltered=False)) is aq.QUOTAS["ec2", "non-mutating"]
    assert aq.quota_for(aq.Call("ec2", "r", "k", "CreateTags")) is aq.QUOTAS["ec2", "mutating"]
    assert aq.quota_for(aq.Call("ec2", "r", "k", "RunInstances")) is aq.QUOTAS["ec2", "RunInstances"]
    assert aq.quota_for(aq.Call("sts", "r", "k", "AssumeRole")) is None  # counted, not modelled


def test_rest_operations_come_from_method_and_path():
    assert aq.rest_operation("securityhub", "POST", "/findings/import") == "BatchImportFindings"
    assert aq.rest_operation("securityhub", "POST", "/findings") == "GetFindings"
    assert aq.rest_operation("securityhub", "PATCH", "/findings/batchupdate") == "BatchUpdateFindings"
    assert aq.rest_operation("securityhub", "GET", "/accounts") == "DescribeHub"
    assert aq.rest_operation("securityhub", "POST", "/accounts") == "EnableSecurityHub"


def test_the_signing_scope_names_access_key_region_and_service():
    header = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20300101/eu-west-1/logs/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=abc")
    assert aq.signing_scope(header) == ("AKIAEXAMPLE", "eu-west-1", "logs")
    presigned = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAX%2F20300101%2Fus-east-2%2Fs3%2Faws4_request"
    assert aq.signing_scope("", presigned) == ("AKIAX", "us-east-2", "s3")


# ---------------------------------------------------------------------------------- DynamoDB item sizes

def test_item_sizes_and_request_units_follow_the_developer_guide_rules():
    assert aq.item_size({"id": {"S": "abc"}}) == 5
    assert aq.item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 significant digits: 3 + 1
    assert aq.item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 4
    assert aq.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert aq.item_size({"l": {"L": [{"S": "ab"}, {"S": "c"}]}}) == 1 + 3 + (1 + 2) + (1 + 1)
    assert aq.write_units({"k": {"S": "x" * 1023}}) == 1  # 1,024 bytes
    assert aq.write_units({"k": {"S": "x" * 1024}}) == 2
    assert aq.read_units([{"k": {"S": "x" * 5000}}]) == 1.0  # 2 × 4 KB, eventually consistent: half
    assert aq.read_units([{"k": {"S": "x" * 5000}}], consistent=True) == 2
    assert aq.item_size({"d": {"B": b"\x00" * 10}}) == 1 + 10  # a low-level client's bytes: their length
    assert aq.item_size({"d": {"B": "AAAAAAAAAAAAAA=="}}) == 1 + 10  # on the wire, base64 (padding not counted)


# ------------------------------------------------------------------------ a canned upstream and proxies

class Canned(BaseHTTPRequestHandler):
    """Answers every request with an empty success of its protocol and records what it got."""

    seen: list = []

    def log_message(self, *args):
        pass

    def _serve(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        self.seen.append((self.command, self.path, body))
        if self.headers.get("X-Amz-Target", "").endswith("BatchGetItem"):  # every key found, ~5 KB each
            asked = json.loads(body)["RequestItems"]
            data = json.dumps({"Responses": {t: [{**k, "pad": {"S": "x" * 5000}} for k in spec["Keys"]]
                                             for t, spec in asked.items()}}).encode()
            kind = "application/x-amz-json-1.0"
        elif self.headers.get("X-Amz-Target"):
            data, kind = b"{}", "application/x-amz-json-1.1"
        elif b"Action=" in body:
            data, kind = b'<R xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"></R>', "text/xml"
        else:
            data, kind = b'{"canned": true}', "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve  # noqa: N815


@pytest.fixture()
def upstream():
    Canned.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def proxy_of(upstream):
    servers = []

    def start(**ledger_args):
        server, endpoint = QuotaProxy.start(upstream, **ledger_args)
        servers.append(server)
        return server, endpoint

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(service: str, endpoint: str, mode: str = "standard", attempts: int = 2, key: str = "AKIDTEST",
           region: str = "us-east-1"):
    return boto3.session.Session().client(
        service, endpoint_url=endpoint, region_name=region, aws_access_key_id=key, aws_secret_access_key="x",
        config=Config(retries={"mode": mode, "total_max_attempts": attempts}))


THROTTLED = [  # service, call, error code, HTTP status
    ("ec2", lambda c: c.describe_instances(), "RequestLimitExceeded", 503),
    ("logs", lambda c: c.describe_log_streams(logGroupName="/ec2/audit", logStreamNamePrefix="i-"),
     "ThrottlingException", 400),
    ("logs", lambda c: c.filter_log_events(logGroupName="/ec2/audit", filterPattern='"x"'), "ThrottlingException", 400),
    ("ssm", lambda c: c.send_command(InstanceIds=["i-12345678"], DocumentName="AWS-RunShellScript"),
     "ThrottlingException", 400),
    ("ssm", lambda c: c.list_command_invocations(CommandId="c" * 36), "ThrottlingException", 400),
    ("dynamodb", lambda c: c.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {"k": {"S": "v"}}}}]}),
     "ProvisionedThroughputExceededException", 400),
    ("dynamodb", lambda c: c.query(TableName="t", IndexName="by_audit_date", KeyConditionExpression="audit_date = :d",
                                   ExpressionAttributeValues={":d": {"S": "2030-01-01"}}),
     "ProvisionedThroughputExceededException", 400),
    ("securityhub", lambda c: c.batch_import_findings(Findings=[FINDING]), "TooManyRequestsException", 429),
    ("securityhub", lambda c: c.batch_update_findings(FindingIdentifiers=[{"Id": "f", "ProductArn": "p"}]),
     "TooManyRequestsException", 429),
    ("s3", lambda c: c.get_object(Bucket="b", Key="k"), "SlowDown", 503),
]


@pytest.mark.parametrize("mode", ["standard", "legacy"])
@pytest.mark.parametrize("service, call, code, status", THROTTLED,
                         ids=[f"{t[0]}-{t[2]}-{i}" for i, t in enumerate(THROTTLED)])
def test_each_throttle_reply_is_that_services_throttling_error_and_botocore_retries_it(
        proxy_of, upstream, mode, service, call, code, status):
    server, endpoint = proxy_of(scale=0, min_burst=0)  # every bucket closed
    with pytest.raises(ClientError) as caught:
        call(client(service, endpoint, mode))
    response = caught.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["RetryAttempts"] == 1  # retried: botocore read it as retryable
    assert code in ThrottledRetryableChecker._THROTTLED_ERROR_CODES  # standard/adaptive: throttling, slow down
    stats = server.ledger.report()
    row = next(r for api, r in stats.items() if api.startswith(f"{service}:") and r["calls"])
    assert row["calls"] == 2 and row["throttled"] == 2  # both attempts counted, both throttled
    assert Canned.seen == []  # nothing throttled reached the upstream


def test_dynamodb_throttles_carry_their_throttling_reasons(proxy_of):
    _, endpoint = proxy_of(scale=0, min_burst=0)
    with pytest.raises(ClientError) as caught:
        client("dynamodb", endpoint, attempts=1).put_item(
            TableName="evidence", Item={"instance_id": {"S": "i-1"}, "audit_date": {"S": "2030-01-01"}})
    reasons = caught.value.response["ThrottlingReasons"]
    assert reasons[0]["reason"].endswith("ThroughputExceeded") or reasons[0]["reason"].endswith("LimitExceeded")
    assert reasons[0]["resource"].startswith("arn:aws:dynamodb:us-east-1:")


def test_buckets_are_per_access_key_and_region(proxy_of):
    server, endpoint = proxy_of(scale=0, min_burst=1)  # one request each, never refilled
    calls = [("AKIDA", "us-east-1"), ("AKIDA", "us-east-1"), ("AKIDB", "us-east-1"), ("AKIDA", "eu-west-1")]
    outcomes = []
    for key, region in calls:
        try:
            client("logs", endpoint, attempts=1, key=key, region=region).describe_log_streams(logGroupName="g")
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == ["ok", "ThrottlingException", "ok", "ok"]
    assert server.ledger.accounts == {("AKIDA", "us-east-1"): 2, ("AKIDB", "us-east-1"): 1, ("AKIDA", "eu-west-1"): 1}


def test_calls_are_named_per_protocol_and_ec2_filters_choose_the_bucket(proxy_of):
    server, endpoint = proxy_of(enforce=False)
    ec2 = client("ec2", endpoint, attempts=1)
    ec2.describe_instances()
    ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ["i-1"]}])
    list(ec2.get_paginator("describe_instance_status").paginate(PaginationConfig={"PageSize": 1000}))
    client("logs", endpoint, attempts=1).describe_log_streams(logGroupName="g")
    client("securityhub", endpoint, attempts=1).batch_update_findings(FindingIdentifiers=[{"Id": "f", "ProductArn": "p"}])
    client("securityhub", endpoint, attempts=1).describe_hub()
    report = server.ledger.report()
    assert {api: r["calls"] for api, r in report.items()} == {
        "ec2:DescribeInstances": 2, "ec2:DescribeInstanceStatus": 1, "logs:DescribeLogStreams": 1,
        "securityhub:BatchUpdateFindings": 1, "securityhub:DescribeHub": 1}
    buckets = {k[3] for k in server.ledger.buckets if k[2] == "ec2"}
    assert buckets == {"DescribeInstances (unfiltered, unpaginated)", "DescribeInstances", "DescribeInstanceStatus"}
    assert [m for m, _, _ in Canned.seen].count("PATCH") == 1 and [m for m, _, _ in Canned.seen].count("GET") == 1


def test_a_batch_write_takes_what_capacity_allows_and_hands_back_the_rest(proxy_of):
    quotas = {**aq.QUOTAS, ("dynamodb", "table-write"): replace(aq.QUOTAS["dynamodb", "table-write"], rate=0, burst=3)}
    server, endpoint = proxy_of(quotas=quotas, min_burst=0)
    ddb = client("dynamodb", endpoint, attempts=1)
    writes = [{"PutRequest": {"Item": {"instance_id": {"S": f"i-{n}"}}}} for n in range(5)]
    answer = ddb.batch_write_item(RequestItems={"pins": writes})
    assert answer["UnprocessedItems"] == {"pins": writes[3:]}  # written in order while the 3 WRU lasted
    forwarded = json.loads(Canned.seen[-1][2])
    assert forwarded["RequestItems"]["pins"] == writes[:3]
    with pytest.raises(ClientError) as caught:  # nothing left: the whole call is throttled
        ddb.batch_write_item(RequestItems={"pins": writes[3:]})
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    row = server.ledger.report()["dynamodb:BatchWriteItem"]
    assert (row["calls"], row["throttled"], row["unprocessed"], row["units"]) == (2, 1, 2, 3)


def test_the_day_index_key_is_its_own_bucket(proxy_of):
    quotas = {**aq.QUOTAS, ("dynamodb", "key-range-write"): replace(aq.QUOTAS["dynamodb", "key-range-write"],
                                                                    rate=0, burst=2)}
    server, endpoint = proxy_of(quotas=quotas, min_burst=0)
    writes = [{"PutRequest": {"Item": {"instance_id": {"S": f"i-{n}"}, "audit_date": {"S": "2030-01-01"}}}}
              for n in range(4)]
    other_day = [{"PutRequest": {"Item": {"instance_id": {"S": "i-9"}, "audit_date": {"S": "2030-01-02"}}}}]
    ddb = client("dynamodb", endpoint, attempts=1)
    assert ddb.batch_write_item(RequestItems={"ev": writes})["UnprocessedItems"] == {"ev": writes[2:]}
    assert ddb.batch_write_item(RequestItems={"ev": other_day}).get("UnprocessedItems", {}) == {}
    report = server.ledger.report()
    assert report["dynamodb capacity:ev day-index write"]["units"] == 3
    assert report["dynamodb capacity:ev write"]["units"] == 3


def test_reads_are_charged_by_what_they_return_and_wait_while_in_debt(proxy_of):
    quotas = {**aq.QUOTAS, ("dynamodb", "table-read"): replace(aq.QUOTAS["dynamodb", "table-read"], rate=0, burst=1)}
    server, endpoint = proxy_of(quotas=quotas, min_burst=0)
    ddb = client("dynamodb", endpoint, attempts=1)
    ddb.get_item(TableName="t", Key={"k": {"S": "v"}})  # the canned upstream returns no item: 0.5 RRU
    ddb.get_item(TableName="t", Key={"k": {"S": "v"}})
    with pytest.raises(ClientError):
        ddb.get_item(TableName="t", Key={"k": {"S": "v"}})
    assert server.ledger.report()["dynamodb:GetItem"]["throttled"] == 1


def test_a_consistent_batch_get_is_charged_at_the_consistent_rate_each_item_rounded_up(proxy_of):
    server, endpoint = proxy_of(enforce=False)
    ddb = client("dynamodb", endpoint, attempts=1)
    keys = [{"instance_id": {"S": f"i-{n}"}, "audit_date": {"S": "2030-01-01"}} for n in range(2)]
    ddb.batch_get_item(RequestItems={"ev": {"Keys": keys, "ConsistentRead": True}})  # per table, not top-level
    assert server.ledger.report()["dynamodb capacity:ev read"]["units"] == 4  # 2 items × 8 KB, consistent
    ddb.batch_get_item(RequestItems={"ev": {"Keys": keys}})
    assert server.ledger.report()["dynamodb capacity:ev read"]["units"] == 4 + 2  # eventually: half


def _put(table: str, key: str, pad: int = 0, day: str | None = "2030-01-01") -> dict:
    item = {"instance_id": {"S": key}, **({"audit_date": {"S": day}} if day else {}),
            **({"pad": {"S": "x" * pad}} if pad else {})}
    return {"Put": {"TableName": table, "Item": item}}


def test_a_transaction_costs_two_write_units_per_kb_of_each_item_on_the_table_and_one_on_the_day_index(proxy_of):
    server, endpoint = proxy_of(enforce=False)
    actions = [_put("ev", "i-1", pad=1500),  # 2 KB: 4 units on the table, 2 on the day index
               _put("ev_raw", "i-1", day=None),  # T_raw: no day index, 2 units
               {"ConditionCheck": {"TableName": "ev", "ConditionExpression": "attribute_exists(instance_id)",
                                   "Key": {"instance_id": {"S": "i-2"}, "audit_date": {"S": "2030-01-01#v#1"}}}}]
    client("dynamodb", endpoint, attempts=1).transact_write_items(TransactItems=actions)
    report = server.ledger.report()
    assert report["dynamodb capacity:ev write"]["units"] == 4 + 2  # a ConditionCheck is a write, twice
    assert report["dynamodb capacity:ev day-index write"]["units"] == 2  # once; a check changes no index entry
    assert report["dynamodb capacity:ev_raw write"]["units"] == 2
    row = report["dynamodb:TransactWriteItems"]
    assert (row["calls"], row["throttled"], row["units"]) == (1, 0, 6 + 2 + 2)
    assert [json.loads(b)["TransactItems"] for _, _, b in Canned.seen] == [actions]  # forwarded as sent


def test_a_transaction_the_capacity_cannot_take_is_cancelled_whole_as_dynamodb_does(proxy_of):
    from include.evidence.store import _passes

    quotas = {**aq.QUOTAS, ("dynamodb", "table-write"): replace(aq.QUOTAS["dynamodb", "table-write"], rate=0, burst=5)}
    server, endpoint = proxy_of(quotas=quotas, min_burst=0)
    ddb = client("dynamodb", endpoint, attempts=1)
    ddb.transact_write_items(TransactItems=[_put("ev", "i-0")])  # 2 of the 5 units: 3 left
    Canned.seen.clear()
    with pytest.raises(ClientError) as caught:  # 2 + 2 units: the second does not fit in 3
        ddb.transact_write_items(TransactItems=[_put("ev", "i-1"), _put("ev", "i-2")])
    response = caught.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "[None, ThrottlingError]" in response["Error"]["Message"]
    reasons = response["CancellationReasons"]
    assert reasons[0] == {"Code": "None"}
    assert reasons[1]["Code"] == "ThrottlingError" and "Throughput exceeds the current capacity" in reasons[1]["Message"]
    assert _passes(caught.value)  # the evidence store reads it as throttling: backs off and resends
    assert Canned.seen == []  # nothing written
    assert server.ledger.report()["dynamodb capacity:ev write"]["units"] == 2  # nothing charged
    ddb.transact_write_items(TransactItems=[_put("ev", "i-1")])  # the 3 units are all still there
    row = server.ledger.report()["dynamodb:TransactWriteItems"]
    assert (row["calls"], row["throttled"], row["units"]) == (3, 1, 2 * (2 + 1))


def test_a_transaction_larger_than_a_second_of_capacity_goes_through_a_full_bucket_into_debt(proxy_of):
    quotas = {**aq.QUOTAS, ("dynamodb", "key-range-write"): replace(aq.QUOTAS["dynamodb", "key-range-write"],
                                                                    rate=0, burst=2)}
    server, endpoint = proxy_of(quotas=quotas, min_burst=0)
    ddb = client("dynamodb", endpoint, attempts=1)
    # 3 units on a day key that holds 2: DynamoDB's burst capacity serves it (never refused forever)
    ddb.transact_write_items(TransactItems=[_put("ev", f"i-{n}") for n in range(3)])
    with pytest.raises(ClientError) as caught:  # the key is in debt now: the next waits until it is repaid
        ddb.transact_write_items(TransactItems=[_put("ev", "i-9")])
    assert caught.value.response["CancellationReasons"][0]["Code"] == "ThrottlingError"
    assert server.ledger.report()["dynamodb capacity:ev day-index write"]["units"] == 3


def test_a_transaction_refused_by_the_day_index_key_names_the_index(proxy_of):
    quotas = {**aq.QUOTAS, ("dynamodb", "key-range-write"): replace(aq.QUOTAS["dynamodb", "key-range-write"],
                                                                    rate=0, burst=0)}
    _, endpoint = proxy_of(quotas=quotas, min_burst=0)
    with pytest.raises(ClientError) as caught:
        client("dynamodb", endpoint, attempts=1).transact_write_items(
            TransactItems=[_put("ev_raw", "i-1", day=None), _put("ev", "i-1")])
    reasons = caught.value.response["CancellationReasons"]
    assert reasons[0] == {"Code": "None"}
    assert reasons[1]["Code"] == "ThrottlingError" and "global secondary index" in reasons[1]["Message"]
    assert Canned.seen == []


# ------------------------------------------------------------------------- the fault proxy's methods

def test_the_fault_proxy_forwards_every_method_with_its_body(upstream):
    server, endpoint = FaultProxy.start(upstream)
    try:
        for method, body in [("GET", None), ("PUT", b"object"), ("PATCH", b'{"a": 1}'), ("DELETE", None),
                             ("POST", b"Action=X"), ("HEAD", None)]:
            with urllib.request.urlopen(urllib.request.Request(f"{endpoint}/b/k?x=1", data=body, method=method),
                                        timeout=10) as answer:
                data = answer.read()
                assert answer.status == 200
                assert (data == b"") == (method == "HEAD")
        assert [(m, p, b) for m, p, b in Canned.seen] == [
            ("GET", "/b/k?x=1", b""), ("PUT", "/b/k?x=1", b"object"), ("PATCH", "/b/k?x=1", b'{"a": 1}'),
            ("DELETE", "/b/k?x=1", b""), ("POST", "/b/k?x=1", b"Action=X"), ("HEAD", "/b/k?x=1", b"")]
    finally:
        server.shutdown()
        server.server_close()


def test_a_subclass_still_overrides_answer(upstream):
    class Refuse(FaultProxy):
        def answer(self, body):
            return 418, b"no", {"Content-Type": "text/plain"}

    server, endpoint = Refuse.start(upstream)
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{endpoint}/", timeout=10)
        assert caught.value.code == 418 and Canned.seen == []
    finally:
        server.shutdown()
        server.server_close()

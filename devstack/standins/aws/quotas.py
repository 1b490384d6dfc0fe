"""AWS API request quotas, as published, per account and Region — and how each service answers when one is hit.

The quota mode of the loopback fault proxy (devstack/standins/aws/fault_proxy.py, `QuotaProxy`) enforces this table with
one token bucket per (access key, Region, service, API), and answers an empty bucket exactly as the service
does (`throttle_reply`); the quota bench (devstack/bench/quota.py) projects the API time of a 100,000-host run
from it. Every number names where it was read; a number the stored documentation did not give is a
**stand-in** (`published=False`), chosen low on purpose, and says so wherever it is shown.

Sources, as read for this table (stored copies of the public documentation):

* EC2 — "Request throttling for the Amazon EC2 API", section "Request token bucket sizes and refill rates"
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html): a token bucket per API per account
  per Region; "Non-mutating actions" (Describe*, List*, Search*, Get*) bucket 100, refill 20/s; "Unfiltered and
  unpaginated non-mutating actions" (DescribeInstances, DescribeInstanceStatus, … requested "without
  specifying either pagination or a filter") bucket 50, refill 10/s; mutating actions 50, refill 5/s;
  RunInstances 5, refill 2/s. Over the limit: error code `RequestLimitExceeded`.
* CloudWatch Logs — DescribeLogStreams: "This operation has a limit of 25 transactions per second, after which
  transactions are throttled" (API Reference, API_DescribeLogStreams, as shipped in botocore 1.43's model;
  the older CloudWatch Logs User Guide quota table, awsdocs/amazon-cloudwatch-logs-user-guide
  doc_source/cloudwatch_limits_cwl.md, said 5 TPS, adjustable). FilterLogEvents: "5 transactions per second
  (TPS)/account/Region. This quota can't be changed" (same User Guide table; re:Post "How do I determine
  throttling in my CloudWatch logs?": FilterLogEvents and GetLogEvents "don't qualify for a quota increase").
  No burst is published for Logs: the bucket holds one second of rate.
* DynamoDB (the evidence table is on-demand) — "Each partition on the table can serve up to 3,000 read request
  units or 1,000 write request units" and "For new on-demand tables, you can immediately drive up to 4,000
  write request units or 12,000 read request units" (re:Post knowledge center, "on-demand-table-throttling-
  dynamodb"); per table 40,000 read and 40,000 write request units (Developer Guide, "Quotas in Amazon
  DynamoDB", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html). A request
  unit is one write of ≤ 1 KB, or one strongly consistent (two eventually consistent) reads of ≤ 4 KB.
  Throttled data-plane calls: `ProvisionedThroughputExceededException` (or `ThrottlingException`) carrying
  `ThrottlingReasons` such as `IndexWriteKeyRangeThroughputExceeded` (API Reference, ThrottlingReason;
  botocore's DynamoDB model); BatchWriteItem returns what it could not write as UnprocessedItems and fails
  only when it wrote nothing (API Reference, BatchWriteItem). TransactWriteItems writes each item twice
  (prepare and commit: two write units per KB per item on the table, a ConditionCheck too; its index updates
  once, see TRANSACT_FACTOR) and is cancelled whole —
  `TransactionCanceledException` with CancellationReasons, "ThrottlingError" for the throttled actions and
  "None" for the others (API Reference, TransactionCanceledException). BatchGetItem reads each key as a
  GetItem: every item rounded up to 4 KB, a key not found at the minimum, `ConsistentRead` per table.
* Systems Manager — **not found**: no stored copy of the SSM endpoints-and-quotas page
  (https://docs.aws.amazon.com/general/latest/gr/ssm.html) or of any page giving the SendCommand,
  ListCommandInvocations, GetCommandInvocation or DescribeInstanceInformation request rates was found
  (searched the docs and pages corpora). Stand-in: 5 requests/s, bucket 5, each. The throttle is
  `ThrottlingException` "Rate exceeded", HTTP 400 (botocore's SSM model has the shape, with QuotaCode and
  ServiceCode).
* Security Hub — "BatchImportFindings - RateLimit of 10 requests per second. BurstLimit of 30 requests per
  second"; GetFindings 3 and 6; BatchUpdateFindings 10 and 30; all other operations 10 and 30 (API Reference,
  Welcome, https://docs.aws.amazon.com/securityhub/1.0/APIReference/Welcome.html, as shipped in botocore's
  model; the partner guide, guidelines-batchimportfindings.html, says the same "10 TPS per account per Region,
  with a burst of 30 TPS"). The throttle seen from the service is HTTP 429 `TooManyRequestsException` "Too
  Many Requests" (prowler-cloud/prowler#5004, GetFindings in us-gov-west-1); the model's documented 429 for
  BatchImportFindings is `LimitExceededException` — both are throttling to botocore.
* S3 (SSM output, reports) — "5,500 GET/HEAD requests per second per partitioned prefix" (Athena User Guide,
  performance-tuning-s3-throttling-reduce-throttling-at-the-service-level.html); over it, 503 `SlowDown`.

What botocore makes of each reply: standard and adaptive retry modes treat every code in
`botocore.retries.standard.ThrottledRetryableChecker._THROTTLED_ERROR_CODES` as throttling
(RequestLimitExceeded, ThrottlingException, TooManyRequestsException, ProvisionedThroughputExceededException,
LimitExceededException, SlowDown, …); legacy mode (`botocore/data/_retry.json`) retries ThrottlingException
and ProvisionedThroughputExceededException (400), any 429, 503 — and, for EC2, RequestLimitExceeded with 503.
"""
from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

EC2_THROTTLING = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html"
LOGS_DESCRIBE_STREAMS = "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_DescribeLogStreams.html"
LOGS_QUOTAS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html"
DDB_ON_DEMAND = "https://repost.aws/knowledge-center/on-demand-table-throttling-dynamodb"
DDB_QUOTAS = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html"
SSM_QUOTAS = "https://docs.aws.amazon.com/general/latest/gr/ssm.html"
SECURITYHUB_API = "https://docs.aws.amazon.com/securityhub/1.0/APIReference/Welcome.html"
S3_PREFIX = ("https://docs.aws.amazon.com/athena/latest/ug/"
             "performance-tuning-s3-throttling-reduce-throttling-at-the-service-level.html")


@dataclass(frozen=True)
class Quota:
    """One API's (or one DynamoDB capacity's) published rate: `burst` tokens at most, `rate` added a second."""

    service: str  # SigV4 signing name: ec2, logs, dynamodb, ssm, securityhub, s3
    api: str
    rate: float
    burst: float
    source: str  # where it was read (URL)
    says: str  # what that source says, in its words where short
    published: bool = True  # False: not found in the stored docs — a conservative stand-in
    adjustable: bool | None = None
    unit: str = "requests"  # DynamoDB: "WRU" / "RRU" (request units)

    @property
    def label(self) -> str:
        text = f"{self.rate:g}/s, burst {self.burst:g}" + ("" if self.unit == "requests" else f" {self.unit}")
        return text if self.published else f"{text} (stand-in: not published in the stored docs)"


def _q(service: str, api: str, rate: float, burst: float, source: str, says: str, **kw) -> Quota:
    return Quota(service, api, rate, burst, source, says, **kw)


_SSM_NOT_FOUND = ("not found in the stored docs (the SSM endpoints-and-quotas page was not available); "
                  "conservative stand-in")
_HUB = "RateLimit {} requests per second, BurstLimit {} requests per second"

QUOTAS: dict[tuple[str, str], Quota] = {(q.service, q.api): q for q in [
    # EC2: a bucket per API; its size and refill come from the API's category.
    _q("ec2", "non-mutating", 20, 100, EC2_THROTTLING,
       "Non-mutating actions (Describe*, List*, Search*, Get*): bucket maximum capacity 100, refill rate 20"),
    _q("ec2", "unfiltered-unpaginated", 10, 50, EC2_THROTTLING,
       "Unfiltered and unpaginated non-mutating actions (DescribeInstances, DescribeInstanceStatus, ...): "
       "bucket maximum capacity 50, refill rate 10"),
    _q("ec2", "mutating", 5, 50, EC2_THROTTLING, "Mutating actions: bucket maximum capacity 50, refill rate 5"),
    _q("ec2", "RunInstances", 2, 5, EC2_THROTTLING, "RunInstances (uncategorized): bucket 5, refill rate 2"),
    # CloudWatch Logs: requests per second per account and Region; no burst published (one second's worth).
    _q("logs", "DescribeLogStreams", 25, 25, LOGS_DESCRIBE_STREAMS,
       "This operation has a limit of 25 transactions per second, after which transactions are throttled "
       "(the older User Guide quota table said 5 TPS/account/Region, adjustable)", adjustable=True),
    _q("logs", "FilterLogEvents", 5, 5, LOGS_QUOTAS,
       "5 transactions per second (TPS)/account/Region. This quota can't be changed", adjustable=False),
    _q("logs", "GetLogEvents", 10, 10, LOGS_QUOTAS,
       "10 requests per second per account per Region. This quota can't be changed", adjustable=False),
    _q("logs", "DescribeLogGroups", 5, 5, LOGS_QUOTAS, "5 transactions per second (TPS/account/Region)",
       adjustable=True),
    _q("logs", "CreateLogStream", 50, 50, LOGS_QUOTAS, "50 transactions per second (TPS/account/Region)",
       adjustable=True),
    # DynamoDB on-demand: capacity, not requests. The table's bucket is a NEW on-demand table's initial
    # throughput (it grows with the previous peak up to the 40,000 per-table quota): the low end, on purpose.
    _q("dynamodb", "table-write", 4000, 4000, DDB_ON_DEMAND,
       "new on-demand tables: immediately up to 4,000 write request units (per-table quota 40,000: "
       + DDB_QUOTAS + ")", adjustable=True, unit="WRU"),
    _q("dynamodb", "table-read", 12000, 12000, DDB_ON_DEMAND,
       "new on-demand tables: immediately up to 12,000 read request units (per-table quota 40,000)",
       adjustable=True, unit="RRU"),
    # One partition-key value of the day index (by_audit_date: every item of a day has the same key) —
    # modelled as one partition, ignoring DynamoDB's split-for-heat: again the low end.
    _q("dynamodb", "key-range-write", 1000, 1000, DDB_ON_DEMAND,
       "Each partition on the table can serve up to 3,000 read request units or 1,000 write request units",
       adjustable=False, unit="WRU"),
    _q("dynamodb", "key-range-read", 3000, 3000, DDB_ON_DEMAND,
       "Each partition on the table can serve up to 3,000 read request units or 1,000 write request units",
       adjustable=False, unit="RRU"),
    # Systems Manager: not found — stand-ins.
    *[_q("ssm", api, 5, 5, SSM_QUOTAS, _SSM_NOT_FOUND, published=False)
      for api in ("SendCommand", "ListCommandInvocations", "GetCommandInvocation", "DescribeInstanceInformation",
                  "GetDocument", "DescribeDocument")],
    # Security Hub: the API Reference's throttling limits.
    _q("securityhub", "BatchImportFindings", 10, 30, SECURITYHUB_API, _HUB.format(10, 30)),
    _q("securityhub", "GetFindings", 3, 6, SECURITYHUB_API, _HUB.format(3, 6)),
    _q("securityhub", "BatchUpdateFindings", 10, 30, SECURITYHUB_API, _HUB.format(10, 30)),
    _q("securityhub", "other", 10, 30, SECURITYHUB_API, "All other operations - " + _HUB.format(10, 30)),
    _q("s3", "GET/HEAD", 5500, 5500, S3_PREFIX, "5,500 GET/HEAD requests per second per partitioned prefix"),
]}

EC2_UNFILTERED_SUBSET = frozenset({"DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces",
                                   "DescribeSecurityGroups", "DescribeSnapshots", "DescribeSpotInstanceRequests",
                                   "DescribeVolumes"})
NON_MUTATING = re.compile(r"^(Describe|List|Search|Get)")
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
CAPACITY = "dynamodb capacity"  # report rows of request units per table and bucket kind
DAY_KEY = "audit_date"  # the hash key of the evidence table's day index (include/aws/tables.py: by_audit_date)
# TransactWriteItems: DynamoDB writes every item of the table twice (prepare, commit), so each action costs two
# write units per KB, a ConditionCheck too. The index update that follows a committed Put, Update or Delete is an
# ordinary one (1×; a ConditionCheck changes nothing in it): "Transactional writes: 2× multiplier applies to BASE
# TABLE ONLY. GSI and LSI writes remain 1×", verified against ReturnConsumedCapacity (aws/agent-toolkit-for-aws,
# amazon-dynamodb skill, scripts/calculate_costs.py); the Developer Guide pages stored here do not say.
TRANSACT_FACTOR = 2


# --------------------------------------------------------------------------------------------- the request

@dataclass(frozen=True)
class Call:
    """What one HTTP request to AWS is: who (access key, Region), which service and API."""

    service: str
    region: str
    access_key: str
    action: str
    unfiltered: bool = False  # EC2: a non-mutating call with neither a filter nor pagination

    @property
    def account(self) -> tuple[str, str]:
        """What AWS throttles by: the account (here its access key stands for it) and the Region."""
        return self.access_key, self.region


_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def signing_scope(authorization: str, query: str = "") -> tuple[str, str, str]:
    """(access key, Region, service) from a SigV4 Authorization header (or a presigned URL's query)."""
    found = _SCOPE.search(authorization or "")
    if found:
        return found.group(1), found.group(2), found.group(3)
    credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
    parts = credential.split("/")
    if len(parts) == 5:
        return parts[0], parts[2], parts[3]
    return "", "", ""


_REST_ROUTES: dict[str, list[tuple[str, re.Pattern, str]]] = {}


def _rest_routes(service: str) -> list[tuple[str, re.Pattern, str]]:
    """(method, path pattern, operation) of a REST service, from botocore's own model (most specific first)."""
    if service not in _REST_ROUTES:
        import botocore.session

        model = botocore.session.get_session().get_service_model(service)
        routes = []
        for name in model.operation_names:
            http = model.operation_model(name).http
            path = http.get("requestUri", "/").split("?")[0]
            pattern = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
            pattern = re.sub(r"\{[^}]+\+\}", ".+", pattern)
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", pattern)
            routes.append((http.get("method", "POST"), re.compile(f"^{pattern}$"), name))
        routes.sort(key=lambda r: -len(r[1].pattern.replace("[^/]+", "")))
        _REST_ROUTES[service] = routes
    return _REST_ROUTES[service]


def rest_operation(service: str, method: str, path: str) -> str:
    """The operation of a REST-protocol request (Security Hub: POST /findings/import = BatchImportFindings)."""
    bare = urlsplit(path).path or "/"
    for m, pattern, name in _rest_routes(service):
        if m == method and pattern.match(bare):
            return name
    return f"{method} {bare}"


def _form(body: bytes, query: str) -> dict[str, list[str]]:
    fields = parse_qs(query)
    if body:
        try:
            for key, values in parse_qs(body.decode("utf-8")).items():
                fields.setdefault(key, []).extend(values)
        except UnicodeDecodeError:
            pass
    return fields


def identify(method: str, path: str, headers, body: bytes) -> Call:
    """The Call an HTTP request to AWS makes: JSON protocols name it in X-Amz-Target, the EC2/STS query
    protocol in the Action form field (body or URL), REST protocols (Security Hub, S3) by method and path."""
    query = urlsplit(path).query
    key, region, service = signing_scope(headers.get("Authorization", ""), query)
    target = headers.get("X-Amz-Target", "")
    if target:
        return Call(service, region, key, target.rsplit(".", 1)[-1])
    if service in ("ec2", "sts", "sqs", "sns", "iam", "autoscaling", "elasticloadbalancing") or "Action=" in (
            query + body[:4096].decode("latin-1")):
        form = _form(body, query)
        action = (form.get("Action") or [""])[0]
        unfiltered = (action in EC2_UNFILTERED_SUBSET and not any(k.startswith("Filter.") for k in form)
                      and "MaxResults" not in form and "NextToken" not in form)
        return Call(service, region, key, action, unfiltered)
    if service == "s3":
        return Call(service, region, key, {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
                                           "DELETE": "DeleteObject"}.get(method, method))
    if service:
        try:
            return Call(service, region, key, rest_operation(service, method, path))
        except Exception:  # noqa: BLE001 - a service botocore does not know: still counted, by path
            pass
    return Call(service or "unknown", region, key, f"{method} {urlsplit(path).path}")


def quota_for(call: Call) -> Quota | None:
    """The request-rate quota this call spends (None: not modelled — counted only). DynamoDB data-plane
    calls spend capacity instead (see Ledger)."""
    if call.service == "ec2":
        if ("ec2", call.action) in QUOTAS:
            return QUOTAS["ec2", call.action]
        if NON_MUTATING.match(call.action):
            return QUOTAS["ec2", "unfiltered-unpaginated" if call.unfiltered else "non-mutating"]
        return QUOTAS["ec2", "mutating"]
    if call.service == "securityhub":
        return QUOTAS.get(("securityhub", call.action), QUOTAS["securityhub", "other"])
    if call.service == "s3":
        return QUOTAS["s3", "GET/HEAD"] if call.action in ("GetObject", "HeadObject") else None
    return QUOTAS.get((call.service, call.action))


def bucket_name(call: Call, quota: Quota) -> str:
    """EC2 keeps a bucket per API (its size by category); the other services, a bucket per API as well."""
    if call.service == "ec2":
        return call.action + (" (unfiltered, unpaginated)" if call.unfiltered else "")
    return call.action


# --------------------------------------------------------------------------------------------- the buckets

class TokenBucket:
    """`burst` tokens at most, `rate` added each second (continuously), the EC2 documentation's algorithm:
    a request takes its tokens or is throttled; refill tokens beyond the bucket's size are discarded.
    `debit` may take it below zero (DynamoDB reads are charged once their size is known)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 0 or burst < 0:
            raise ValueError("a bucket's rate and size are not negative")
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def level(self) -> float:
        self._refill()
        return self.tokens

    def take(self, n: float = 1.0) -> bool:
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def debit(self, n: float) -> None:
        self._refill()
        self.tokens -= n

    def seconds_until(self, n: float = 1.0) -> float:
        """How long until `n` tokens are there (0 now; inf if never: n > burst)."""
        have = self.level()
        if have >= n:
            return 0.0
        if n > self.burst or self.rate <= 0:
            return math.inf
        return (n - have) / self.rate


# ------------------------------------------------------------------------- DynamoDB sizes and request units

def _value_size(value: dict) -> int:
    """Bytes of one DynamoDB JSON attribute value, by the Developer Guide's item-size rules."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        digits = len(str(Decimal(v).normalize()).replace("-", "").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "B":
        if isinstance(v, (bytes, bytearray)):  # a low-level client's answer: the bytes themselves
            return len(v)
        return len(v) * 3 // 4 - (len(v) - len(v.rstrip("=")))  # base64 on the wire
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + _value_size(x) for k, x in v.items())
    return len(json.dumps(v))


def item_size(item: dict) -> int:
    """Bytes of an item in DynamoDB JSON: attribute names plus values (Developer Guide, item sizes)."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def write_units(item: dict) -> int:
    """On-demand write request units for writing this item: 1 per KB (rounded up)."""
    return max(1, math.ceil(item_size(item) / 1024))


def read_units(items: Iterable[dict], consistent: bool = False) -> float:
    """Read request units for returning these items: 1 per 4 KB strongly consistent, half eventually."""
    total = sum(item_size(i) for i in items)
    units = max(1, math.ceil(total / 4096))
    return units if consistent else units / 2


def batch_read_units(found: Iterable[dict], asked: int, consistent: bool = False) -> float:
    """BatchGetItem: each key is read as one GetItem, so each item is rounded up to 4 KB on its own, and a key
    not found still costs the minimum (API Reference, BatchGetItem); half of it eventually consistent."""
    found = list(found)
    units = sum(max(1, math.ceil(item_size(i) / 4096)) for i in found) + max(0, asked - len(found))
    return units if consistent else units / 2


# ------------------------------------------------------------------------------------------------ replies

def _request_id() -> str:
    return str(uuid.uuid4())


def throttle_reply(call: Call, reason: str = "", resource: str = "") -> tuple[int, bytes, dict]:
    """(status, body, headers) exactly as the service answers an exceeded rate (module docstring)."""
    rid = _request_id()
    if call.service in ("ec2", "sts", "autoscaling", "elasticloadbalancing", "iam"):
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded'
                f"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>{rid}</RequestID>"
                "</Response>").encode()
        return 503, body, {"Content-Type": "text/xml;charset=UTF-8"}
    if call.service == "dynamodb":
        error = {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                 "message": "The level of configured provisioned throughput for the table was exceeded. "
                            "Consider increasing your provisioning level with the UpdateTable API.",
                 "ThrottlingReasons": [{"reason": reason or "TableWriteKeyRangeThroughputExceeded",
                                        "resource": resource}]}
        return 400, json.dumps(error).encode(), {"Content-Type": "application/x-amz-json-1.0",
                                                 "x-amzn-RequestId": rid}
    if call.service == "securityhub":
        return 429, json.dumps({"message": "Too Many Requests"}).encode(), {
            "Content-Type": "application/json", "x-amzn-ErrorType": "TooManyRequestsException", "x-amzn-RequestId": rid}
    if call.service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your '
                f"request rate.</Message><RequestId>{rid}</RequestId></Error>").encode()
        return 503, body, {"Content-Type": "application/xml"}
    # JSON 1.1 services: CloudWatch Logs, SSM (and the rest)
    return 400, json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode(), {
        "Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": rid}


# What DynamoDB says of a transaction action it cancelled for throughput (on-demand table, or its index),
# API Reference, TransactionCanceledException (botocore's DynamoDB model).
TABLE_THROTTLED = ("Throughput exceeds the current capacity of your table or index. DynamoDB is automatically "
                   "scaling your table or index so please try again shortly. If exceptions persist, check if you "
                   "have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                   "bp-partition-key-design.html.")
INDEX_THROTTLED = ("Throughput exceeds the current capacity for one or more global secondary indexes. DynamoDB is "
                   "automatically scaling your index so please try again shortly.")


def transaction_cancelled(reasons: list[dict]) -> tuple[int, bytes, dict]:
    """A TransactWriteItems DynamoDB cancelled: HTTP 400 TransactionCanceledException, one CancellationReason
    per action in request order — {"Code": "None"} (no Message) for an action that was not the cause."""
    codes = ", ".join(r["Code"] for r in reasons)
    error = {"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
             "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
             "CancellationReasons": reasons}
    return 400, json.dumps(error).encode(), {"Content-Type": "application/x-amz-json-1.0",
                                             "x-amzn-RequestId": _request_id()}


# ------------------------------------------------------------------------------------------------ the ledger

@dataclass
class ApiStats:
    calls: int = 0  # every request seen, throttled or not
    throttled: int = 0
    units: float = 0.0  # DynamoDB: request units consumed
    unprocessed: int = 0  # DynamoDB BatchWriteItem: items handed back as UnprocessedItems


@dataclass
class Ledger:
    """Buckets and counts for a quota proxy: thread-safe, clock injectable (tests), rates scalable (`scale`:
    0.01 makes every quota a hundredth, so a small fleet meets the limits a large one would).
    `enforce=False` counts without throttling. A scaled bucket holds at least `min_burst` tokens (0: a bucket
    of rate 0 that throttles everything, for tests)."""

    quotas: dict[tuple[str, str], Quota] = field(default_factory=lambda: dict(QUOTAS))
    scale: float = 1.0
    enforce: bool = True
    min_burst: float = 1.0
    clock: Callable[[], float] = time.monotonic
    stats: dict[tuple[str, str], ApiStats] = field(default_factory=dict)
    buckets: dict[tuple, TokenBucket] = field(default_factory=dict)
    accounts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _stats(self, call: Call) -> ApiStats:
        return self.stats.setdefault((call.service, call.action), ApiStats())

    def bucket(self, key: tuple, quota: Quota) -> TokenBucket:
        if key not in self.buckets:
            self.buckets[key] = TokenBucket(quota.rate * self.scale, max(quota.burst * self.scale, self.min_burst),
                                            self.clock)
        return self.buckets[key]

    def count(self, call: Call) -> None:
        with self.lock:
            self._stats(call).calls += 1
            self.accounts[call.account] += 1

    def throttled(self, call: Call) -> None:
        with self.lock:
            self._stats(call).throttled += 1

    def admit(self, call: Call) -> bool:
        """Counts the call; False if its request-rate bucket is empty (the caller answers throttle_reply)."""
        self.count(call)
        quota = quota_for(call)
        if quota is None or call.service == "dynamodb":
            return True
        with self.lock:
            ok = self.bucket((*call.account, call.service, bucket_name(call, quota)), quota).take() or not self.enforce
            if not ok:
                self._stats(call).throttled += 1
        return ok

    # -- DynamoDB: capacity, per table and per day-index key
    def _ddb(self, call: Call, table: str, kind: str) -> TokenBucket:
        return self.bucket((*call.account, "dynamodb", table, kind), self.quotas["dynamodb", f"table-{kind}"])

    def _day_key(self, call: Call, table: str, day: str, kind: str) -> TokenBucket:
        return self.bucket((*call.account, "dynamodb", table, "day-index", day, kind),
                           self.quotas["dynamodb", f"key-range-{kind}"])

    def _spend(self, table: str, kind: str, units: float) -> None:
        """Capacity consumed, per table and bucket kind: the rows "dynamodb capacity:<table> <kind>"."""
        row = self.stats.setdefault((CAPACITY, f"{table} {kind}"), ApiStats())
        row.calls += 1
        row.units += units

    def admit_writes(self, call: Call, table: str, items: list[dict]) -> tuple[int, str]:
        """How many of these writes (in order) the table and its day-index key can take now, and the
        throttling reason for the first one refused ("" if all go)."""
        with self.lock:
            done = 0
            for item in items:
                units = write_units(item)
                table_bucket = self._ddb(call, table, "write")
                day = item.get(DAY_KEY, {}).get("S") if isinstance(item.get(DAY_KEY), dict) else None
                day_bucket = self._day_key(call, table, day, "write") if day else None
                if self.enforce and (table_bucket.level() < units or (day_bucket and day_bucket.level() < units)):
                    reason = ("IndexWriteKeyRangeThroughputExceeded" if table_bucket.level() >= units
                              else "TableWriteAccountLimitExceeded")
                    return done, reason
                table_bucket.debit(units)
                self._spend(table, "write", units)
                if day_bucket:
                    day_bucket.debit(units)
                    self._spend(table, "day-index write", units)
                self._stats(call).units += units * (2 if day_bucket else 1)
                done += 1
            return done, ""

    def admit_transaction(self, call: Call, actions: list[tuple[str, str, dict]]) -> list[dict]:
        """TransactWriteItems, all or nothing: each (kind, table, item) costs TRANSACT_FACTOR × its write units on
        the table and, unless a ConditionCheck, its write units once on the day-index key of an item with one
        (see TRANSACT_FACTOR); more than a bucket holds goes through a full one, into debt. Returns one
        CancellationReason per action:
        all {"Code": "None"} when every bucket can take the whole (then debited), else ThrottlingError on each
        action that no longer fits, and nothing is debited (a cancelled transaction writes nothing)."""
        with self.lock:
            need: dict[int, float] = {}  # id(bucket) → units this transaction asks of it so far
            plan, reasons = [], []
            for kind, table, item in actions:
                units = write_units(item)
                day = item.get(DAY_KEY, {}).get("S") if isinstance(item.get(DAY_KEY), dict) else None
                table_bucket = self._ddb(call, table, "write")
                day_bucket = self._day_key(call, table, day, "write") if day and kind != "ConditionCheck" else None
                reason = {"Code": "None"}
                for bucket, cost, message in ((table_bucket, TRANSACT_FACTOR * units, TABLE_THROTTLED),
                                              (day_bucket, units, INDEX_THROTTLED)):
                    if bucket is None:
                        continue
                    need[id(bucket)] = need.get(id(bucket), 0) + cost
                    # A transaction may ask more than a bucket holds (one second's rate): DynamoDB's burst
                    # capacity serves it, so a full bucket takes it into debt rather than refuse it forever.
                    level = bucket.level()
                    if (self.enforce and level < need[id(bucket)] and not level >= bucket.burst > 0
                            and reason["Code"] == "None"):
                        reason = {"Code": "ThrottlingError", "Message": message}
                reasons.append(reason)
                plan.append((table, units, table_bucket, day_bucket))
            if any(r["Code"] != "None" for r in reasons):
                self._stats(call).throttled += 1
                return reasons
            for table, units, table_bucket, day_bucket in plan:
                table_bucket.debit(TRANSACT_FACTOR * units)
                self._spend(table, "write", TRANSACT_FACTOR * units)
                self._stats(call).units += TRANSACT_FACTOR * units
                if day_bucket:
                    day_bucket.debit(units)
                    self._spend(table, "day-index write", units)
                    self._stats(call).units += units
            return reasons

    def admit_read(self, call: Call, table: str, day: str | None = None) -> bool:
        """A read goes while the table's (and the day key's) read bucket is not in debt."""
        with self.lock:
            ok = self._ddb(call, table, "read").level() > 0 and (
                day is None or self._day_key(call, table, day, "read").level() > 0)
            return ok or not self.enforce

    def charge_read(self, call: Call, table: str, units: float, day: str | None = None) -> None:
        with self.lock:
            self._ddb(call, table, "read").debit(units)
            if day is not None:
                self._day_key(call, table, day, "read").debit(units)
                self._spend(table, "day-index read", units)
            else:
                self._spend(table, "read", units)
            self._stats(call).units += units

    def unprocessed(self, call: Call, n: int) -> None:
        with self.lock:
            self._stats(call).unprocessed += n

    # -- the report
    def quota_of(self, service: str, action: str) -> Quota | None:
        """The quota a report row spends: the request rate, or (capacity rows) the bucket's request units.
        DynamoDB's API rows spend capacity: their own rate is None (see the capacity rows)."""
        if service == CAPACITY:
            kind = action.rsplit(" ", 2)
            kind = " ".join(kind[-2:]) if kind[-2] == "day-index" else kind[-1]
            return self.quotas["dynamodb", {"write": "table-write", "read": "table-read",
                                            "day-index write": "key-range-write",
                                            "day-index read": "key-range-read"}[kind]]
        if service == "dynamodb":
            return None
        return quota_for(Call(service, "", "", action))

    def report(self) -> dict[str, dict]:
        """"service:Action" → calls, throttled, units, unprocessed and the quota it spends (a snapshot);
        "dynamodb capacity:<table> <kind>" → the request units that table's bucket gave."""
        with self.lock:
            out = {}
            for (service, action), s in sorted(self.stats.items()):
                quota = self.quota_of(service, action)
                unmodelled = "request units: see the dynamodb capacity rows" if service == "dynamodb" else "not modelled"
                out[f"{service}:{action}"] = {
                    "calls": s.calls, "throttled": s.throttled, "units": round(s.units, 1),
                    "unprocessed": s.unprocessed, "quota": quota.label if quota else unmodelled,
                    "rate": quota.rate if quota else None, "unit": quota.unit if quota else None,
                    "published": quota.published if quota else None, "source": quota.source if quota else None}
            return out

"""Reading the evidence as the command line needs it, in bounded pages and at a pace DynamoDB allows.

Every Query asks for at most `page_items` a page (Limit) and follows LastEvaluatedKey; the clients retry throttled
calls in botocore's adaptive mode (include/integrity/credentials.py), and a call still throttled after those is
backed off and asked again a bounded number of times before the read fails (StoreUnreadable: exit 2). Nothing
here judges: include/integrity/verify.py does, on the records read here.
"""
from __future__ import annotations

import gzip
import hashlib
import random
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from include.aws.day_table import DayTable, IncompleteRead
from include.aws.errors import error_code
from include.aws.tables import DAY_INDEX
from include.evidence.manifest import SEAL_ID, members_prefix, unpack_members
from include.evidence.observation import (
    CURRENT,
    OUTPUT_IN_DYNAMODB,
    raw_chunk_key,
    raw_table_name,
    version_key,
)
from include.evidence.store import SUMMARY_ID
from include.integrity.verify import DayRead, SealRead, seq_of

PAGE_ITEMS = 500  # per Query page: a 100,000-host day is read in pages, never in one answer
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "Throttling", "SlowDown", "TooManyRequestsException"})
THROTTLED_ATTEMPTS = 6  # after botocore's own adaptive retries, this many more waits, then the read fails
BASE_DELAY_S = 0.5

# (statement text, base64 signature, KMS key id) -> valid?
Verifier = Callable[[str, str, str], bool]


class StoreUnreadable(RuntimeError):
    """The evidence could not be read (no table, no access, no endpoint, throttled past the bound): exit 2."""


def is_observation(item: dict) -> bool:
    """A host's observation in a day partition of the index; the fleet's own day items (run summary, seal
    members, digest, alerts, ...) sit in partitions named "#...". An unknown item under a host id counts, so a
    forged one with an odd item_type is still named."""
    return item.get("item_type") == CURRENT or not str(item.get("instance_id", "#")).startswith("#")


class EvidenceReader:
    def __init__(self, aws, table: str, page_items: int = PAGE_ITEMS, sleep: Callable[[float], None] = time.sleep):
        self.aws = aws
        self.resource = aws.resource("dynamodb")
        self.table_name = table
        self.table = self.resource.Table(table)
        self.raw_table = raw_table_name(table)
        self.page_items = page_items
        self.sleep = sleep
        self._s3 = None

    # -- one call, paced
    def call(self, fn: Callable[..., Any], what: str, absent: tuple[str, ...] = (), **kwargs) -> Any:
        """fn(**kwargs), backed off while throttled; None when it fails with one of the `absent` codes."""
        for attempt in range(THROTTLED_ATTEMPTS + 1):
            try:
                return fn(**kwargs)
            except ClientError as exc:
                code, message = error_code(exc)
                if code in absent:
                    return None
                if code not in THROTTLED or attempt == THROTTLED_ATTEMPTS:
                    raise StoreUnreadable(f"{what}: {code}: {message}") from exc
            except BotoCoreError as exc:  # no endpoint, no credentials
                raise StoreUnreadable(f"{what}: {exc}") from exc
            except IncompleteRead as exc:
                raise StoreUnreadable(f"{what}: {exc}") from exc
            self.sleep(min(10.0, BASE_DELAY_S * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def query(self, what: str, **kwargs) -> list[dict]:
        """Every page of one Query, `page_items` at a time."""
        items: list[dict] = []
        kwargs = {**kwargs, "Limit": self.page_items}
        while True:
            response = self.call(self.table.query, what, **kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- one host
    def host_day(self, instance_id: str, day: str) -> list[dict]:
        """Every observation of the host that day, current and versions: ONE Query, oldest first by seq, the
        current one last."""
        items = self.query(f"{instance_id} on {day}", ConsistentRead=True,
                           KeyConditionExpression=Key("instance_id").eq(instance_id)
                           & Key("audit_date").begins_with(day))
        own = [it for it in items if str(it["audit_date"]) == day or str(it["audit_date"]).startswith(f"{day}#v#")]
        return sorted(own, key=lambda it: (seq_of(it), it.get("item_type") == CURRENT))

    # -- the chain
    def seals(self, in_scope: Callable[[str, str], bool], verifier: Verifier | None = None) -> list[SealRead]:
        """The whole #seal partition (one or two seals a day); members and signature read for the seals that
        in_scope(day, previous seal's day) says matter."""
        items = self.query("the seal chain", ConsistentRead=True, KeyConditionExpression=Key("instance_id").eq(SEAL_ID))
        reads, previous_day = [], ""
        for item in items:
            try:
                n = int(str(item["audit_date"]))
            except ValueError:
                continue  # not a seal's key: the chain is read by number
            seal = SealRead(n, item, None)
            statement = seal.statement
            if statement is not None and in_scope(seal.day, previous_day):
                members = self.members(n, statement.day, statement.members_sha256)
                signature_ok = verifier(str(item["statement"]), seal.signature, statement.kms_key_id) \
                    if seal.signature and verifier else None
                seal = SealRead(n, item, members, signature_ok)
            reads.append(seal)
            previous_day = seal.day
        return reads

    def members(self, n: int, day: str, sha256: str):
        got = self.call(DayTable(self.resource, self.table_name).get_chunks, f"members of seal {n}",
                        prefix=members_prefix(n), audit_date=day)
        if got is None:
            return None
        try:
            return unpack_members(got[0], sha256)
        except (ValueError, KeyError, TypeError, OSError, zlib.error):  # a chunk missing or changed
            return None

    # -- one day
    def day(self, day: str, seq_hint: int = 0) -> DayRead:
        """The day's current items (day index), versions (index partitions "<day>#v#1", "#v#2", ... up to
        seq_hint and then to the first empty one), the SHA-256 of each kept raw output and the run summary."""
        index = {"IndexName": DAY_INDEX}
        current = [it for it in self.query(f"items of {day}", **index, KeyConditionExpression=Key("audit_date").eq(day))
                   if is_observation(it)]
        hint = max([seq_hint, *(seq_of(it) - 1 for it in current)])
        versions: list[dict] = []
        k = 1
        while True:
            found = self.query(f"versions {k} of {day}", **index,
                               KeyConditionExpression=Key("audit_date").eq(version_key(day, k)))
            versions += [it for it in found if is_observation(it) or it.get("item_type") == "version"]
            if not found and k >= hint:
                break
            k += 1
        summary = self.call(self.table.get_item, f"run summary of {day}", ConsistentRead=True,
                            Key={"instance_id": SUMMARY_ID, "audit_date": day}).get("Item")
        return DayRead(day, current, versions, self.raw_hashes(day, current + versions), summary)

    # -- raw output
    def raw_hashes(self, day: str, items: Iterable[dict]) -> dict[tuple[str, str, str], str | None]:
        """SHA-256 of each kept raw output the items name (None: absent or unreadable)."""
        wanted = {(str(it["instance_id"]), str(it.get("output_ref") or ""), str(it.get("output_sha256") or ""))
                  for it in items if it.get("output_ref")}
        in_table = sorted(w for w in wanted if w[1] == OUTPUT_IN_DYNAMODB)
        found = self.raw_from_table(day, [(i, sha) for i, _, sha in in_table])
        hashes: dict[tuple[str, str, str], str | None] = {}
        for key in wanted:
            raw = found.get((key[0], key[2])) if key[1] == OUTPUT_IN_DYNAMODB else self.raw_from_s3(key[1])
            hashes[key] = hashlib.sha256(raw).hexdigest() if raw is not None else None
        return hashes

    def raw_output(self, item: dict) -> bytes | None:
        """The kept raw bytes of one observation (None: none kept, or gone)."""
        ref, sha = str(item.get("output_ref") or ""), str(item.get("output_sha256") or "")
        day = str(item.get("day") or item["audit_date"])[:10]
        if ref == OUTPUT_IN_DYNAMODB:
            return self.raw_from_table(day, [(str(item["instance_id"]), sha)]).get((str(item["instance_id"]), sha))
        return self.raw_from_s3(ref) if ref.startswith("s3://") else None

    def raw_from_table(self, day: str, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], bytes | None]:
        """T_raw chunks of each (instance, sha): part 0 holds the count; the parts joined are the gzip'd bytes."""
        table = DayTable(self.resource, self.raw_table)
        keys = [{"instance_id": i, "output_key": raw_chunk_key(day, sha, 0)} for i, sha in wanted]
        first = self._raw_get(table, keys)
        rest_keys = [{"instance_id": i, "output_key": raw_chunk_key(day, sha, n)} for i, sha in wanted
                     for n in range(1, int((first.get((i, raw_chunk_key(day, sha, 0))) or {}).get("chunks") or 1))]
        parts = {**first, **self._raw_get(table, rest_keys)}
        out: dict[tuple[str, str], bytes | None] = {}
        for i, sha in wanted:
            head = parts.get((i, raw_chunk_key(day, sha, 0)))
            chunks = [parts.get((i, raw_chunk_key(day, sha, n))) for n in range(int(head.get("chunks") or 1))] \
                if head else [None]
            out[(i, sha)] = _gunzip(b"".join(bytes(_binary(c["data"])) for c in chunks)) \
                if all(c is not None and "data" in c for c in chunks) else None
        return out

    def _raw_get(self, table: DayTable, keys: list[dict]) -> dict[tuple[str, str], dict]:
        if not keys:
            return {}
        # No raw-output table at all: every output it should hold is absent (altered), not an unreadable store.
        got = self.call(table.batch_get, "raw output", absent=("ResourceNotFoundException",), table=self.raw_table,
                        keys=keys)
        return {(str(it["instance_id"]), str(it["output_key"])): it for it in got or []}

    def raw_from_s3(self, ref: str) -> bytes | None:
        parts = urlsplit(ref)
        if parts.scheme != "s3" or not parts.netloc:
            return None
        if self._s3 is None:
            self._s3 = self.aws.client("s3")
        try:
            body = self._s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"].read()
        except ClientError as exc:
            if error_code(exc)[0] in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise StoreUnreadable(f"raw output {ref}: {error_code(exc)[0]}: {error_code(exc)[1]}") from exc
        except BotoCoreError as exc:
            raise StoreUnreadable(f"raw output {ref}: {exc}") from exc
        return _gunzip(body)


def _binary(value: Any) -> bytes:
    return bytes(value.value) if hasattr(value, "value") else bytes(value)


def _gunzip(data: bytes) -> bytes | None:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):  # a changed chunk: nothing kept to compare
        return None

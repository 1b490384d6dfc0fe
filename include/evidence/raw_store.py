"""Raw output kept beside the evidence: what the transport returned for a host (up to its cap), gzip'd, named by
the SHA-256 of the raw bytes (the item's `output_sha256`), for as long as the item (docs/EVIDENCE.md).

Where (include/evidence/observation.py holds the layout): chunk items in T_raw (`raw_table_name(T)`, key instance_id
+ output_key = `raw_chunk_key(day, sha, n)`, every part under 350 KB), or, with the `evidence_bucket` param, one S3
object `raw_s3_key(instance, day, sha)`, locked until the item's `expires_at` when the bucket has Object Lock.
Content-addressed, so it is written BEFORE the item that names it and a retry rewrites the same key with the same
bytes. The item's `output_ref` says where: OUTPUT_IN_DYNAMODB, "s3://bucket/key", or "" when nothing was kept.
Only the Airflow worker's role writes here (docs/SECURITY.md): never an instance role.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from boto3.dynamodb.conditions import Key

from include.aws.day_table import _backoff
from include.aws.errors import THROTTLED, error_code
from include.evidence.observation import OUTPUT_IN_DYNAMODB, RAW_CHUNK_BYTES, RawOutput, raw_chunk_key, raw_s3_key, raw_table_name

log = logging.getLogger(__name__)

ITEM_TYPE = "raw_output"
S3_SCHEME = "s3://"
BATCH_WRITE_MAX = 25  # items per BatchWriteItem
# DynamoDB's own throttling answers besides the generic ones (botocore's retries already ran when they reach us).
_THROTTLED = THROTTLED | {"ProvisionedThroughputExceededException", "RequestLimitExceeded"}
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")


class RawOutputUnreadable(ValueError):
    """Stored raw output that does not decompress (or whose parts disagree): altered, never "no output"."""


def chunk_items(instance_id: str, day: str, raw: RawOutput, expires_at: int) -> list[dict[str, Any]]:
    """The T_raw items of one raw output (pure): part n holds bytes [n*RAW_CHUNK_BYTES, ...) of the gzip; part 0
    also the count of parts, the SHA-256 and the size of the raw bytes."""
    parts = [raw.gz[i:i + RAW_CHUNK_BYTES] for i in range(0, len(raw.gz), RAW_CHUNK_BYTES)] or [b""]
    items = [{"instance_id": instance_id, "output_key": raw_chunk_key(day, raw.sha256, n), "item_type": ITEM_TYPE,
              "data": part, "expires_at": int(expires_at)} for n, part in enumerate(parts)]
    items[0].update(chunks=len(parts), sha256=raw.sha256, bytes=raw.size)
    return items


def parse_s3_ref(ref: str) -> tuple[str, str]:
    bucket, _, key = ref.removeprefix(S3_SCHEME).partition("/")
    if not ref.startswith(S3_SCHEME) or not bucket or not key:
        raise ValueError(f"not an s3:// output_ref: {ref!r}")
    return bucket, key


def bucket_problem(s3, bucket: str) -> str | None:
    """Why the run cannot keep raw output in `bucket` (None: it can be read). Checked at the run's start."""
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - any refusal or absence is the param's problem, named
        code, message = error_code(exc)
        return (f"param evidence_bucket: bucket {bucket!r} does not exist or cannot be read "
                f"({code or 'error'}: {message})"[:400])
    return None


class RawOutputStore:
    """Writes and reads the raw output of observations. `resource`: the evidence account's DynamoDB resource;
    `bucket`/`s3`: the `evidence_bucket` and an S3 client of the evidence account (None: T_raw)."""

    def __init__(self, resource, evidence_table: str, bucket: str | None = None, s3=None,
                 max_attempts: int = 8, base_delay: float = 0.05) -> None:
        self.resource, self.table_name = resource, raw_table_name(evidence_table)
        self.bucket, self.s3 = bucket or None, s3
        if self.bucket and s3 is None:
            raise ValueError("evidence_bucket needs an S3 client")
        self.max_attempts, self.base_delay = max_attempts, base_delay
        self._lock: tuple[str | None] | None = None  # (mode or None,) once read: detected once per store

    @classmethod
    def open(cls, resource, evidence_table: str, bucket: str | None):
        """The run's store: with `evidence_bucket`, an S3 client of the evidence account (`aws_default`)."""
        s3 = None
        if bucket:
            from include.aws.clients import s3_client

            s3 = s3_client(None)
        return cls(resource, evidence_table, bucket, s3)

    # -- where
    def ref(self, instance_id: str, day: str, sha256: str) -> str:
        """The `output_ref` an item gets for raw output this store keeps ("" when there is none)."""
        if not sha256:
            return ""
        if self.bucket:
            return f"{S3_SCHEME}{self.bucket}/{raw_s3_key(instance_id, day, sha256)}"
        return OUTPUT_IN_DYNAMODB

    # -- write
    def put(self, entries: Iterable[tuple[Mapping[str, Any], RawOutput]]) -> int:
        """Store the raw output of each (item, raw): under the item's instance_id, audit_date and expires_at.
        Raises when anything could not be stored after bounded retries: the batch fails, its retry stores it."""
        entries = [(it, raw) for it, raw in entries]
        if not entries:
            return 0
        if self.bucket:
            for item, raw in entries:
                self._put_s3(str(item["instance_id"]), str(item["audit_date"]), raw, int(item["expires_at"]))
        else:
            unique: dict[tuple[str, str], dict] = {}
            for item, raw in entries:
                for part in chunk_items(str(item["instance_id"]), str(item["audit_date"]), raw,
                                        int(item["expires_at"])):
                    unique[(part["instance_id"], part["output_key"])] = part
            self._batch_write(list(unique.values()))
        return len(entries)

    def _batch_write(self, items: list[dict]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            pending = {self.table_name: requests[start:start + BATCH_WRITE_MAX]}
            for attempt in range(self.max_attempts):
                try:
                    response = self.resource.batch_write_item(RequestItems=pending)
                except Exception as exc:
                    if error_code(exc)[0] not in _THROTTLED:
                        raise
                    response = {"UnprocessedItems": pending}  # nothing of it was written: all of it again
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                if attempt + 1 < self.max_attempts:
                    _backoff(attempt, self.base_delay)
            if pending:
                left = sum(len(v) for v in pending.values())
                raise RuntimeError(f"{left} raw-output chunks of {self.table_name} still unprocessed after "
                                   f"{self.max_attempts} attempts")

    def lock_mode(self) -> str | None:
        """The bucket's Object Lock mode (its default retention's, COMPLIANCE when locked without one), None when
        the bucket has no Object Lock. Read once per store."""
        if self._lock is None:
            try:
                config = self.s3.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
            except Exception as exc:
                if error_code(exc)[0] != "ObjectLockConfigurationNotFoundError":
                    raise
                config = {}
            mode = None
            if config.get("ObjectLockEnabled") == "Enabled":
                mode = (config.get("Rule") or {}).get("DefaultRetention", {}).get("Mode") or "COMPLIANCE"
            self._lock = (mode if mode in LOCK_MODES else None,)
        return self._lock[0]

    def _put_s3(self, instance_id: str, day: str, raw: RawOutput, expires_at: int) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": raw_s3_key(instance_id, day, raw.sha256),
                                  "Body": raw.gz, "ContentType": "application/gzip", "ChecksumAlgorithm": "SHA256",
                                  "Metadata": {"sha256": raw.sha256, "bytes": str(raw.size)}}
        if mode := self.lock_mode():  # write-once until the item itself expires
            kwargs.update(ObjectLockMode=mode,
                          ObjectLockRetainUntilDate=datetime.fromtimestamp(expires_at, tz=timezone.utc))
        self.s3.put_object(**kwargs)

    # -- read
    def get(self, instance_id: str, day: str, sha256: str, output_ref: str) -> bytes | None:
        """The raw bytes an observation's `output_ref` names, decompressed; None when none was kept or it is gone.
        Raises RawOutputUnreadable when what is stored does not decompress or its parts disagree."""
        if not output_ref or not sha256:
            return None
        if output_ref == OUTPUT_IN_DYNAMODB:
            gz = self._get_dynamodb(instance_id, day, sha256)
        else:
            gz = self._get_s3(*parse_s3_ref(output_ref))
        if gz is None:
            return None
        try:
            return gzip.decompress(gz)
        except (OSError, EOFError, zlib.error) as exc:
            raise RawOutputUnreadable(f"raw output {instance_id} {day} {sha256}: {exc}") from exc

    def _get_dynamodb(self, instance_id: str, day: str, sha256: str) -> bytes | None:
        prefix = raw_chunk_key(day, sha256, 0)[:-1]
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(instance_id)
                        & Key("output_key").begins_with(prefix), "ConsistentRead": True}
        table, parts = self.resource.Table(self.table_name), {}
        while True:
            response = table.query(**kwargs)
            for it in response.get("Items", []):
                tail = str(it["output_key"])[len(prefix):]
                if tail.isdigit():
                    parts[int(tail)] = it
            if "LastEvaluatedKey" not in response:
                break
            kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}
        if not parts:
            return None
        count = int(parts.get(0, {}).get("chunks") or 0)
        if count < 1 or sorted(parts) != list(range(count)):
            raise RawOutputUnreadable(f"raw output {instance_id} {day} {sha256}: parts {sorted(parts)}, "
                                      f"expected {count}")
        return b"".join(bytes(getattr(parts[n]["data"], "value", parts[n]["data"])) for n in range(count))

    def _get_s3(self, bucket: str, key: str) -> bytes | None:
        if self.s3 is None:
            raise ValueError(f"reading s3://{bucket}/{key} needs an S3 client")
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc)[0] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

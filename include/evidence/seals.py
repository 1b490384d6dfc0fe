"""Seals: the chain of a day's manifests through time, in the evidence table (docs/EVIDENCE.md).

Each time a day's evidence is sealed (the store step; again whenever a later check adds to that day) one item
is appended to the partition SEAL_ID, sort key seal_key(n), n = 1, 2, ... whatever the day: its statement
(include/evidence/manifest.py: the day, the manifest's hash over every current item and version of the day,
the members' hash, the previous seal's hash, the day's previous manifest), the statement's exact text, its
signature when `kms_key_id` is set (include/evidence/signing.py) and its own hash, which the next seal names.
The members (instance, seq, item hash) are kept beside it in gzip'd chunks (a 100,000-host day does not fit one
item): instance_id members_prefix(n) + chunk number, audit_date the day.

A day sealed again chains its new manifest after the old one; nothing here replaces or deletes a seal.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from include.aws.day_table import DayTable, to_dynamo
from include.aws.tables import DAY_INDEX
from include.core.clock import expires_at, iso, utc_now
from include.evidence import manifest
from include.evidence.manifest import SEAL_ID, Member, Statement
from include.evidence.observation import CURRENT, observation_sha256, version_key

log = logging.getLogger(__name__)

SEAL_TYPE, MEMBERS_TYPE = "seal", "seal_members"
APPEND_ATTEMPTS = 8  # a lost race (another seal took n+1) re-reads the chain and tries n+2, this many times
PAGE = 200  # seal items read per page when walking the chain back
# What the chain walk reads of each seal: enough to chain the next one and to find the day's latest manifest.
HEAD_FIELDS = ("seq", "day", "manifest_sha256", "seal_sha256", "expires_at")
MEMBER_FIELDS = ("instance_id", "audit_date", "item_type", "seq", "item_sha256")


class SealRaceLost(RuntimeError):
    """Other writers took every seal number this one tried: the task fails and its retry seals the day."""


@dataclass(frozen=True)
class SealRecord:
    """One seal as stored (the parts a run summary and a report carry)."""

    seq: int
    day: str
    manifest_sha256: str
    previous_manifest_sha256: str
    seal_sha256: str
    items: int
    signed: bool

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> "SealRecord":
        return cls(seq=int(item["seq"]), day=str(item["day"]), manifest_sha256=str(item["manifest_sha256"]),
                   previous_manifest_sha256=str(item.get("previous_manifest_sha256", "")),
                   seal_sha256=str(item["seal_sha256"]), items=int(item.get("items", 0)),
                   signed=bool(item.get("signature")))


@dataclass(frozen=True)
class Heads:
    """What appending needs from the chain: its latest seal, and the latest seal of the day being sealed."""

    latest: Mapping[str, Any] | None
    of_day: Mapping[str, Any] | None


def statement_after(heads: Heads, *, day: str, sealed_at: str, run_id: str, trigger: str, manifest_sha256: str,
                    members_sha256: str, items: int, kms_key_id: str = "") -> Statement:
    """The statement of the seal that follows `heads` (pure): the next number, the latest seal's hash and
    expiry whatever its day, and the day's previous manifest ("" when the day was never sealed)."""
    latest, of_day = heads.latest, heads.of_day
    return Statement(
        seq=int(latest["seq"]) + 1 if latest else 1, day=day, sealed_at=sealed_at, run_id=run_id, trigger=trigger,
        manifest_sha256=manifest_sha256, members_sha256=members_sha256, items=items,
        previous_seal_sha256=str(latest["seal_sha256"]) if latest else "",
        previous_manifest_sha256=str(of_day["manifest_sha256"]) if of_day else "",
        previous_expires_at=int(latest.get("expires_at") or 0) if latest else 0, kms_key_id=kms_key_id)


def _member(item: Mapping[str, Any]) -> Member:
    # An item written before seq existed was the day's first observation (observation.as_version says the same).
    return Member(str(item["instance_id"]), int(item.get("seq") or 1), str(item["item_sha256"]))


class SealStore:
    """The seal owner's reads and writes, over the table layer."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    # -- the day's members
    def _day_partition(self, partition: str, item_type: str) -> list[dict]:
        kwargs: dict = {"IndexName": DAY_INDEX, "KeyConditionExpression": Key("audit_date").eq(partition),
                        "FilterExpression": Attr("item_type").eq(item_type),
                        "ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(MEMBER_FIELDS))),
                        "ExpressionAttributeNames": {f"#p{i}": f for i, f in enumerate(MEMBER_FIELDS)}}
        return self.table.query_all(kwargs)

    def day_members(self, day: str, hosts: Iterable[str] = ()) -> list[Member]:
        """Every observation of the day now. The day index only lists the day's hosts (plus `hosts`, which the
        caller just wrote): it lags writes, so each host's current item is read by key, consistently, and its
        versions 1 .. seq-1 by key too (every replaced observation is kept, so all of them exist). A correction
        or a re-check stored a moment before the seal is covered, never missed as an index lag would."""
        ids = sorted({str(it["instance_id"]) for it in self._day_partition(day, CURRENT)} | set(hosts))
        projection = ", ".join(f"#{f}" for f in MEMBER_FIELDS)
        currents = [it for it in self.table.batch_get(self.table.table_name, [
            {"instance_id": i, "audit_date": day} for i in ids], projection, consistent=True)
            if it.get("item_type", CURRENT) == CURRENT]
        version_keys = [{"instance_id": it["instance_id"], "audit_date": version_key(day, s)}
                        for it in currents for s in range(1, int(it.get("seq") or 1))]
        items = currents + (self.table.batch_get(self.table.table_name, version_keys, projection, consistent=True)
                            if version_keys else [])
        legacy = [it for it in items if not it.get("item_sha256")]
        if legacy:  # stored before items carried their hash: hash the whole stored item, as a verifier does
            keys = [{"instance_id": it["instance_id"], "audit_date": it["audit_date"]} for it in legacy]
            full = {(f["instance_id"], f["audit_date"]): f
                    for f in self.table.batch_get(self.table.table_name, keys, consistent=True)}
            for it in legacy:
                it["item_sha256"] = observation_sha256(full.get((it["instance_id"], it["audit_date"]), it))
        return sorted(_member(it) for it in items)

    # -- the chain
    def _pages(self, fields: tuple[str, ...] | None) -> Iterator[list[dict]]:
        """The chain, newest first, a bounded page at a time, read consistently (an append must see the seal
        another writer just added)."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(SEAL_ID), "ScanIndexForward": False,
                        "ConsistentRead": True, "Limit": PAGE}
        if fields:
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(fields)))
            kwargs["ExpressionAttributeNames"] = {f"#p{i}": f for i, f in enumerate(fields)}
        while True:
            response = self.table.table.query(**kwargs)
            yield response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}

    def heads(self, day: str) -> Heads:
        """The chain's latest seal and the day's latest seal, in one walk back (it stops at the day's)."""
        latest = None
        for page in self._pages(HEAD_FIELDS):
            for item in page:
                latest = latest or item
                if item.get("day") == day:
                    return Heads(latest, item)
        return Heads(latest, None)

    def signing_key(self) -> str | None:
        """The KMS key the chain's latest seal was signed with (None: unsigned, or no seal yet): a reseal by a
        check outside the day's run keeps a signed chain signed, with the same key."""
        page = next(self._pages(("kms_key_id",)), [])
        return str(page[0].get("kms_key_id") or "") or None if page else None

    def chain(self, first: int | None = None) -> list[dict]:
        """Every seal item, oldest first (from seal number `first` on when given)."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(SEAL_ID), "ConsistentRead": True,
                        "Limit": PAGE}
        if first is not None:
            kwargs["KeyConditionExpression"] &= Key("audit_date").gte(manifest.seal_key(first))
        return self.table.query_all(kwargs)

    def latest_for_day(self, day: str) -> SealRecord | None:
        """The day's latest seal, or None when it was never sealed."""
        of_day = self.heads(day).of_day
        if of_day is None:
            return None
        item = self.table.table.get_item(Key={"instance_id": SEAL_ID, "audit_date": manifest.seal_key(
            int(of_day["seq"]))}, ConsistentRead=True).get("Item")
        return SealRecord.from_item(item) if item else None

    def members(self, n: int, day: str) -> list[Member]:
        """Seal n's members as it stored them (ValueError when a chunk is missing or changed)."""
        found = self.table.get_chunks(manifest.members_prefix(n), day)
        if found is None:
            raise ValueError(f"seal {n} of {day}: its members are missing")
        return manifest.unpack_members(found[0], str(found[1]["sha256"]))

    # -- sealing
    def seal_day(self, day: str, run_id: str, trigger: str, ttl_days: int, signer=None,
                 hosts: Iterable[str] = ()) -> SealRecord:
        """Seal the day as stored now: a new seal appended to the chain (never replacing one), its members
        written after it. `signer`: include/evidence/signing.Signer, or None for an unsigned seal. `hosts`: ids
        the caller has just written that day (the index may not list them yet)."""
        members = self.day_members(day, hosts)
        digest = manifest.manifest_sha256(members)
        parts, members_sha = manifest.pack_members(members)
        for _ in range(APPEND_ATTEMPTS):
            statement = statement_after(self.heads(day), day=day, sealed_at=iso(utc_now()), run_id=run_id,
                                        trigger=trigger, manifest_sha256=digest, members_sha256=members_sha,
                                        items=len(members), kms_key_id=signer.key_arn if signer else "")
            n = statement.seq
            signature = signer.sign(statement.text()) if signer else ""
            item = {"instance_id": SEAL_ID, "audit_date": manifest.seal_key(n), "item_type": SEAL_TYPE,
                    "expires_at": expires_at(day, ttl_days), **manifest.seal_item_fields(statement, signature,
                                                                                         len(parts))}
            if self._append(item):
                # The members after the seal that names them: two writers sealing one day at once each write
                # under the number they won, never over the other's (members_prefix(n) keys by n and day).
                self.table.put_chunks(manifest.members_prefix(n), MEMBERS_TYPE, day, parts, members_sha, {},
                                      ttl_days)
                log.info("%s sealed as seal %d: %d observations, manifest %s%s", day, n, len(members), digest,
                         ", signed" if signature else "")
                return SealRecord.from_item(item)
            log.info("seal %d of the chain was taken by another writer: re-reading the chain", n)
        raise SealRaceLost(f"{day}: {APPEND_ATTEMPTS} seal numbers in a row were taken by other writers")

    def _append(self, item: dict) -> bool:
        """Write the seal only where none is (attribute_not_exists): False when another writer took n."""
        try:
            self.table.table.put_item(Item=to_dynamo(item), ConditionExpression=Attr("instance_id").not_exists())
            return True
        except self.table.client.exceptions.ConditionalCheckFailedException:
            return False


def seal(table: DayTable, day: str, run_id: str, trigger: str, ttl_days: int, kms_key_id: str | None = None,
         hosts: Iterable[str] = ()) -> SealRecord:
    """Seal a day (the store step, and a remediation's re-check for its day), signed when `kms_key_id` is set.
    A failure raises: the calling task fails and its retry seals the day; a day is never left silently unsealed."""
    from include.evidence.signing import open_signer

    signer = open_signer(kms_key_id) if kms_key_id else None
    return SealStore(table).seal_day(day, run_id, trigger, ttl_days, signer, hosts)

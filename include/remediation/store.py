"""Remediation records and decisions: stored beside the day's evidence in the evidence table, never over it.

Append-only: one partition per host (`#remediation#<host id>`), one item per attempt (sort key
"<day>#<run id>", attribute `day`): a later attempt never replaces an earlier one, and a retried task of the
same run writes its own attempt again (the same key), never a second one. The day's list of remediated hosts
and of their attempts (read without a scan), and the day's answers to remediation plans.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from boto3.dynamodb.conditions import Key

from include.aws.day_table import DayTable, to_dynamo
from include.core.clock import expires_at
from include.remediation.records import RemediationDecision, RemediationRecord

REMEDIATION_PREFIX = "#remediation#"  # + host id: one partition per host, one item per attempt
DECISIONS_ID = "#remediation-decisions"  # per day: every answer given to a remediation plan
REMEDIATED_ID = "#remediation-hosts"  # per day: the ids that have a remediation record (read them without a scan)
ATTEMPT_SEP = "|"  # `attempts` of the day's list: "<host id>|<run id>" (an instance id has no "|")
# What a record shows of the other attempts of its day (the report's and the dashboard's "earlier that day").
ACTIVE_LIMIT = 10  # a host's newest attempts read when a tamper alert asks what remediation ran on it
UNFINISHED = ("", "applying", "unverified")  # outcomes of an attempt whose fixes run or ran, not yet re-verified
EARLIER_FIELDS = ("run_id", "ran_at", "outcome", "approved_by", "plan_sha256", "after_status")


def attempt_key(audit_date: str, run_id: str) -> str:
    return f"{audit_date}#{run_id}"


def _record(item: dict) -> RemediationRecord:
    """A stored attempt (or a record from before attempts: sort key the day itself) as its record."""
    return RemediationRecord.from_item({**item, "audit_date": item.get("day") or item["audit_date"]})


def describe_attempt(record: RemediationRecord) -> str:
    """Pure. One attempt as a tamper alert names it: the run, who approved it, and where it stands."""
    who = f" approved by {record.approved_by}" if record.approved_by else ""
    if record.outcome == "applying":
        where = "applying"
    elif record.outcome in UNFINISHED:
        where = f"fixes ran by {record.ran_at}, not yet re-verified"
    else:
        where = f"fixes ran by {record.ran_at}, {record.outcome}"
    return f"remediation run {record.run_id}{who}, {where}"


def latest_attempts(records: Iterable[RemediationRecord]) -> list[RemediationRecord]:
    """Pure. Per (host, day) the latest attempt (by ran_at, then run id), its `earlier` the day's other attempts'
    summaries, oldest first (after what a record from before attempts kept in it). Sorted by host, newest day first."""
    by_day: dict[tuple[str, str], list[RemediationRecord]] = defaultdict(list)
    for r in records:
        by_day[(r.host_id, r.audit_date)].append(r)
    latest = []
    for attempts in by_day.values():
        attempts.sort(key=lambda r: (r.ran_at, r.run_id))
        *before, last = attempts
        kept = [e for r in before for e in r.earlier] + [e for e in last.earlier]
        latest.append(replace(last, earlier=kept + [{k: getattr(r, k) for k in EARLIER_FIELDS} for r in before]))
    return sorted(sorted(latest, key=lambda r: r.audit_date, reverse=True), key=lambda r: r.host_id)


class RemediationStore:
    """The remediation owner's reads and writes, over the table layer (include/aws/day_table.py)."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    def put_remediation(self, record: RemediationRecord, ttl_days: int) -> RemediationRecord:
        """Store one attempt (one run) of one host's remediation of the day as its own item: the run's later
        steps (the re-verification's outcome) and a retried task complete the same attempt; another run's
        attempt is never touched."""
        partition = REMEDIATION_PREFIX + record.host_id
        ttl = expires_at(record.audit_date, ttl_days)  # the day's TTL, as its evidence has (never the record's 0)
        fields = {**record.to_item(), "instance_id": partition, "audit_date": attempt_key(record.audit_date, record.run_id),
                  "item_type": "remediation", "day": record.audit_date, "expires_at": ttl}
        fields.pop("earlier")  # derived when read (latest_attempts): every attempt is its own item
        self.table.table.put_item(Item=to_dynamo(fields))
        # The day's list of remediated hosts and their attempts: the report reads it instead of the day's index.
        self.table.table.update_item(
            Key={"instance_id": REMEDIATED_ID, "audit_date": record.audit_date},
            UpdateExpression="ADD hosts :h, attempts :a SET item_type = :t, expires_at = :e",
            ExpressionAttributeValues={":h": {record.host_id}, ":a": {f"{record.host_id}{ATTEMPT_SEP}{record.run_id}"},
                                       ":t": "remediation_hosts", ":e": ttl})
        return replace(record, earlier=[], expires_at=ttl)

    def day_remediations(self, audit_date: str) -> list[RemediationRecord]:
        """The day's latest attempt per host, by host id, the earlier ones summarised in `earlier`: one GetItem
        for the day's list, then BatchGetItem — never a read of the whole day (on a day without remediation,
        one GetItem)."""
        listed = self.table.get_day_item(REMEDIATED_ID, audit_date) or {}
        hosts = sorted(listed.get("hosts") or [])
        attempts = sorted(str(a).partition(ATTEMPT_SEP) for a in listed.get("attempts") or [])
        keys = [{"instance_id": REMEDIATION_PREFIX + h, "audit_date": audit_date} for h in hosts]  # before attempts
        keys += [{"instance_id": REMEDIATION_PREFIX + h, "audit_date": attempt_key(audit_date, run)}
                 for h, _, run in attempts]
        found = self.table.batch_get(self.table.table_name, keys) if keys else []
        return latest_attempts(_record(it) for it in found)

    def attempts(self, host_id: str, audit_date: str) -> list[RemediationRecord]:
        """Every attempt of one host's remediation of the day, oldest first: one Query on its partition."""
        kwargs = {"KeyConditionExpression": Key("instance_id").eq(REMEDIATION_PREFIX + host_id)
                  & Key("audit_date").begins_with(audit_date), "ConsistentRead": True}
        found = [_record(it) for it in self.table.query_all(kwargs)]
        return sorted((r for r in found if r.audit_date == audit_date), key=lambda r: (r.ran_at, r.run_id))

    def host_remediations(self, host_id: str, limit: int = 90) -> list[RemediationRecord]:
        """One host's remediation records, newest day first: per day its latest attempt, the earlier ones in
        `earlier`."""
        response = self.table.table.query(KeyConditionExpression=Key("instance_id").eq(REMEDIATION_PREFIX + host_id),
                                          ScanIndexForward=False, Limit=limit)
        return latest_attempts(_record(it) for it in response.get("Items", []))

    def attempts_since(self, host_id: str, since: str, limit: int = ACTIVE_LIMIT) -> list[RemediationRecord]:
        """The host's attempts whose record was written (`ran_at`) at or after `since` (ISO-8601 UTC, the stored
        form), newest first: one Query of its newest `limit` attempts (sort keys `<day>#<run>` order them by day).
        A tamper alert names them (include/notify/tamper.py): a fix's own `augenrules --load` deletes the loaded
        rules before loading the file's, so it writes the very records a rule deletion alerts on."""
        response = self.table.table.query(KeyConditionExpression=Key("instance_id").eq(REMEDIATION_PREFIX + host_id),
                                          ScanIndexForward=False, Limit=limit, ConsistentRead=True)
        found = [_record(it) for it in response.get("Items", [])]
        return sorted((r for r in found if r.ran_at and r.ran_at >= since), key=lambda r: (r.ran_at, r.run_id),
                      reverse=True)

    def add_decision(self, audit_date: str, decision: RemediationDecision, ttl_days: int) -> None:
        """Append one answer to the day's list (a retry of the same run and decision is not added twice)."""
        from botocore.exceptions import ClientError

        try:
            self._append_decision(audit_date, decision, ttl_days)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _append_decision(self, audit_date: str, decision: RemediationDecision, ttl_days: int) -> None:
        self.table.table.update_item(
            Key={"instance_id": DECISIONS_ID, "audit_date": audit_date},
            UpdateExpression="SET item_type = :t, expires_at = :e, decisions = list_append(if_not_exists(decisions, :empty), :d), "
                             "answered = list_append(if_not_exists(answered, :empty), :k)",
            ConditionExpression="attribute_not_exists(answered) OR NOT contains(answered, :key)",
            ExpressionAttributeValues={":t": "remediation_decisions", ":e": expires_at(audit_date, ttl_days),
                                       ":d": [to_dynamo(decision.to_item())], ":empty": [],
                                       ":k": [f"{decision.run_id}|{decision.decision}"],
                                       ":key": f"{decision.run_id}|{decision.decision}"})

    def decisions(self, audit_date: str) -> list[RemediationDecision]:
        item = self.table.get_day_item(DECISIONS_ID, audit_date) or {}
        return [RemediationDecision.from_item(d) for d in item.get("decisions") or []]

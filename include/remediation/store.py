"""Remediation records and decisions: stored beside the day's evidence in the evidence table, never over it.

One partition per host (`#remediation#<host id>`, one item per audit day), the day's list of remediated hosts
(read without a scan), and the day's answers to remediation plans.
"""
from __future__ import annotations

from boto3.dynamodb.conditions import Key

from include.aws.day_table import DayTable, to_dynamo
from include.core.clock import expires_at
from include.remediation.records import RemediationDecision, RemediationRecord

REMEDIATION_PREFIX = "#remediation#"  # + host id: one partition per host, one item per audit day
DECISIONS_ID = "#remediation-decisions"  # per day: every answer given to a remediation plan
REMEDIATED_ID = "#remediation-hosts"  # per day: the ids that have a remediation record (read them without a scan)


class RemediationStore:
    """The remediation owner's reads and writes, over the table layer (include/aws/day_table.py)."""

    def __init__(self, table: DayTable) -> None:
        self.table = table

    def put_remediation(self, record: RemediationRecord, ttl_days: int) -> RemediationRecord:
        """Store one host's remediation for the day; an earlier attempt that day is kept as a summary in
        `earlier` (a retried task of the same run replaces its own attempt instead of adding one)."""
        partition = REMEDIATION_PREFIX + record.host_id
        previous = self.table.get_day_item(partition, record.audit_date)
        earlier = list(previous.get("earlier") or []) if previous else []
        if previous and previous.get("run_id") != record.run_id:
            earlier.append({k: previous.get(k, "") for k in ("run_id", "ran_at", "outcome", "approved_by",
                                                              "plan_sha256", "after_status")})
        fields = {**record.to_item(), "earlier": earlier}
        fields.pop("audit_date")
        fields.pop("expires_at")  # the day's TTL, as its evidence has (the record's default 0 would never expire)
        self.table.put_day_item(partition, "remediation", record.audit_date, fields, ttl_days)
        # The day's list of remediated hosts: the report reads it instead of filtering the whole day's index.
        self.table.table.update_item(
            Key={"instance_id": REMEDIATED_ID, "audit_date": record.audit_date},
            UpdateExpression="ADD hosts :h SET item_type = :t, expires_at = :e",
            ExpressionAttributeValues={":h": {record.host_id}, ":t": "remediation_hosts",
                                       ":e": expires_at(record.audit_date, ttl_days)})
        return RemediationRecord.from_item({**fields, "audit_date": record.audit_date,
                                            "expires_at": expires_at(record.audit_date, ttl_days)})

    def day_remediations(self, audit_date: str) -> list[RemediationRecord]:
        """The day's remediation records, by host id: one GetItem for the day's list, then BatchGetItem —
        never a read of the whole day (on a day without remediation, one GetItem)."""
        hosts = sorted((self.table.get_day_item(REMEDIATED_ID, audit_date) or {}).get("hosts") or [])
        keys = [{"instance_id": REMEDIATION_PREFIX + h, "audit_date": audit_date} for h in hosts]
        found = self.table.batch_get(self.table.table_name, keys) if keys else []
        return sorted((RemediationRecord.from_item(it) for it in found), key=lambda r: r.host_id)

    def host_remediations(self, host_id: str, limit: int = 90) -> list[RemediationRecord]:
        """One host's remediation records, newest day first."""
        response = self.table.table.query(KeyConditionExpression=Key("instance_id").eq(REMEDIATION_PREFIX + host_id),
                                          ScanIndexForward=False, Limit=limit)
        return [RemediationRecord.from_item(it) for it in response.get("Items", [])]

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

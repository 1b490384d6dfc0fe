"""The DynamoDB tables the product owns: their names and key schemas, created if missing (create_table=true).

Both the evidence store and the host-key pin store use these, so neither imports the other (nor, through it,
the SSH layer).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DAY_INDEX = "by_audit_date"


RAW_TABLE_SUFFIX = "_raw"


def pins_table_name(evidence_table: str) -> str:
    return f"{evidence_table}_host_keys"


def raw_table_name(evidence_table: str) -> str:
    """The raw output of the evidence table's observations (include/evidence/raw_store.py)."""
    return f"{evidence_table}{RAW_TABLE_SUFFIX}"


def _create(client, name: str, **spec) -> None:
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **spec)
    client.get_waiter("table_exists").wait(TableName=name)
    log.info("created table %s", name)


def ensure_tables(client, evidence_table: str) -> None:
    """The evidence table (key instance_id + audit_date, the day index, TTL on expires_at), its pins table and its
    raw-output table (key instance_id + output_key, TTL on expires_at, no index: raw bytes are never copied)."""
    existing = set(client.list_tables().get("TableNames", []))
    if evidence_table not in existing:
        _create(client, evidence_table,
                KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"},
                           {"AttributeName": "audit_date", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"},
                                      {"AttributeName": "audit_date", "AttributeType": "S"}],
                GlobalSecondaryIndexes=[{
                    "IndexName": DAY_INDEX,
                    "KeySchema": [{"AttributeName": "audit_date", "KeyType": "HASH"},
                                  {"AttributeName": "instance_id", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"}}])
        client.update_time_to_live(TableName=evidence_table,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    pins = pins_table_name(evidence_table)
    if pins not in existing:
        _create(client, pins, KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"}])
    raw = raw_table_name(evidence_table)
    if raw not in existing:
        _create(client, raw, KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"},
                                        {"AttributeName": "output_key", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"},
                                      {"AttributeName": "output_key", "AttributeType": "S"}])
        client.update_time_to_live(TableName=raw,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})

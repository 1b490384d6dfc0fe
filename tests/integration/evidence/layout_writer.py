"""Writes a tests/sealed_layout.py Ledger to a real DynamoDB (and S3) as issue 27's writers store it: items and
versions in T, raw output chunks in T_raw (or S3 objects), seals in the "#seal" partition with their members in
chunks (include/aws/day_table.py's put_chunks), run summaries. The command line's integration tests read what this
wrote; it stands for the writers, so it uses only the layout modules."""
from __future__ import annotations

from boto3.dynamodb.types import Binary

from include.aws.day_table import DayTable, to_dynamo
from include.aws.tables import ensure_tables
from include.evidence.manifest import members_prefix, pack_members
from include.evidence.observation import RAW_CHUNK_BYTES, raw_chunk_key, raw_s3_key, raw_table_name
from tests.sealed_layout import Ledger


def create_tables(resource, table: str) -> None:
    client = resource.meta.client
    ensure_tables(client, table)
    raw = raw_table_name(table)
    if raw not in client.list_tables()["TableNames"]:
        client.create_table(TableName=raw, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"},
                                       {"AttributeName": "output_key", "KeyType": "RANGE"}],
                            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"},
                                                  {"AttributeName": "output_key", "AttributeType": "S"}])


def write(resource, table: str, ledger: Ledger, s3=None, chunk_bytes: int = RAW_CHUNK_BYTES) -> None:
    create_tables(resource, table)
    evidence = resource.Table(table)
    for item in ledger.items.values():
        evidence.put_item(Item=to_dynamo(item))
    raw_table = resource.Table(raw_table_name(table))
    for (instance_id, day, sha), output in ledger.raws.items():
        expires = next(it["expires_at"] for it in ledger.items.values()
                       if it["instance_id"] == instance_id and it["output_sha256"] == sha)
        if ledger.bucket:
            s3.put_object(Bucket=ledger.bucket, Key=raw_s3_key(instance_id, day, sha), Body=output.gz)
            continue
        parts = [output.gz[i:i + chunk_bytes] for i in range(0, len(output.gz), chunk_bytes)] or [b""]
        for n, part in enumerate(parts):
            extra = {"chunks": len(parts), "sha256": sha, "bytes": output.size} if n == 0 else {}
            raw_table.put_item(Item={"instance_id": instance_id, "output_key": raw_chunk_key(day, sha, n),
                                     "item_type": "raw_output", "data": Binary(part), "expires_at": expires, **extra})
    day_table = DayTable(resource, table)
    for n, seal in ledger.seals.items():
        evidence.put_item(Item=to_dynamo(seal))
        parts, sha = pack_members(ledger.members[n])
        day_table.put_chunks(members_prefix(n), "seal_members", seal["day"], parts, sha, {}, ledger.ttl)
    for summary in ledger.summaries.values():
        evidence.put_item(Item=to_dynamo(summary))

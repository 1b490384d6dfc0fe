"""devstack/standins/aws's fleet-scale patches (ec2.py, dynamodb.py) answer exactly as moto does (in-process moto, before and after)."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws


def _day_reads_and_describes() -> str:
    from include.evidence.store import EvidenceStore

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "ev")
        store.ensure_tables()
        checks = {f"c{k}": {"status": "PASS", "detail": f"d{k}", "frameworks": ["cis-4.1", "nist-au-2"]} for k in range(4)}
        store.put_items([{"instance_id": f"i-{n:017x}", "audit_date": "2026-12-01", "item_type": "instance",
                          "run_id": "r1" if n % 3 else "r2", "status": "COMPLIANT" if n % 2 else "NON_COMPLIANT",
                          "checks": checks, "output_sha256": f"{n:064x}"} for n in range(40)])
        reads = [store.day_items("2026-12-01", fields=["status", "output_sha256"]),
                 store.day_items("2026-12-01", run_id="r1", status="COMPLIANT"),
                 store.day_items("2026-12-01", fields=["checks"])]
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ids = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3)["Instances"]]
        ids += [ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]]
        described = [sorted(ids.index(i["InstanceId"]) for r in ec2.describe_instances(InstanceIds=ids[1:])["Reservations"]
                            for i in r["Instances"]),
                     [len(r["Instances"]) for r in ec2.describe_instances(
                         InstanceIds=ids, Filters=[{"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]]]
        with pytest.raises(Exception) as missing:
            ec2.describe_instances(InstanceIds=[ids[0], "i-0000000000000dead"])
        return json.dumps([reads, described, str(missing.value).replace(ids[0], "i-first")], sort_keys=True, default=str)




def _table_t():
    """A client and table "t" (hash h, range r, on demand) inside the caller's mock_aws."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"},
                                              {"AttributeName": "r", "AttributeType": "S"}])
    return client

def _counted(monkeypatch, owner, name: str) -> list[int]:
    """Count the calls of owner.name (the original still answers): [calls], read after the code under test."""
    calls, original = [0], getattr(owner, name)

    def counting(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls

def test_the_lookup_and_query_patches_change_no_answer(monkeypatch):
    from moto.dynamodb.models import table
    from moto.dynamodb.models.dynamo_type import Item
    from moto.ec2.models import instances

    from devstack.standins.aws import dynamodb, ec2

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    before = _day_reads_and_describes()
    # undone after the test: the patches replace these three names only
    for owner, name in ((table, "copy"), (Item, "project"), (instances.InstanceBackend, "get_instance")):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    from moto.ec2.models import tags
    monkeypatch.setattr(tags.TagBackend, "describe_tags", tags.TagBackend.describe_tags)
    ec2.direct_lookups()
    dynamodb.query_copies_what_it_returns()
    assert table.copy is not __import__("copy")  # the patch is in place
    assert _day_reads_and_describes() == before


def _transactions() -> str:
    """Observations appended through transactions, one of them cancelled halfway (a lost race): what is stored
    and what each call answered."""
    from botocore.exceptions import ClientError

    from include.evidence.store import EvidenceStore

    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        store = EvidenceStore(resource, "ev")
        store.ensure_tables()
        client = resource.meta.client
        item = {"instance_id": "i-1", "audit_date": "2026-12-01", "seq": 1}  # the resource's client serializes
        answers = [client.transact_write_items(TransactItems=[
            {"Put": {"TableName": "ev", "Item": item, "ConditionExpression": "attribute_not_exists(instance_id)"}},
            {"Put": {"TableName": "ev", "Item": {**item, "instance_id": "i-2"}}}])["ResponseMetadata"]["HTTPStatusCode"]]
        try:  # the new i-3 and the replaced i-2 go through, i-1's condition fails: all of it is undone
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": "ev", "Item": {**item, "instance_id": "i-3"}}},
                {"Put": {"TableName": "ev", "Item": {**item, "instance_id": "i-2", "seq": 2}}},
                {"Put": {"TableName": "ev", "Item": {**item, "seq": 2},
                         "ConditionExpression": "seq = :s", "ExpressionAttributeValues": {":s": 7}}}])
        except ClientError as exc:
            answers.append([r.get("Code") for r in exc.response.get("CancellationReasons", [])])
        stored = sorted((it["instance_id"], int(it["seq"])) for it in resource.Table("ev").scan()["Items"])
        return json.dumps([answers, stored])


def test_the_transaction_patch_changes_no_answer_and_a_cancelled_one_writes_nothing(monkeypatch):
    from moto.dynamodb import models

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    before = _transactions()
    assert json.loads(before) == [[200, ["None", "None", "ConditionalCheckFailed"]], [["i-1", 1], ["i-2", 1]]]
    for name in ("copy",):  # undone after the test
        monkeypatch.setattr(models, name, getattr(models, name))
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", models.DynamoDBBackend.transact_write_items)
    dynamodb.transactions_snapshot_their_items()
    assert models.copy is not __import__("copy")  # the patch is in place
    assert _transactions() == before


def _partition_queries() -> str:
    """Every shape of table Query the project makes (one host's day, its history newest first with a limit, a
    page after an ExclusiveStartKey, a projection, a filter) and one index Query, on several partitions."""
    from boto3.dynamodb.conditions import Attr, Key

    from include.evidence.store import EvidenceStore

    with mock_aws():
        store = EvidenceStore(boto3.resource("dynamodb", region_name="us-east-1"), "ev")
        store.ensure_tables()
        table = store.table
        for n in range(6):
            for day in ("2026-11-29", "2026-11-30", "2026-12-01"):
                for key in (day, f"{day}#v#1", f"{day}#v#2"):
                    table.put_item(Item={"instance_id": f"i-{n:017x}", "audit_date": key, "day": day,
                                         "item_type": "instance" if key == day else "version", "seq": n,
                                         "status": "COMPLIANT" if n % 2 else "NON_COMPLIANT"})
        host = Key("instance_id").eq(f"i-{3:017x}")
        first = table.query(KeyConditionExpression=host & Key("audit_date").lt("2026-12-01~"),
                            ScanIndexForward=False, Limit=4)
        answers = [
            table.query(KeyConditionExpression=host & Key("audit_date").begins_with("2026-11-30"))["Items"],
            [first["Items"], first["LastEvaluatedKey"], first["Count"], first["ScannedCount"]],
            table.query(KeyConditionExpression=host, ExclusiveStartKey=first["LastEvaluatedKey"])["Items"],
            table.query(KeyConditionExpression=host, ProjectionExpression="audit_date, #s",
                        ExpressionAttributeNames={"#s": "status"})["Items"],
            table.query(KeyConditionExpression=host, FilterExpression=Attr("item_type").eq("version"))["Items"],
            table.query(KeyConditionExpression=Key("instance_id").eq("i-absent"))["Items"],
            store.day_items("2026-11-30", fields=["status"]),
        ]
        return json.dumps(answers, sort_keys=True, default=str)


def test_a_table_query_reads_its_partition_only_and_answers_as_moto(monkeypatch):
    from moto.dynamodb.models import table

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    before = _partition_queries()
    monkeypatch.setattr(table.Table, "query", table.Table.query)  # undone after the test
    monkeypatch.setattr(table.Table, "all_items", table.Table.all_items)
    walked: list[int] = []
    dynamodb.table_queries_read_one_partition()
    patched = table.Table.all_items

    def counting(self):
        items = patched(self)
        walked.append(len(items))
        return items

    monkeypatch.setattr(table.Table, "all_items", counting)
    assert _partition_queries() == before
    # A host's queries walk its own 9 items (or none); only the index query walks the table (54 items).
    assert sorted(set(walked)) == [0, 9, 54]


def _item_answers(raw: list[bytes]) -> str:
    """Items of every attribute type (strings, numbers, binary, sets, nested maps and lists, null, booleans,
    empty strings) put, then read back by GetItem, Query (with a projection), BatchGetItem and PutItem's
    ReturnValues; the raw response bodies are appended to `raw`, the parsed answers returned."""
    with mock_aws():
        client = _table_t()
        client.meta.events.register("after-call.dynamodb.*",
                                    lambda http_response, **_: raw.append(http_response.content))
        item = {"h": {"S": "i-1"}, "r": {"S": "2026-12-01"}, "n": {"N": "12.50"}, "e": {"S": ""},
                "b": {"B": b"\x00\xffbytes"}, "bs": {"BS": [b"a", b"\x01"]}, "ss": {"SS": ["x", "y"]},
                "ns": {"NS": ["1", "2.5"]}, "t": {"BOOL": True}, "f": {"BOOL": False}, "z": {"NULL": True},
                "m": {"M": {"c1": {"M": {"status": {"S": "PASS"}, "detail": {"S": "ok"}, "blob": {"B": b"x"}}},
                            "c2": {"M": {"status": {"S": "FAIL"}, "list": {"L": [{"S": "a"}, {"N": "1"}, {"M": {}}]}}},
                            "empty": {"M": {}}, "l": {"L": []}}},
                "l": {"L": [{"S": "a"}, {"L": [{"BOOL": False}, {"NULL": True}]}, {"SS": ["q"]}]}}
        answers = [client.put_item(TableName="t", Item=item)]
        answers.append(client.put_item(TableName="t", Item={**item, "n": {"N": "1"}}, ReturnValues="ALL_OLD"))
        answers.append(client.put_item(TableName="t", Item={**item, "r": {"S": "2026-12-02"}}))
        answers.append(client.get_item(TableName="t", Key={"h": {"S": "i-1"}, "r": {"S": "2026-12-01"}}))
        answers.append(client.query(TableName="t", KeyConditionExpression="h = :h",
                                    ExpressionAttributeValues={":h": {"S": "i-1"}}, ScanIndexForward=False))
        answers.append(client.query(TableName="t", KeyConditionExpression="h = :h",
                                    ExpressionAttributeValues={":h": {"S": "i-1"}},
                                    ProjectionExpression="m.c1, l[1], #n", ExpressionAttributeNames={"#n": "n"}))
        answers.append(client.batch_get_item(RequestItems={"t": {"Keys": [
            {"h": {"S": "i-1"}, "r": {"S": "2026-12-01"}}, {"h": {"S": "i-1"}, "r": {"S": "2026-12-02"}}]}}))
        for answer in answers:
            answer.pop("ResponseMetadata", None)
        return json.dumps(answers, sort_keys=True, default=repr)


def _install(monkeypatch, patch, *owners_names) -> None:
    """Apply one patch for this test only: the names it replaces are restored after it."""
    for owner, name in owners_names:
        monkeypatch.setattr(owner, name, getattr(owner, name))
    patch()


def test_attribute_values_are_written_directly_byte_for_byte_as_moto(monkeypatch):
    from moto.core import serialize

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    raw_before: list[bytes] = []
    before = _item_answers(raw_before)
    walk = serialize.BaseJSONSerializer._serialize_type_structure
    walked: list[str] = []

    def counting(self, serialized, value, shape, key):
        if shape.name == "AttributeValue":
            walked.append(next(iter(value)) if isinstance(value, dict) and value else "?")
        return walk(self, serialized, value, shape, key)

    monkeypatch.setattr(serialize.BaseJSONSerializer, "_serialize_type_structure", counting)
    dynamodb.attribute_values_serialize_directly()  # over the counting walk: it counts what still takes the walk
    raw_after: list[bytes] = []
    assert _item_answers(raw_after) == before
    assert raw_after == raw_before  # the same bodies, byte for byte
    # Only the values holding binary (which moto base64-encodes) still take the walk, and the members of those.
    assert walked and set(walked) <= {"B", "BS", "M", "S"} and walked.count("S") < 10, walked


def test_an_item_is_sized_once_and_refused_as_moto_refuses_it(monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    def puts() -> str:
        with mock_aws():
            client = boto3.client("dynamodb", region_name="us-east-1")
            client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                                KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}])
            answers = []
            for n, size in enumerate((100, 404_900, 405_100, 500_000)):  # DynamoDB's 400 KB, as moto draws it
                try:
                    client.put_item(TableName="t", Item={"h": {"S": f"i-{n}"}, "a": {"S": "x"},
                                                         "big": {"S": "y" * size}, "z": {"N": "1"}})
                    answers.append("stored")
                except Exception as exc:  # noqa: BLE001 - the refusal is the answer compared
                    answers.append(str(exc))
            answers.append(sorted(i["h"]["S"] for i in client.scan(TableName="t")["Items"]))
            return json.dumps(answers)

    before = puts()
    assert "stored" in before and "Item size has exceeded" in before
    sized = _counted(monkeypatch, DynamoType, "size")
    _install(monkeypatch, dynamodb.items_are_sized_once, (Item, "__init__"))
    assert puts() == before

    def sizes_of_an_item(attributes: int) -> int:
        sized[0] = 0
        Item(DynamoType({"S": "i-1"}), None,
             {f"a{k}": {"M": {"status": {"S": "PASS"}, "detail": {"S": "d"}}} for k in range(attributes)})
        return sized[0]

    # Sized once: the walk grows with the item (moto's grows with its square: 40 attributes, 20 times 20's).
    assert sizes_of_an_item(40) <= 2 * sizes_of_an_item(20) + 2


def test_attribute_values_are_parsed_directly_as_moto_parses_them(monkeypatch):
    from moto.core import parse

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    before = _item_answers([])
    walk = parse.JSONParser._parse_structure
    walked: list[str] = []

    def counting(self, shape, value):
        if shape.name == "AttributeValue":
            walked.append(next(iter(value)) if isinstance(value, dict) and value else "?")
        return walk(self, shape, value)

    monkeypatch.setattr(parse.JSONParser, "_parse_structure", counting)
    dynamodb.attribute_values_parse_directly()  # over the counting walk: it counts what still takes the walk
    assert _item_answers([]) == before
    # A transaction's items parse the same.
    assert json.loads(_transactions()) == [[200, ["None", "None", "ConditionalCheckFailed"]], [["i-1", 1], ["i-2", 1]]]
    # Only the values holding binary (which moto base64-decodes) still take the walk, and the members of those.
    assert walked and set(walked) <= {"B", "BS", "M", "S"} and walked.count("S") < 10, walked


def _described(instances: int) -> list[str]:
    """`instances` tagged instances launched and described (by filter, by id, with a missing id), their tags and
    a DynamoDB table described: the raw response bodies, with what differs run to run (ids, addresses, times,
    request ids, tokens) blanked."""
    import re

    raw: list[bytes] = []
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        for client in (ec2, dynamodb):
            client.meta.events.register("after-call.*.*", lambda http_response, **_: raw.append(http_response.content))
        ids = [i["InstanceId"] for i in ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=instances, MaxCount=instances,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}])["Instances"]]
        ec2.stop_instances(InstanceIds=ids[:1])
        ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids[1:] + ["i-0000000000000dead"]}])
        ec2.describe_instances(InstanceIds=ids[:2])
        ec2.describe_tags()
        dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                              KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}])
        dynamodb.describe_table(TableName="t")
    varying = (rb"(i|r|eni-attach|eni|vol|sg|subnet|vpc|ami)-[0-9a-f]{8,17}|\d+\.\d+\.\d+\.\d+"
               rb"|[0-9T:\-.]{19,}\+?[0-9:Z]*|<requestId>[^<]*</requestId>|02:00:00(:[0-9a-f]{2}){3}|(ip|ec2)-[0-9-]+"
               rb"|\d\d:\d\d:\d\d UTC|[0-9a-f]{8}-[0-9a-f-]{27}|\d{10}\.\d+")
    return [re.sub(varying, b"~", body).decode() for body in raw]


def test_a_picker_remembers_its_keys_and_picks_as_moto(monkeypatch):
    from moto.core import serialize

    from devstack.standins.aws import serialization

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    made = [0]
    init = serialize.AttributeAliasProvider.__init__

    def counting(self, context):
        made[0] += 1
        init(self, context)

    monkeypatch.setattr(serialize.AttributeAliasProvider, "__init__", counting)

    def aliases_made(instances: int) -> int:
        made[0] = 0
        _described(instances)
        return made[0]

    before = _described(3)
    assert any("<instancesSet>" in body for body in before) and any("TableDescription" in body for body in before)
    monkeypatch.setattr(serialize.AttributePicker, "__call__", serialize.AttributePicker.__call__)
    serialization.pickers_remember_their_keys()
    assert _described(3) == before  # the same bodies
    # Remembered for the response: describing 12 instances works out no more names than describing 3 (moto: ~4×).
    assert aliases_made(12) <= aliases_made(3) * 1.2


def _projections() -> str:
    """Queries with projections of top-level names (strings, numbers canonical or not, maps, lists, booleans,
    nulls, sets, binary, absent names, a name twice) and of nested paths and list indexes, and a Scan's."""
    with mock_aws():
        client = _table_t()
        base = {"h": {"S": "i-1"}, "s": {"S": "x"}, "n": {"N": "12.5"}, "t": {"BOOL": True}, "z": {"NULL": True},
                "m": {"M": {"c": {"M": {"status": {"S": "PASS"}, "n": {"N": "3"}}}, "l": {"L": [{"S": "a"}]}}},
                "l": {"L": [{"N": "1"}, {"M": {"k": {"S": "v"}}}]}}
        odd = {"n": {"N": "12.50"}, "ss": {"SS": ["b", "a", "c"]}, "b": {"B": b"\x00x"},
               "m": {"M": {"c": {"M": {"n": {"N": "1E+2"}}}}}}
        for r, extra in (("a", {}), ("b", odd), ("c", {"s": {"S": ""}}), ("d", {"l": {"L": [{"NS": ["2", "1"]}]}})):
            client.put_item(TableName="t", Item={**base, "r": {"S": r}, **extra})
        answers = []
        for projection in ("s, n, m, l, t, z", "l, s, absent", "#n, m", "ss", "b, s", "m.c.#n, l[1]", "r"):
            answers.append(client.query(TableName="t", KeyConditionExpression="h = :h", ProjectionExpression=projection,
                                        ExpressionAttributeValues={":h": {"S": "i-1"}}, ScanIndexForward=False,
                                        **({"ExpressionAttributeNames": {"#n": "n"}} if "#n" in projection else {}))
                           ["Items"])
        answers.append(client.scan(TableName="t", ProjectionExpression="z, s, m")["Items"])
        return json.dumps(answers, default=repr)  # in the order DynamoDB's JSON gives them


def test_a_projection_of_names_picks_them_as_moto_does(monkeypatch):
    from moto.dynamodb.models.dynamo_type import Item

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    converted = _counted(monkeypatch, Item, "to_regular_json")
    before = _projections()
    assert '"ss": {"SS": [' in before and '"n": {"N": "12.50"}' in before
    converted[0] = 0
    _install(monkeypatch, dynamodb.projections_pick_their_attributes, (Item, "project"))
    assert _projections() == before
    # Only the items holding a set, binary or a number moto's round trip rewrites (and the nested paths) convert:
    # moto converts once per projected name and item (~80 times here).
    assert 0 < converted[0] <= 30, converted


def test_a_size_is_summed_without_copies_and_as_moto_sums_it(monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType

    from devstack.standins.aws import dynamodb

    values = [{"S": "x"}, {"S": ""}, {"S": "é∑"}, {"N": "12.50"}, {"N": "-1E+2"}, {"B": b"\x00\xff"}, {"B": "AAE="},
              {"BOOL": True}, {"BOOL": False}, {"NULL": True}, {"SS": ["a", "bé"]}, {"NS": ["1", "22.5"]},
              {"BS": [b"x", b"yz"]}, {"L": []}, {"M": {}},
              {"L": [{"S": "a"}, {"N": "1"}, {"M": {"k": {"L": [{"BOOL": True}, {"SS": ["q"]}]}}}]},
              {"M": {"checks": {"M": {f"c{k}": {"M": {"status": {"S": "PASS"}, "detail": {"S": "d" * k},
                                                      "n": {"N": str(k)}}} for k in range(16)}},
                     "tags": {"M": {"Name": {"S": "web"}}}, "l": {"L": [{"NULL": True}, {"B": b"b"}]}}}]
    before = [DynamoType(v).size() for v in values]
    made = [0]
    init = DynamoType.__init__

    def counting(self, type_as_dict):
        made[0] += 1
        init(self, type_as_dict)

    monkeypatch.setattr(DynamoType, "__init__", counting)
    _install(monkeypatch, dynamodb.sizes_without_copies, (DynamoType, "size"))
    typed = [DynamoType(v) for v in values]
    made[0] = 0
    assert [t.size() for t in typed] == before
    assert made[0] == 0  # moto re-wraps every map value at every level (hundreds here)


def _update_cancelled() -> str:
    """A transaction that updates one item in place (a set added to, a number replaced) and is then cancelled by
    another item's condition: what is stored after it, and what it answered."""
    from botocore.exceptions import ClientError

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}])
        for h in ("a", "b"):
            client.put_item(TableName="t", Item={"h": {"S": h}, "n": {"N": "1"}, "s": {"SS": ["x"]},
                                                 "m": {"M": {"k": {"L": [{"S": "v"}]}}}})
        try:
            client.transact_write_items(TransactItems=[
                {"Update": {"TableName": "t", "Key": {"h": {"S": "a"}}, "UpdateExpression": "SET n = :n, m.k[0] = :v ADD s :s",
                            "ExpressionAttributeValues": {":n": {"N": "2"}, ":v": {"S": "w"}, ":s": {"SS": ["y"]}}}},
                {"Put": {"TableName": "t", "Item": {"h": {"S": "b"}, "n": {"N": "3"}},
                         "ConditionExpression": "n = :old", "ExpressionAttributeValues": {":old": {"N": "7"}}}}])
            answer = "written"
        except ClientError as exc:
            answer = str([r.get("Code") for r in exc.response.get("CancellationReasons", [])])
        stored = client.scan(TableName="t")["Items"]
        return json.dumps([answer, sorted(stored, key=lambda i: i["h"]["S"])], sort_keys=True)


def test_a_cancelled_transaction_copies_only_what_it_updates_and_undoes_it_as_moto(monkeypatch):
    import copy

    from moto.dynamodb import models

    from devstack.standins.aws import dynamodb

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    before = _update_cancelled()
    assert json.loads(before)[0] == "['None', 'ConditionalCheckFailed']" and '"1"' in before
    monkeypatch.setattr(models, "copy", models.copy)  # undone after the test
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", models.DynamoDBBackend.transact_write_items)
    dynamodb.transactions_snapshot_their_items()
    assert _update_cancelled() == before
    copied: list[str] = []
    deepcopy, transact, inside = copy.deepcopy, models.DynamoDBBackend.transact_write_items, [False]

    def counting(value, memo=None):
        if inside[0] and memo is None:  # what the transaction copies (not the reads after it)
            copied.append(type(value).__name__)
        return deepcopy(value, memo)

    def transacting(self, transact_items):
        inside[0] = True
        try:
            return transact(self, transact_items)
        finally:
            inside[0] = False

    monkeypatch.setattr(copy, "deepcopy", counting)
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", transacting)
    assert _transactions() == json.dumps([[200, ["None", "None", "ConditionalCheckFailed"]], [["i-1", 1], ["i-2", 1]]])
    assert copied == [], copied  # Puts only: nothing of the items copied
    copied.clear()
    assert _update_cancelled() == before
    assert "Item" in copied, copied  # the updated item is copied, to be put back


def _described_by_id_filters() -> str:
    """Instances in several reservations (one stopped, some tagged) described by `instance-id` filters alone and
    with state and tag filters, an unknown id among them, as discovery asks: which instances each answer holds,
    in which reservations, in order."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        ids: list[str] = []
        for count, env in ((3, "prod"), (1, "dev"), (4, "prod"), (2, "")):
            tags = [{"ResourceType": "instance", "Tags": [{"Key": "Environment", "Value": env}]}] if env else []
            ids += [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count,
                                                               TagSpecifications=tags)["Instances"]]
        ec2.stop_instances(InstanceIds=[ids[4]])
        asked = [ids[1], ids[4], ids[5], ids[9], "i-0000000000000dead"]
        answers = []
        for filters in ([{"Name": "instance-id", "Values": asked}],
                        [{"Name": "instance-state-name", "Values": ["running"]}, {"Name": "instance-id", "Values": asked}],
                        [{"Name": "instance-id", "Values": asked}, {"Name": "tag:Environment", "Values": ["prod"]}],
                        [{"Name": "instance-id", "Values": ["i-0000000000000dead"]}],
                        [{"Name": "instance-id", "Values": ids}]):
            answer = ec2.describe_instances(Filters=filters)["Reservations"]
            answers.append([[ids.index(i["InstanceId"]) for i in r["Instances"]] for r in answer])
        return json.dumps(answers)


def test_an_id_filter_reads_only_its_instances_and_answers_as_moto(monkeypatch):
    from moto.ec2 import utils
    from moto.ec2.models import instances

    from devstack.standins.aws import ec2

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    tested: list[str] = []
    passes = utils.passes_filter_dict

    def counting(instance, filter_dict):
        if "instance-id" in filter_dict:  # a describe's, not the launches' own lookups
            tested.append(instance.id)
        return passes(instance, filter_dict)

    monkeypatch.setattr(utils, "passes_filter_dict", counting)
    before = _described_by_id_filters()
    assert json.loads(before)[0] == [[1], [4, 5], [9]]
    _install(monkeypatch, ec2.id_filters_read_their_instances, (instances.InstanceBackend, "all_reservations"))
    tested.clear()
    assert _described_by_id_filters() == before
    # The four asked ids that exist in three calls, none for the unknown id, all ten in the last one (moto tests
    # every instance each call: 50).
    assert len(tested) == 3 * 4 + 10, len(tested)


def test_the_bench_measures_the_patches_the_server_applies():
    import inspect

    from devstack.bench import moto_costs
    from devstack.standins.aws import server

    applied = inspect.getsource(server.main)
    assert [name for name in moto_costs.PATCHES if f"    {name}()\n" not in applied] == []

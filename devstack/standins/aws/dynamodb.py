"""DynamoDB fleet-scale fixes, same responses (tests/devstack/test_moto_patches.py): moto rendered each nested
attribute by deep-copying its whole subtree at every level (an evidence item's `checks` map is three deep);
here each level is copied once. And a Query deep-copied each full item of a page and serialized it whole to
pick the projected attributes; here it copies one level and serializes only what the projection names.
Each item's attribute values are parsed, sized and written into responses directly instead of through moto's
per-member walks (issue 29; `python -m devstack.bench.moto_costs` measures each call shape).
"""
from __future__ import annotations


def query_copies_what_it_returns() -> None:
    """DynamoDB Query: moto deep-copies every full item of a page, then serializes each whole item to pick the
    projected attributes — at 10,000 hosts the day's one projected read was 28 s of the stand-in's CPU. Here a
    page's items are copied one level (the attribute values are only read from there on: projected, filtered,
    serialized), and a projection serializes only the attributes it names. Same responses."""
    import copy
    import types

    from moto.dynamodb.models import table
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    def one_level(item: Item) -> Item:
        result = Item.__new__(Item)
        result.hash_key, result.range_key = item.hash_key, item.range_key
        attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(attrs)
        dict.update(attrs, item.attrs)
        result.attrs = attrs
        return result

    def deepcopy(value, memo=None):
        if isinstance(value, list) and value and all(type(v) is Item for v in value):  # Table.query's page
            return [one_level(v) for v in value]
        return copy.deepcopy(value, memo)

    table.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    project = Item.project

    def project_named(self, projection_expressions):
        named = {str(path[0]).split("[", 1)[0] for path in projection_expressions if path}
        narrowed = one_level(self)
        for key in [k for k in narrowed.attrs if k not in named]:
            dict.__delitem__(narrowed.attrs, key)
        return project(narrowed, projection_expressions)

    Item.project = project_named


def copy_each_level_once() -> None:
    import base64
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    def to_regular_json(self):
        def plain(v):
            return v.to_regular_json() if isinstance(v, DynamoType) else copy.deepcopy(v)

        value = self.value
        if isinstance(value, dict):
            value = {k: plain(v) for k, v in value.items()}
        elif isinstance(value, list):
            value = [plain(v) for v in value]
        if self.is_binary() and isinstance(value, str):
            value = base64.b64decode(value)
        return {self.type: value}

    DynamoType.to_regular_json = to_regular_json


def transactions_snapshot_their_items() -> None:
    """TransactWriteItems: moto deep-copies every table a transaction names, once per action, to roll back on a
    cancellation — at 10,000 hosts a 50-action flush copied the 10,000-item table 50 times (the stand-in grew
    to ~10 GB and the run crawled). Here the transaction keeps a copy of only the items it targets and puts
    them back when it is cancelled: the same all-or-nothing answers (tests/devstack/test_moto_patches.py). Only
    an Update's target is copied (the others are replaced, not changed, so the item itself is kept)."""
    import copy
    import types

    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)  # the rollback is below

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    transact = models.DynamoDBBackend.transact_write_items

    def targets(backend, transact_items) -> list[tuple[str, dict]]:
        found = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op.get("Key")
            if key:
                found.append((table.name, key, op_type == "Update"))
        return found

    def transact_write_items(self, transact_items):
        saved = []
        for table_name, key, updated in targets(self, transact_items):
            try:
                current = self.get_item(table_name, key)
            except Exception:  # noqa: BLE001 - a malformed key: moto's own call below answers it
                current = None
            # An Update changes the stored item in place: it is copied. A Put or Delete replaces or removes it
            # (moto refuses two actions on one item), so the item itself is what to put back.
            saved.append((table_name, key, copy.deepcopy(current) if updated and current else current))
        try:
            return transact(self, transact_items)
        except Exception:
            for table_name, key, item in reversed(saved):  # back to what each target was before
                if item is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, item.to_json()["Attributes"])
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def table_queries_read_one_partition() -> None:
    """DynamoDB Query on a table (not an index) by its partition key: moto walks and sorts every item of the table
    (`all_items`) and keeps the partition's, so each per-host Query cost O(table). At 10,000 hosts with a month of
    history the security events' per-host reads (include/notify/event_store.py) took ~0.1 s each and
    `send_alerts` over 20 minutes. Here such a Query sees only its partition's items, in the same order. Index
    queries, and any query another thread runs meanwhile, read the whole table as before. Same responses."""
    import inspect
    import threading

    from moto.dynamodb.models import table

    original_query, original_all = table.Table.query, table.Table.all_items
    signature = inspect.signature(original_query)
    only = threading.local()

    def all_items(self):
        scope = getattr(only, "scope", None)
        if scope is not None and scope[0] is self:
            return scope[1]
        return original_all(self)

    def query(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        hash_key, index_name = bound.arguments.get("hash_key"), bound.arguments.get("index_name")
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, *args, **kwargs)
        partition = self.items.get(hash_key) or {}  # .get: never create the key in moto's defaultdict
        only.scope = (self, sorted(partition.values(), key=lambda item: item.range_key))
        try:
            return original_query(self, *args, **kwargs)
        finally:
            only.scope = None

    table.Table.all_items, table.Table.query = all_items, query


def attribute_values_serialize_directly() -> None:
    """Every DynamoDB answer that carries items (Query, GetItem, BatchGetItem, Scan, ReturnValues): moto's response
    serializer walks each attribute value against the model's AttributeValue shape, asking its alias picker for
    each of the shape's ten members at every nesting level — at 10,000 hosts two thirds of a host's history
    Query (25 items of 16 checks each). An attribute value is already in the wire's form ({"S": "x"}, {"M": {…}}):
    here one with a single member of a string, number, boolean, null, string/number set, map or list type is
    written as the walk would write it, directly; anything else (binary, sets of binary, an unexpected shape)
    takes moto's walk. Same bodies, byte for byte (tests/devstack/test_moto_patches.py)."""
    from moto.core import serialize

    walk = serialize.BaseJSONSerializer._serialize_type_structure
    strings, lists = ("S", "N"), ("SS", "NS")

    def direct(value):
        """The value as the walk writes it, or None when only the walk may write it."""
        if type(value) is not dict or len(value) != 1:
            return None
        (kind, inner), = value.items()
        if kind in strings:
            return {kind: inner} if type(inner) is str else None
        if kind in ("BOOL", "NULL"):
            return {kind: inner} if type(inner) is bool else None
        if kind in lists:
            return {kind: list(inner)} if type(inner) is list and all(type(v) is str for v in inner) else None
        if kind == "M":
            if type(inner) is not dict:
                return None
            written = {}
            for key, member in inner.items():
                written[key] = direct(member)
                if written[key] is None:
                    return None
            return {"M": written}
        if kind == "L":
            if type(inner) is not list:
                return None
            written_list = [direct(member) for member in inner]
            return None if any(v is None for v in written_list) else {"L": written_list}
        return None

    def serialize_structure(self, serialized, value, shape, key):
        if (key and shape.name == "AttributeValue" and not self._value_picker.response_transformers
                and self.operation_model.service_model.service_name == "dynamodb"):
            written = direct(value)
            if written is not None:
                serialized[shape.serialization.get("name", key)] = written
                return
        walk(self, serialized, value, shape, key)

    serialize.BaseJSONSerializer._serialize_type_structure = serialize_structure


def items_are_sized_once() -> None:
    """Every item moto builds (each PutItem, each Put of a transaction, each item a request names): its attribute
    dict re-sums the size of every attribute already set before it sets the next one, to refuse an item over
    DynamoDB's limit — O(attributes²) deep walks of each item; an evidence item (~40 attributes, its `checks`
    map) was sized ~40 times over, most of a TransactWriteItems' CPU. The sums moto checks only grow as the
    attributes are set, so the item is over the limit at some step exactly when it is over it at the last: here
    the whole item is sized once and refused with the same ItemSizeTooLarge, or set without re-summing. Later
    sets on an item (update expressions) are checked by moto as before."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, ItemSizeTooLarge, LimitedSizeDict, bytesize

    def init(self, hash_key, range_key, attrs):
        self.hash_key = hash_key
        self.range_key = range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        # moto's per-set check: (every key and value already set) + the new key and value > 405000
        if sum(bytesize(str(key)) + value.size() for key, value in values.items()) > 405000:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(self.attrs)
        dict.update(self.attrs, values)

    Item.__init__ = init


def attribute_values_parse_directly() -> None:
    """Every DynamoDB request that carries items (PutItem, each Put of a TransactWriteItems, keys, expression
    values): moto's request parser walks each attribute value against the model's AttributeValue shape, all ten
    of its members at every nesting level — after the items' sizing, most of a 100-action TransactWriteItems.
    A value of a single string, number, boolean, null, string/number set, map or list member parses to itself
    (the walk copies it into the parser's own dicts and lists): here it is copied so, directly; anything else
    (binary, which the walk decodes; an unexpected shape) takes moto's walk. Same parsed requests."""
    from moto.core import parse

    walk = parse.JSONParser._parse_structure
    strings, lists = ("S", "N"), ("SS", "NS")

    def direct(parser, value):
        """The value as the walk parses it, or None when only the walk may parse it."""
        if type(value) is not dict or len(value) != 1:
            return None
        (kind, inner), = value.items()
        if kind in strings:
            ok = type(inner) is str
        elif kind in ("BOOL", "NULL"):
            ok = type(inner) is bool
        elif kind in lists:
            ok = type(inner) is list and all(type(v) is str for v in inner)
            inner = list(inner)
        elif kind == "M" and type(inner) is dict:
            parsed_map = parser.MAP_TYPE()
            for key, member in inner.items():
                parsed_map[key] = direct(parser, member)
                if parsed_map[key] is None:
                    return None
            ok, inner = True, parsed_map
        elif kind == "L" and type(inner) is list:
            inner = [direct(parser, member) for member in inner]
            ok = not any(v is None for v in inner)
        else:
            return None
        if not ok:
            return None
        parsed = parser.MAP_TYPE()
        parsed[kind] = inner
        return parsed

    def parse_structure(self, shape, value):
        if shape.name == "AttributeValue" and self.operation_model.service_model.service_name == "dynamodb":
            parsed = direct(self, value)
            if parsed is not None:
                return parsed
        return walk(self, shape, value)

    parse.JSONParser._parse_structure = parse_structure


def projections_pick_their_attributes() -> None:
    """A Query's (or Scan's) ProjectionExpression: moto's Item.project converts the whole item to plain Python
    once per projected name and merges the picked parts, then serializes the result back into a new item — for
    the security events' history read (11 names, 25 items with their `checks` maps) 275 conversions a Query.
    Where every path is one top-level name and each picked value comes back from that round trip unchanged
    (strings, booleans, nulls, numbers already in their canonical form, maps and lists of those), here the item
    keeps those attributes as they are, in the order the projection names them (the order moto's merge gives);
    anything else (nested paths, list indexes, sets, binary, a number the round trip rewrites) is projected by
    moto. Same responses."""
    from boto3.dynamodb.types import DYNAMODB_CONTEXT
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    project = Item.project

    def unchanged_by_round_trip(value) -> bool:
        kind, inner = value.type, value.value
        if kind == "S":
            return type(inner) is str
        if kind == "BOOL":
            return type(inner) is bool
        if kind == "NULL":
            return inner is True
        if kind == "N":
            try:
                return type(inner) is str and str(DYNAMODB_CONTEXT.create_decimal(inner)) == inner
            except Exception:  # noqa: BLE001 - a number moto's own round trip handles (or refuses)
                return False
        if kind == "M":
            return type(inner) is dict and all(unchanged_by_round_trip(v) for v in inner.values())
        if kind == "L":
            return type(inner) is list and all(unchanged_by_round_trip(v) for v in inner)
        return False

    def project_names(self, projection_expressions):
        names = []
        for path in projection_expressions:
            if len(path) != 1 or type(path[0]) is not str or "[" in path[0]:
                return project(self, projection_expressions)
            if path[0] not in names:
                names.append(path[0])
        picked = {name: self.attrs[name] for name in names if name in self.attrs}
        if not all(unchanged_by_round_trip(value) for value in picked.values()):
            return project(self, projection_expressions)
        result = Item.__new__(Item)
        result.hash_key, result.range_key = self.hash_key, self.range_key
        result.attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(result.attrs)
        dict.update(result.attrs, picked)
        return result

    Item.project = project_names


def sizes_without_copies() -> None:
    """An attribute's size (each item's on every write, every item a Query or Scan pages through against the
    1 MB page limit): moto re-wraps each value of a map in a new DynamoType to size it, and that re-wraps its
    own maps' and lists' values, at every level — allocation that grows with an item's depth times its size
    (an evidence item's `checks` map is three deep). Here the same sum is taken over the values as they are
    (moto's DynamoType wraps every member of its lists and maps), without copies; a list holding anything else
    is sized by moto. Same sizes."""
    from moto.dynamodb.models.dynamo_type import DynamoType, bytesize

    size = DynamoType.size

    def sized(value) -> int:
        kind, inner = value.type, value.value
        if kind == "N":
            return len(str(inner))
        if kind in ("SS", "NS", "BS"):  # moto: each member sized as a DynamoType of the member's type
            sub = kind[0]
            return sum(len(str(v)) if sub == "N" else 1 if isinstance(v, bool) else bytesize(v) for v in inner)
        if kind == "L":
            if not all(type(v) is DynamoType for v in inner):
                return size(value)
            return sum(sized(v) for v in inner)
        if kind == "M":
            return sum(bytesize(k) + (sized(v) if type(v) is DynamoType else size(DynamoType(v)))
                       for k, v in inner.items())
        if isinstance(inner, bool):
            return 1
        return bytesize(inner)

    DynamoType.size = sized

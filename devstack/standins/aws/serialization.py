"""moto's response serializer, same responses at less cost (tests/devstack/test_moto_patches.py)."""
from __future__ import annotations


def pickers_remember_their_keys() -> None:
    """Every response moto serializes from its model objects (EC2's DescribeInstances above all: 200 instances of
    ~60 members each, ~2 ms an instance): for each member of each object, moto's attribute picker builds six
    alias providers to list the names the member may have on the object, then tries each response transformer's
    path against the member's path. Both depend only on the object's class, the member, its shape and the
    shape's parent, and on the member's path: here one response's picker works each out once and remembers it
    for the rest of that response. Objects whose attributes are dynamic (`__getattr__`, an instance's own
    `Meta`) and pickers configured otherwise are picked as moto does. Same values picked, same responses."""
    from moto.core import serialize
    from moto.core.utils import MISSING, get_value

    original = serialize.AttributePicker.__call__
    unset = object()

    def picked(self, context):
        obj, key, shape = context.obj, context.key, context.shape
        cls = obj.__class__
        if (type(self) not in (serialize.AttributePicker, serialize.XFormedAttributePicker)
                or self.alias_providers is not serialize.DEFAULT_ALIAS_PROVIDERS
                or hasattr(cls, "__getattr__") or "Meta" in getattr(obj, "__dict__", ())):
            return original(self, context)
        memo = self.__dict__.get("_remembered")
        if memo is None:
            memo = self.__dict__["_remembered"] = ({}, {})
        keys_memo, paths_memo = memo
        parent = getattr(shape, "parent", None)
        entry = keys_memo.get((cls, key, id(shape), id(parent)))
        if entry is None:  # the shape and parent are held by the entry: their ids stay theirs for this response
            entry = keys_memo[(cls, key, id(shape), id(parent))] = (tuple(self.get_possible_keys(context)),
                                                                    shape, parent)
        for possible_key in entry[0]:
            value = get_value(obj, possible_key, MISSING)
            if value is not MISSING:
                break
        else:
            value = None
        key_path = f"{context.key_path}.{key}"
        transform_path = paths_memo.get(key_path, unset)
        if transform_path is unset:
            transform_path = paths_memo[key_path] = next(
                (path for path in self.response_transformers if key_path.endswith(path)), None)
        if transform_path is not None:
            value = self.response_transformers[transform_path](value)
        return value

    serialize.AttributePicker.__call__ = picked

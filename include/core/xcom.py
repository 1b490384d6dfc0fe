"""What the typed records share when they read a dict back: XCom carries plain JSON dicts (so the Airflow UI
shows them; each record's `from_xcom`), DynamoDB items (include/core/record.py `from_item`). Pure."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def known_fields(cls: type, value: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of an XCom dict or a stored item that are fields of the dataclass `cls`: a missing optional key
    takes the field's default, a key the record lacks (written by an older or newer version of the code, or a
    table key) is ignored."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in value.items() if k in names}

"""The base of every record stored in DynamoDB: one `to_item()` / `from_item()` pair over its dataclass fields.

`from_item` accepts projected and older items: a missing attribute is its default, DynamoDB's Decimals become
ints and floats (`plain`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from include.core.xcom import known_fields


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


class Record:
    """to_item / from_item over the dataclass fields (no field may be named like a DynamoDB key it is not)."""

    def to_item(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_item(cls, item: Mapping[str, Any]):
        return cls(**{k: plain(v) for k, v in known_fields(cls, item).items()})

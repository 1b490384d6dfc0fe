"""What the typed records that cross Airflow task boundaries share: XCom carries plain JSON dicts (so the
Airflow UI shows them), each record reads one back with `from_xcom` (pure)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def known_fields(cls: type, value: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of an XCom dict that are fields of the dataclass `cls`: a missing optional key takes the field's
    default, a key the record lacks (written by an older or newer version of the code) is ignored."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in value.items() if k in names}

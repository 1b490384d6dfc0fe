"""Fixtures shared by the unit tests (tests/conftest.py's apply here too)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dag_bag(airflow_db):
    """The project's dags/ folder as Airflow parses it, with nothing failing to import."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag

"""Fixtures shared by the integration tests (tests/conftest.py's apply here too)."""
from __future__ import annotations

import pytest

from devstack.stack import local_aws


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A real moto server process for the test module (its own log under the module's temp dir): the endpoint.

    One per module, so no module reads what another wrote; stopped when the module is done."""
    with local_aws.moto(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint

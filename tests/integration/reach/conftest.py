"""The reach tests' shared stand (tests/integration/reach/stand.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def stand(request, tmp_path_factory):
    """The test module's stand, `make_stand(root)` in that module: started once for the module, stopped after it."""
    make_stand = getattr(request.module, "make_stand", None)
    assert make_stand is not None, f"{request.module.__name__} uses the stand fixture but defines no make_stand(root)"
    with make_stand(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))) as s:
        yield s

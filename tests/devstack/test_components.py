"""The component markers (tests/_components.py, used by tests/conftest.py): a test that needs something .ci/run
installs skips on a developer's machine that lacks it, but is an error under CI=true; a kernel capability the
machine may lack is always a skip that says what the probe answered."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import _components
from tests._components import Requirement, gate


def item(*markers: str):
    marks = [getattr(pytest.mark, name).mark for name in markers]
    return SimpleNamespace(iter_markers=lambda: iter(marks))


MISSING = Requirement("sshd", "apt-get install openssh-server sudo", lambda: (False, "/usr/sbin/sshd missing"))
PRESENT = Requirement("chromium", "apt-get install chromium", lambda: (True, "/usr/bin/chromium"))
NO_AUDIT = Requirement("the kernel audit", "", lambda: (False, "`auditctl -s` exited 1: Operation not permitted"),
                       capability=True)
TABLE = {"needs_sshd": (MISSING,), "needs_chromium": (PRESENT,), "needs_kernel_audit": (NO_AUDIT,)}


def outcome(test_item, environ) -> tuple[str, str]:
    """("error" | "skip" | "run", reason): caught here, so a wrong outcome fails this test instead of skipping it."""
    try:
        gate(test_item, environ, TABLE)
    except pytest.fail.Exception as exc:
        return "error", str(exc)
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    return "run", ""


def test_a_missing_component_is_an_error_under_ci_naming_it_and_how_ci_run_installs_it():
    kind, reason = outcome(item("needs_sshd"), {"CI": "true"})
    assert kind == "error" and "sshd" in reason and "/usr/sbin/sshd missing" in reason, reason
    assert ".ci/run" in reason and "apt-get install openssh-server sudo" in reason


@pytest.mark.parametrize("environ", [{}, {"CI": "false"}, {"CI": ""}])
def test_a_missing_component_is_a_skip_outside_ci(environ):
    kind, reason = outcome(item("needs_sshd"), environ)
    assert kind == "skip" and "/usr/sbin/sshd missing" in reason, reason


@pytest.mark.parametrize("environ", [{}, {"CI": "true"}])
def test_a_missing_kernel_capability_is_a_skip_naming_the_probe_s_answer_even_under_ci(environ):
    kind, reason = outcome(item("needs_kernel_audit"), environ)
    assert kind == "skip" and "`auditctl -s` exited 1: Operation not permitted" in reason, reason


def test_present_components_and_unrelated_markers_let_the_test_run():
    assert outcome(item("needs_chromium", "parametrize", "timeout"), {"CI": "true"}) == ("run", "")


def test_every_component_marker_is_registered(pytestconfig):
    registered = {line.split(":", 1)[0].strip() for line in pytestconfig.getini("markers")}
    assert set(_components.MARKERS) <= registered
    assert {"needs_sshd", "needs_chromium", "needs_postgres_redis", "needs_kernel_audit"} <= set(_components.MARKERS)

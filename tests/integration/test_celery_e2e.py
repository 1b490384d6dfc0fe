"""A real distributed run: CeleryExecutor on PostgreSQL + Redis, two workers, one SIGKILLed mid-batch."""
import pytest

from devstack import celery_e2e
from devstack.stack import PROJECT

pytestmark = pytest.mark.skipif(not celery_e2e.available(),
                                reason="needs root, PostgreSQL and Redis (apt-get install postgresql redis-server)")


@pytest.mark.timeout(900)
def test_celery_run_survives_a_killed_worker():
    result = celery_e2e.run(PROJECT / ".local" / "celery-test")
    assert celery_e2e.problems(result) == [], result

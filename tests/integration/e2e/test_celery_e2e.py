"""A real distributed run: CeleryExecutor on PostgreSQL + Redis, two workers, one SIGKILLed mid-batch."""
import pytest

from devstack.procs import PROJECT
from devstack.run import celery_e2e

pytestmark = pytest.mark.needs_postgres_redis


@pytest.mark.timeout(900)
def test_celery_run_survives_a_killed_worker():
    result = celery_e2e.run(PROJECT / ".local" / "celery-test")
    assert celery_e2e.problems(result) == [], result

"""Which worker queue verifies which hosts: workers placed inside each VPC (pure; no Airflow or AWS imports).

Private instances are reachable only from inside their VPC, so a team runs a worker there (an Edge worker
with outbound HTTPS only, or a Celery worker) serving one queue, and each verify batch must go to the queue of
its hosts' VPC. Three settings decide it:

- **The deployment's queues** (`EC2_AUDIT_QUEUES="vpc-a,vpc-b"`), read when the DAG is parsed. A mapped
  task's `queue` is a partial-only argument in Airflow 3: every mapped instance of a task runs on the queue
  the task was parsed with, so the DAG builds one mapped verify task per queue (`verify_batch` for the
  default queue, `verify_batch__<queue>` for each listed one). It is an environment variable, not an Airflow
  Variable: the DAG is parsed by the dag-processor AND by every worker that runs one of its tasks, and the
  shape must be the same everywhere, with no database or API call at parse time — set it once for the whole
  deployment (docker-compose.yaml: x-airflow-common), as Airflow's own config must be set homogeneously.
  Unset or empty: the DAG is exactly what it was without queues.
- **Which executor runs those verify tasks** (`EC2_AUDIT_QUEUE_EXECUTOR`, optional, also parse time). Unset:
  the deployment's default executor, which then routes by queue (the EdgeExecutor alone, with an Edge worker
  on `default` too; or Celery with a Celery worker per VPC). Set (e.g. `EdgeExecutor` with
  `AIRFLOW__CORE__EXECUTOR=CeleryExecutor,airflow.providers.edge3.executors.EdgeExecutor`): the central
  tasks stay on the default executor and only the per-VPC verify tasks go to Edge workers.
- **The run's `queue_map` param**: `{"<vpc-id>" | "<account id>" | "<account id>/<vpc-id>": "<queue>"}`.
  The most specific key wins (`account/vpc`, then `vpc`, then `account`); a host no key names runs on the
  default queue. `default` as a value names the default queue explicitly. A value that is not a queue of the
  deployment is refused by the param's schema — in the trigger form, and by the run's first task before any
  host is contacted, naming the field.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

ENV = "EC2_AUDIT_QUEUES"
EXECUTOR_ENV = "EC2_AUDIT_QUEUE_EXECUTOR"
DEFAULT = "default"  # queue_map's name for the default queue: the plain `verify_batch` task
VERIFY_TASK = "verify_batch"
SELECT_TASK = "batches"
# A queue name is also part of a task id (verify_batch__<queue>): Airflow's task-id characters, no separator.
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ACCOUNT, _VPC = r"[0-9]{12}", r"vpc-[0-9a-f]{8,17}"
KEY_PATTERN = f"^({_ACCOUNT}|{_VPC}|{_ACCOUNT}/{_VPC})$"


def parse_queues(raw: str) -> tuple[str, ...]:
    """The queues listed in EC2_AUDIT_QUEUES (comma-separated), in order, without repeats; ValueError naming
    the variable for a name that cannot be a queue and a task id, or for the default queue itself."""
    names = list(dict.fromkeys(q.strip() for q in (raw or "").split(",") if q.strip()))
    bad = [q for q in names if not QUEUE_NAME.match(q)]
    if bad:
        raise ValueError(f"{ENV}: {', '.join(map(repr, bad))} is not a queue name (letters, digits, '_', '.', '-'; "
                         "at most 63, starting with a letter or digit)")
    if DEFAULT in names:
        raise ValueError(f"{ENV}: {DEFAULT!r} is the default queue, which verify_batch always uses; list only the "
                         "queues of the workers placed inside VPCs")
    return tuple(names)


def deployment_queues(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The deployment's extra queues (parse time); () when EC2_AUDIT_QUEUES is unset or empty."""
    return parse_queues((os.environ if env is None else env).get(ENV, ""))


def queue_executor(env: Mapping[str, str] | None = None) -> str | None:
    """The executor of the per-queue verify tasks (an alias, class name or import path Airflow's
    `[core] executor` lists); None = the default executor."""
    return (os.environ if env is None else env).get(EXECUTOR_ENV, "").strip() or None


def verify_overrides(queue: str, executor: str | None = None) -> dict[str, str]:
    """What the verify task of a non-default queue overrides: its task id, queue and perhaps its executor."""
    return {"task_id": verify_task_id(queue), "queue": queue, **({"executor": executor} if executor else {})}


def allowed_queues(queues: Iterable[str]) -> list[str]:
    """What a queue_map value may be: the default queue's name and each deployment queue."""
    return [DEFAULT, *queues]


def param_schema(queues: Iterable[str] | None = None) -> dict[str, Any]:
    """The `queue_map` param's entry in include/settings/schema.py (JSON schema, default, description). The values
    allowed are the deployment's queues, so the trigger form and the run's first task refuse any other."""
    if queues is None:
        try:
            queues = deployment_queues()
        except ValueError:  # the DAG itself fails to parse, naming the variable; the schema stays usable
            queues = ()
    allowed = allowed_queues(queues)
    where = f"{ENV}={','.join(allowed[1:])}" if len(allowed) > 1 else f"{ENV} is empty: only {DEFAULT!r}"
    return {
        "type": "object",
        "propertyNames": {"pattern": KEY_PATTERN,
                          "x-error": "is not a VPC id (vpc-…), an account id (12 digits) or <account id>/<vpc-id>"},
        "additionalProperties": {"type": "string", "enum": allowed,
                                 "x-error": f"is not a queue of this deployment ({where})"},
        "default": {},
        "description": 'Which worker queue verifies which hosts: {"vpc-…" | "<account id>" | "<account id>/vpc-…": '
                       '"<queue>"}, the most specific key wins; a queue is one of the deployment\'s '
                       f'{ENV} (a worker inside that VPC serves it). Unmapped hosts: the default queue',
    }


def queue_for(queue_map: Mapping[str, str], account_id: str, vpc_id: str) -> str:
    """The queue of one host: `account/vpc`, then `vpc`, then `account`, else the default queue."""
    for key in (f"{account_id}/{vpc_id}" if account_id and vpc_id else "", vpc_id, account_id):
        if key and key in queue_map:
            return queue_map[key]
    return DEFAULT


def assign(queue_map: Mapping[str, str], placement: Mapping[str, tuple[str, str]],
           instance_ids: Iterable[str]) -> dict[str, str]:
    """instance id → queue. `placement` is instance id → (owner account id, VpcId); an instance it lacks (gone
    since discovery) goes to the default queue, where its batch notices it no longer runs."""
    return {i: queue_for(queue_map, *placement.get(i, ("", ""))) for i in instance_ids}


class Queued(Protocol):
    """A planned batch as this module reads it (include/fleet/batching.py Batch, which sits above settings)."""

    queue: str  # "" = planned without queues: the default queue's


Q = TypeVar("Q", bound=Queued)


def unknown_queues(batches: Iterable[Queued], queues: Iterable[str]) -> list[str]:
    """Queues batches were planned for that no verify task serves (their hosts would never be checked)."""
    allowed = set(allowed_queues(queues))
    return sorted({b.queue or DEFAULT for b in batches} - allowed)


def select(batches: Iterable[Q], queue: str) -> list[Q]:
    """The planned batches one queue's verify task maps over."""
    return [b for b in batches if (b.queue or DEFAULT) == queue]


def verify_task_id(queue: str) -> str:
    return VERIFY_TASK if queue == DEFAULT else f"{VERIFY_TASK}__{queue}"


def select_task_id(queue: str) -> str:
    return f"{SELECT_TASK}__{queue}"

"""docker-compose.yaml checked statically (no Docker engine here): services, healthchecks, mounts, profiles.

Where the `docker compose` plugin exists, `docker compose config` is run as well.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CORE = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
        "airflow-triggerer", "airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_core_services_and_celery(compose):
    services = compose["services"]
    assert CORE <= set(services)
    env = services["airflow-scheduler"]["environment"]
    # Celery is the default executor (listed first): every task without executor= runs on it.
    assert env["AIRFLOW__CORE__EXECUTOR"].split(",")[0] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert services["airflow-worker"]["command"] == "celery worker"


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name != "airflow-init":
            assert "healthcheck" in service and service["healthcheck"]["test"], name


def test_project_is_mounted_and_image_is_built_from_the_official_one(compose):
    worker = compose["services"]["airflow-worker"]
    mounts = {v.split(":")[1] for v in worker["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/include", "/opt/airflow/plugins"} <= mounts
    assert worker["build"]["context"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile and "-c /opt/airflow/deps/constraints.txt" in dockerfile


def test_local_profile_adds_the_stand_ins_and_nothing_else_uses_it(compose):
    local = {n for n, s in compose["services"].items() if "local" in s.get("profiles", [])}
    assert local == {"local-moto", "local-fleet", "local-mail"}
    assert compose["services"]["local-fleet"]["network_mode"] == "service:airflow-worker"
    assert not any(s.get("profiles") for n, s in compose["services"].items() if n in CORE)


def test_edge_profile_adds_a_vpc_worker_that_needs_only_the_api_server(compose):
    """Profile `edge`: an Edge worker for one queue, as it runs inside a VPC with outbound HTTPS only. The central
    services load the EdgeExecutor beside Celery and route only the per-VPC verify tasks to it."""
    services = compose["services"]
    edge = {n for n, s in services.items() if "edge" in s.get("profiles", [])}
    assert edge == {"airflow-edge-worker"}
    worker = services["airflow-edge-worker"]
    command = worker["command"].split()
    assert command[:2] == ["edge", "worker"] and command[command.index("--queues") + 1]
    assert "--edge-hostname" in command
    assert set(worker["depends_on"]) == {"airflow-apiserver"}  # no postgres, no redis
    env = worker["environment"]
    assert not env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")  # it never uses a database
    assert env["CONNECTION_CHECK_MAX_COUNT"] == "0"
    assert "edge status" in " ".join(worker["healthcheck"]["test"])
    central = services["airflow-scheduler"]["environment"]
    assert "airflow.providers.edge3.executors.EdgeExecutor" in central["AIRFLOW__CORE__EXECUTOR"].split(",")
    assert central["EC2_AUDIT_QUEUE_EXECUTOR"] == "EdgeExecutor"
    assert central["AIRFLOW__EDGE__API_ENABLED"] == "true"
    assert central["AIRFLOW__EDGE__API_URL"] == "http://airflow-apiserver:8080/edge_worker/v1/rpcapi"
    # The queues are deployment config read at parse time: one value for every service (from .env), none by default.
    assert central["EC2_AUDIT_QUEUES"] == "${EC2_AUDIT_QUEUES:-}" == env["EC2_AUDIT_QUEUES"]
    assert "apache-airflow-providers-edge3==" in (ROOT / "requirements.txt").read_text()  # in the image


def test_no_secrets_committed():
    example = (ROOT / ".env.example").read_text()
    assert "PRIVATE KEY" not in example and "AIRFLOW__CORE__FERNET_KEY=\n" in example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    compose_text = (ROOT / "docker-compose.yaml").read_text()
    assert "PRIVATE KEY" not in compose_text and "aws_secret_access_key" not in compose_text.lower()


@pytest.mark.skipif(subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
                    if shutil.which("docker") else True, reason="docker compose plugin not installed")
def test_docker_compose_config_accepts_it():
    result = subprocess.run(["docker", "compose", "--env-file", ".env.example", "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_only_the_celery_workers_hold_the_remediation_connection_and_its_key(compose):
    """The api-server serves any connection it knows to any task (an Edge worker's too): the remediation one is
    in remediation.env and its key in secrets-remediation, both for airflow-worker alone."""
    def env_files(service):
        return [f["path"] if isinstance(f, dict) else f for f in service.get("env_file") or []]

    for name, service in compose["services"].items():
        holds = "remediation.env" in env_files(service) or any(
            "secrets-remediation" in v for v in service.get("volumes") or [])
        assert holds == (name == "airflow-worker"), name
    assert "AIRFLOW_CONN_EC2_AUDIT_REMEDIATE_SSH" not in (ROOT / ".env.example").read_text()
    assert "AIRFLOW_CONN_EC2_AUDIT_REMEDIATE_SSH" in (ROOT / "remediation.env.example").read_text()
    assert {"remediation.env", "/secrets-remediation/"} <= set((ROOT / ".gitignore").read_text().splitlines())
    worker = compose["services"]["airflow-worker"]
    common = compose["services"]["airflow-scheduler"]
    assert set(common["volumes"]) < set(worker["volumes"])  # everything the others mount, and the key

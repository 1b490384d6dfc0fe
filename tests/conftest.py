import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Tests never read a developer's real AWS credentials or config.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Airflow reads its home at first import: give the tests their own, never the developer's.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".local" / "test-airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("PYTHONPATH", str(ROOT))

import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata DB in the tests' own AIRFLOW_HOME (made once, reused across runs)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".migrated-3.3.2"
    if not marker.exists():
        home.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=dict(os.environ))
        marker.touch()
    return home


from tests._components import gate  # noqa: E402


def pytest_runtest_setup(item):
    """Component markers (tests/_components.py): skip when missing, an error under CI=true."""
    gate(item)

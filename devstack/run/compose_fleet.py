"""`docker compose --profile local`: seed moto with the demo fleet, then serve it (one container).

Runs in the worker's network namespace, so the fleet's 127.42.x.x addresses are the worker's loopback,
as on a laptop. State (the client key the `ec2_audit_ssh` connection uses) goes to /opt/airflow/local.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from devstack.standins.aws.seed import REGION, seed_fleet, seed_pins
from devstack.standins.hosts.demo_fleet import demo_fleet
from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.fleet import main as serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--state", default="/opt/airflow/local")
    args = parser.parse_args()
    state = Path(args.state)
    key = state / "keys" / "id_ed25519"
    if not key.exists():
        generate_client_key(key)
    fleet = demo_fleet()
    seed_fleet(args.endpoint, fleet, REGION)
    seed_pins(args.endpoint, fleet)
    spec = state / "fleet-spec.json"
    spec.write_text(json.dumps(fleet, indent=1))
    Path("/tmp/fleet").mkdir(parents=True, exist_ok=True)
    serve(["--spec", str(spec), "--state-dir", str(state / "fleet"), "--authorized-key", f"{key}.pub",
           "--ready-file", "/tmp/fleet/ready", "--aws-endpoint", args.endpoint])


if __name__ == "__main__":
    main()

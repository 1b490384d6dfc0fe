"""The stand the reach tests build on: a real moto server process (with the environment its stand-ins read),
the simulated fleet process and real OpenSSH sshd hosts. Whatever started is stopped in reverse order, also
when starting fails half-way. A test module subclasses it with its own hosts (`start`) and hands
tests/integration/reach/conftest.py its `make_stand`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from devstack import procs
from devstack.procs import wait_until
from devstack.stack import local_aws
from devstack.standins.hosts.sshd_host import start_sshd_host


class Stand:
    def __init__(self, root: Path, moto_env: dict[str, str]) -> None:
        self.root, self.stops = root, []
        try:
            moto = local_aws.moto(root / "moto.log", moto_env)
            self.endpoint = moto.__enter__()
            self.stops.append(lambda: moto.__exit__(None, None, None))
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """The module's hosts, on top of moto (self.endpoint)."""

    def start_fleet(self, entries: list[dict], *args: str):
        """The simulated fleet process for `entries` (devstack/standins/hosts/fleet.py --spec), with its further arguments;
        returns once it is ready."""
        spec, ready = self.root / "spec.json", self.root / "fleet.ready"
        spec.write_text(json.dumps(entries))
        fleet = procs.spawn([sys.executable, "-m", "devstack.standins.hosts.fleet", "--spec", str(spec), "--state-dir", str(self.root),
                             "--ready-file", str(ready), *args], self.root / "fleet.log")
        self.stops.append(lambda: procs.stop_group(fleet, timeout=10))
        wait_until(ready.exists, 60, "simulated fleet", fleet)
        return fleet

    def start_sshd(self, *args, **kwargs):
        """A real sshd host (devstack/standins/hosts/sshd_host.py start_sshd_host), stopped with the stand."""
        host = start_sshd_host(*args, **kwargs)
        self.stops.append(host.stop)
        return host

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()
        self.stops.clear()

    def __enter__(self) -> Stand:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

"""The embedded local stack: moto server, simulated SSH fleet, SMTP sink — all on loopback, all stoppable.

Used by `make demo`, `make up` and the integration tests. Every process started here is recorded by PID
and stopped by PID; nothing else on the machine is touched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import procs
from devstack.procs import PROJECT, free_port, http_ok, wait_until
from devstack.standins.aws.seed import REGION, clients, seed_pins
from devstack.standins.hosts.fleet import SSH_LOGIN, SSH_PORT, SSM_AGENT_PORT
from devstack.standins.hosts.host_states import AUDIT_GROUP

if TYPE_CHECKING:
    from devstack.stack.events import Events


@dataclass
class LocalStack:
    root: Path
    fleet: list[dict]  # host entries (see devstack/standins/hosts/demo_fleet.py)
    latency_ms: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    moto_port: int = 0
    smtp_port: int = 0
    # moto ignores credentials; a unique secret lets tests prove it never leaks into logs, XCom or reports.
    aws_secret: str = field(default_factory=lambda: f"local-secret-{uuid.uuid4().hex}")
    # The watch's event sources (devstack/stack/events.py): the events queue, the state-change rule, the forwarder
    # and the audit group's subscription filter. Off by default: without them Airflow gets no
    # EC2_AUDIT_EVENTS_QUEUE_URL, so runs that do not use the watch behave as before.
    events: bool = False
    forwarder: Path | None = None  # the forwarder's handler file; None: deploy/forwarder/handler.py
    queues: "Events | None" = None  # devstack.stack.events.Events once started with events

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def maildir(self) -> Path:
        return self.root / "mail"

    @property
    def eic_key_dir(self) -> Path:
        """Where the moto server's EC2 Instance Connect records pushed keys; the hosts read it."""
        return self.root / "eic"

    @property
    def ssm_dir(self) -> Path:
        """The SSM stand-in's registry: which instances it manages and how its agent reaches each."""
        return self.root / "ssm"

    @property
    def ssm_agent_key(self) -> Path:
        return self.root / "keys" / "ssm_agent"

    @property
    def client_key(self) -> Path:
        return self.root / "keys" / "id_ed25519"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = procs.spawn(args, self.root / "logs" / f"{name}.log",
                           {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})})
        self.procs[name] = proc
        return proc

    # -- lifecycle
    def start(self) -> "LocalStack":
        from devstack.standins.aws.seed import seed_fleet
        from devstack.standins.hosts.fleet import generate_client_key

        for sub in ("logs", "keys", "fleet", "mail", "eic", "ssm"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for key in (self.client_key, self.ssm_agent_key):
            if not key.exists():
                generate_client_key(key)
        try:
            self.moto_port = free_port()
            moto = self._spawn("moto", [sys.executable, "-m", "devstack.standins.aws.server", "-H", "127.0.0.1",
                                        "-p", str(self.moto_port)], {"EC2AUDIT_EIC_KEY_DIR": str(self.eic_key_dir),
                                                                     "EC2AUDIT_SSM_DIR": str(self.ssm_dir)})
            wait_until(lambda: http_ok(f"{self.endpoint}/moto-api/"), 30, "moto server", moto)
            seed_fleet(self.endpoint, self.fleet, REGION)
            self._seed_pins()
            if self.events:
                from devstack.stack import events

                self.queues = events.set_up(self.endpoint, REGION, self.forwarder or events.FORWARDER)

            self._spawn_fleet("fleet", [h for h in self.fleet if h.get("simulated", True)])
            self._register_ssm()

            self.smtp_port = free_port()
            smtp_ready = self.root / "mail" / ".ready"
            smtp_ready.unlink(missing_ok=True)
            smtp = self._spawn("smtp", [sys.executable, "-m", "devstack.standins.sinks.smtp", "--host", "127.0.0.1",
                                        "--port", str(self.smtp_port), "--maildir", str(self.maildir),
                                        "--ready-file", str(smtp_ready)])
            wait_until(smtp_ready.exists, 30, "smtp sink", smtp)
        except BaseException:
            self.stop()
            raise
        (self.root / "stack.env").write_text(
            "".join(f"export {k}={_shell_quote(v)}\n" for k, v in self.airflow_env().items()))
        return self

    def _spawn_fleet(self, name: str, hosts: list[dict]) -> None:
        """A simulated fleet process for `hosts` (state in root/fleet: host keys, profile controls)."""
        spec = self.root / "fleet" / ("spec.json" if name == "fleet" else f"{name}.spec.json")
        spec.write_text(json.dumps([{**h, **({"agent_port": SSM_AGENT_PORT} if h.get("ssm") else {})}
                                    for h in hosts], indent=1))
        ready = self.root / "fleet" / ("ready" if name == "fleet" else f"{name}.ready")
        ready.unlink(missing_ok=True)
        fleet = self._spawn(name, [
            sys.executable, "-m", "devstack.standins.hosts.fleet", "--spec", str(spec), "--state-dir", str(self.root / "fleet"),
            "--authorized-key", str(self.client_key) + ".pub", "--latency-ms", str(self.latency_ms),
            "--ready-file", str(ready), "--aws-endpoint", self.endpoint, "--eic-key-dir", str(self.eic_key_dir),
            "--ssm-agent-key", str(self.ssm_agent_key) + ".pub"])
        wait_until(ready.exists, 60, "simulated fleet", fleet)

    def _register_ssm(self) -> None:
        """Simulated hosts with `ssm` (a ping status) are SSM-managed; real sshd hosts register when started
        (register_sshd)."""
        from devstack.standins.hosts.ssm_agents import register_fleet_host

        for host in self.fleet:
            if host.get("ssm") and host.get("simulated", True):
                register_fleet_host(self.ssm_dir, host["instance_id"], host["address"], SSM_AGENT_PORT,
                                    self.ssm_agent_key, ping_status=host["ssm"],
                                    computer_name=host.get("identity", {}).get("hostname", ""))

    def register_sshd(self, host: dict, sshd) -> None:
        """A real sshd host of this stack (devstack/standins/hosts/sshd_host.py) with `ssm` set: its agent runs the script
        inside the host's own mount namespace, as root."""
        from devstack.standins.hosts.ssm_agents import register_sshd_host

        if host.get("ssm"):
            register_sshd_host(self.ssm_dir, host["instance_id"], sshd, ping_status=host["ssm"])

    # -- the watch's events (issue 28): what happens to hosts between runs
    def host(self, instance_id: str) -> dict:
        return next(h for h in self.fleet if h.get("instance_id") == instance_id)

    def put_state_change(self, instance_id: str, state: str = "running", account: str | None = None) -> str:
        """EventBridge's "EC2 Instance State-change Notification" for the instance (moto's EC2 emits none)."""
        from devstack.stack import events

        return events.put_state_change(self.endpoint, instance_id, REGION, account or events.DEFAULT_ACCOUNT, state)

    def launch_host(self, host: dict) -> str:
        """A new instance: running in moto (in the fleet's subnet, at host["address"]), a simulated host answering
        for it (its own fleet process), its audit stream, and the state-change event. Returns its instance id."""
        import time

        from devstack.standins.aws.seed import LINUX_AMI

        ec2, logs, _ = clients(self.endpoint, REGION)
        vpc = self.fleet[0]["vpc_id"] if self.fleet else ec2.describe_vpcs()["Vpcs"][-1]["VpcId"]
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
        instance_id = ec2.run_instances(
            ImageId=LINUX_AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet,
            PrivateIpAddress=host["address"], TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "Name", "Value": host.get("name", host["address"])},
                {"Key": "Environment", "Value": host.get("environment", "prod")}]}])["Instances"][0]["InstanceId"]
        host.setdefault("port", SSH_PORT)
        host.update(instance_id=instance_id, vpc_id=vpc)
        self.fleet.append(host)
        self._spawn_fleet(f"fleet-{instance_id}", [host])
        logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName=host.get("stream") or instance_id)
        logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName=host.get("stream") or instance_id, logEvents=[
            {"timestamp": int(time.time() * 1000), "message": "type=DAEMON_START msg=audit(%.3f:1): op=start "
                                                              "auid=4294967295 pid=1 res=success" % time.time()}])
        self.put_state_change(instance_id)
        return instance_id

    def tamper_sim_host(self, instance_id: str, profile: str = "auditd_stopped") -> str:
        """A simulated host's auditd is stopped: from now on it answers `profile`, and its agent ships the
        DAEMON_END record to its stream. Returns the record."""
        import time

        from devstack.standins.hosts.fleet import set_profile

        host = self.host(instance_id)
        set_profile(self.root / "fleet", host["address"], profile)
        now = time.time()
        record = (f"type=DAEMON_END msg=audit({now:.3f}:{int(now) % 100000}): op=terminate auid=0 uid=0 "
                  "ses=4294967295 pid=1 res=success")
        self._logs().put_log_events(logGroupName=AUDIT_GROUP, logStreamName=host.get("stream") or instance_id,
                                    logEvents=[{"timestamp": int(now * 1000), "message": record}])
        return record

    def silence_stream(self, instance_id: str, minutes: float) -> None:
        """The host's audit stream goes silent: its last event (and ingestion) `minutes` ago. The host still
        answers its profile, and a canary it is asked for still lands in the stream (making it fresh again)."""
        import time

        host = self.host(instance_id)
        stream = host.get("stream") or instance_id
        logs = self._logs()
        try:
            logs.delete_log_stream(logGroupName=AUDIT_GROUP, logStreamName=stream)
        except logs.exceptions.ResourceNotFoundException:
            pass
        logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName=stream)
        then = time.time() - minutes * 60
        logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName=stream, logEvents=[{
            "timestamp": int(then * 1000), "message": f"type=USER_LOGIN msg=audit({then:.3f}:7): pid=1 uid=0 res=success"}])

    def _logs(self):
        return clients(self.endpoint, REGION)[1]

    def _seed_pins(self) -> None:
        seed_pins(self.endpoint, self.fleet)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            procs.stop_group(proc, timeout=10)
        self.procs.clear()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what Airflow needs to use the stack
    def airflow_env(self) -> dict[str, str]:
        home = self.root / "airflow"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": str(PROJECT),
            **connections_env(self.endpoint, self.aws_secret, self.client_key, self.smtp_port),
            **({"EC2_AUDIT_EVENTS_QUEUE_URL": self.queues.queue_url} if self.queues is not None else {}),
        }

    def received_mail(self) -> list[Path]:
        return sorted(self.maildir.glob("*.eml"))

    def report_mail(self) -> list[Path]:
        """The mails that are not security-event alerts (subject "SECURITY …", include/notify/security_events.py): the
        demo fleet's bastion-1 always offers a changed host key, so any run may also send one of those."""
        import email

        return [p for p in self.received_mail()
                if not (email.message_from_bytes(p.read_bytes())["Subject"] or "").startswith("SECURITY ")]

    def security_mail_naming(self, instance_id: str, among: list[Path] | None = None) -> list[Path]:
        """The security alerts (subject "SECURITY …") whose decoded text names the instance."""
        import email

        found = []
        for path in self.received_mail() if among is None else among:
            message = email.message_from_bytes(path.read_bytes())
            text = " ".join((part.get_payload(decode=True) or b"").decode("utf-8", "replace")
                            for part in message.walk() if not part.is_multipart())
            if (message["Subject"] or "").startswith("SECURITY ") and instance_id in text:
                found.append(path)
        return found


def connections_env(endpoint: str, aws_secret: str, client_key: Path, smtp_port: int,
                    ssh_port: int = SSH_PORT) -> dict[str, str]:
    """The AWS credentials and the three Airflow connections (as AIRFLOW_CONN_* JSON) of a local stack:
    moto for AWS, the SSH key for the fleet, the SMTP sink for mail. The stack, `make up` and the bench use it."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "AWS_DEFAULT_REGION": REGION,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "testing", "password": aws_secret,
            "extra": {"endpoint_url": endpoint, "region_name": REGION}}),
        "AIRFLOW_CONN_EC2_AUDIT_SSH": json.dumps({
            "conn_type": "ssh", "login": SSH_LOGIN, "port": ssh_port,
            "extra": {"key_file": str(client_key), "host_key_policy": "tofu"}}),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "ec2-audit@localhost"}}),
    }


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"

"""The local stack with the watch's event sources (LocalStack(events=True)): simulated hosts tampered with, a
stream gone silent, an instance launched — each seen by the audit over SSH and on the events queue.

One stack for the module (moto, a simulated fleet on 127.42.9.20x, the SMTP sink): run under
`flock /tmp/itest.lock`."""
from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time

import boto3
import pytest

from devstack.stack import events
from devstack.stack.local_stack import LocalStack
from devstack.standins.hosts.fleet import SSH_LOGIN, SSH_PORT
from devstack.standins.hosts.host_states import AUDIT_GROUP
from include.checks.catalogue import SCRIPT, evaluate_host_checks
from include.checks.probes import frame, new_nonce
from include.checks.sections import split_sections
from include.core.host import Host
from include.core.status import CheckStatus
from include.reach.ssh import SshSettings, check_host

HANDLER = events.FORWARDER  # the forwarder Lambda's own code (deploy/forwarder/handler.py)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    fleet = [{"address": f"127.42.9.20{n}", "name": f"watch-{n}", "profile": "compliant", "port": SSH_PORT} for n in (1, 2)]
    with LocalStack(tmp_path_factory.mktemp("stack"), fleet, events=True, forwarder=HANDLER) as local:
        yield local


def running(stack: LocalStack, address: str) -> CheckStatus:
    """The audit's verdict of auditd.running on the host, over SSH as the DAG connects."""
    settings = SshSettings(username=SSH_LOGIN, private_key=stack.client_key.read_text(), port=SSH_PORT,
                           connect_timeout=5, backoff=0.1)
    nonce = new_nonce()
    outcome = asyncio.run(check_host(Host("i-x", "us-east-1", "a", address), settings, settings.load_key(),
                                     frame(SCRIPT, nonce), None))
    assert outcome.transport_status is None, outcome.transport_detail
    return evaluate_host_checks(split_sections(outcome.output.decode(), nonce))["auditd.running"].status


def test_airflow_gets_the_queue_url_only_from_a_stack_with_events(stack, tmp_path):
    assert stack.airflow_env()["EC2_AUDIT_EVENTS_QUEUE_URL"] == stack.queues.queue_url
    assert stack.queues.queue_url.endswith("/" + events.QUEUE_NAME)
    assert "EC2_AUDIT_EVENTS_QUEUE_URL" not in LocalStack(tmp_path, []).airflow_env()


def test_a_tampered_simulated_host_answers_auditd_stopped_and_its_record_reaches_the_queue(stack):
    host = stack.fleet[0]
    assert running(stack, host["address"]) == CheckStatus.PASS
    record = stack.tamper_sim_host(host["instance_id"])
    assert running(stack, host["address"]) == CheckStatus.FAIL
    [message] = events.receive(stack.endpoint, stack.queues.queue_url)
    data = json.loads(gzip.decompress(base64.b64decode(json.loads(message["Body"])["awslogs"]["data"])))
    assert (data["logStream"], [e["message"] for e in data["logEvents"]]) == (host["instance_id"], [record])


def test_a_silent_stream_is_old_while_the_host_still_answers_healthy(stack):
    host = stack.fleet[1]
    stack.silence_stream(host["instance_id"], minutes=90)
    logs = boto3.client("logs", endpoint_url=stack.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    [info] = logs.describe_log_streams(logGroupName=AUDIT_GROUP, logStreamNamePrefix=host["instance_id"])["logStreams"]
    assert time.time() * 1000 - info["lastEventTimestamp"] > 89 * 60_000
    assert time.time() * 1000 - info["lastIngestionTime"] > 89 * 60_000
    assert running(stack, host["address"]) == CheckStatus.PASS


def test_a_launched_instance_runs_answers_and_its_state_change_reaches_the_queue(stack):
    instance_id = stack.launch_host({"address": "127.42.9.210", "name": "watch-new", "profile": "compliant"})
    ec2 = boto3.client("ec2", endpoint_url=stack.endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    assert running(stack, "127.42.9.210") == CheckStatus.PASS
    [message] = events.receive(stack.endpoint, stack.queues.queue_url)
    assert json.loads(message["Body"])["detail"] == {"instance-id": instance_id, "state": "running"}

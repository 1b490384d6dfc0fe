"""Run moto's HTTP server as the local AWS stand-in (EC2, DynamoDB, CloudWatch Logs).

One simulation tweak: moto stamps lastIngestionTime with the wall clock of the write, so a stream seeded
with an event from 10 hours ago would still look fresh. Here ingestion follows the newest event's own
timestamp, as it does for a real agent that ships events as they happen; that lets the demo hold a
genuinely stale stream.

Three fleet-scale fixes (`make bench` at 10,000 instances), same responses: moto finds an instance's tags by
scanning every tag in the region, and an instance by id by copying every reservation, once per instance
served — O(fleet) per instance, so seeding and describing 10,000 instances took minutes of the stand-in's
own CPU; here they are direct lookups. And DynamoDB rendered each nested attribute by deep-copying its whole
subtree at every level (an evidence item's `checks` map is three deep); here each level is copied once.
Nothing else in moto is changed.

EC2 Instance Connect: moto's `SendSSHPublicKey` answers success and authorizes nothing. Here it also records
the key for that instance and OS user, expiring after 60 s (`EC2AUDIT_EIC_KEY_TTL`), in the key directory
`EC2AUDIT_EIC_KEY_DIR` that the simulated fleet and the real sshd hosts read (devstack/eic_keys.py); an
unknown instance is EC2InstanceNotFoundException, one not running EC2InstanceStateInvalidException. Without
the variable it behaves as moto does.

    python -m devstack.moto_server -H 127.0.0.1 -p 5055
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone


def _ingestion_follows_events() -> None:
    from moto.logs import models

    original = models.LogStream.put_log_events

    def put_log_events(self, log_events):
        token = original(self, log_events)
        newest = max((e["timestamp"] for e in log_events), default=None)
        if newest is not None:
            moment = datetime.fromtimestamp(newest / 1000, tz=timezone.utc).replace(tzinfo=None)
            self.last_ingestion_time = min(self.last_ingestion_time, moment)
        return token

    models.LogStream.put_log_events = put_log_events


def _direct_lookups() -> None:
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import instances, tags

    describe_tags = tags.TagBackend.describe_tags

    def fast_describe_tags(self, filters=None):
        ids = (filters or {}).get("resource-id")
        if filters and len(filters) == 1 and ids and len(ids) == 1 and not any(c in ids[0] for c in "*?"):
            rid = ids[0]  # the per-resource call every tagged object makes when it is rendered
            kind = tags.EC2_PREFIX_TO_RESOURCE.get(tags.get_prefix(rid), "")
            return [{"resource_id": rid, "key": k, "value": v, "resource_type": kind}
                    for k, v in self.tags.get(rid, {}).items()]
        return describe_tags(self, filters)

    def get_instance(self, instance_id):
        for reservation in self.reservations.values():  # without all_reservations()' copy of each one
            for instance in reservation.instances:
                if instance.id == instance_id:
                    return instance
        raise InvalidInstanceIdError(instance_id)

    tags.TagBackend.describe_tags = fast_describe_tags
    instances.InstanceBackend.get_instance = get_instance


def _copy_each_level_once() -> None:
    import base64
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    def to_regular_json(self):
        def plain(v):
            return v.to_regular_json() if isinstance(v, DynamoType) else copy.deepcopy(v)

        value = self.value
        if isinstance(value, dict):
            value = {k: plain(v) for k, v in value.items()}
        elif isinstance(value, list):
            value = [plain(v) for v in value]
        if self.is_binary() and isinstance(value, str):
            value = base64.b64decode(value)
        return {self.type: value}

    DynamoType.to_regular_json = to_regular_json


def _instance_connect_authorizes() -> None:
    import json

    from moto.core.exceptions import JsonRESTError
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2instanceconnect.responses import Ec2InstanceConnectResponse

    from devstack import eic_keys

    original = Ec2InstanceConnectResponse.send_ssh_public_key

    def send_ssh_public_key(self):
        key_dir = eic_keys.key_dir_from_env()
        if key_dir is None:
            return original(self)
        instance_id, user = self._get_param("InstanceId"), self._get_param("InstanceOSUser")
        try:
            instance = ec2_backends[self.current_account][self.region].get_instance(instance_id)
        except InvalidInstanceIdError:
            raise JsonRESTError("EC2InstanceNotFoundException", f"Instance not found: {instance_id}")
        if instance.state != "running":
            raise JsonRESTError("EC2InstanceStateInvalidException", f"Instance {instance_id} is not running")
        try:
            eic_keys.push(key_dir, instance_id, user, self._get_param("SSHPublicKey") or "")
        except ValueError as exc:
            raise JsonRESTError("InvalidArgsException", str(exc))
        return json.dumps({"RequestId": f"eic-{instance_id}", "Success": True})

    Ec2InstanceConnectResponse.send_ssh_public_key = send_ssh_public_key


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    _ingestion_follows_events()
    _direct_lookups()
    _copy_each_level_once()
    _instance_connect_authorizes()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

"""EC2 and EC2 Instance Connect.

Fleet-scale fixes, same responses (tests/devstack/test_moto_patches.py): moto finds an instance's tags by scanning
every tag in the region, and an instance by id by copying every reservation, once per instance served —
O(fleet) per instance, so seeding and describing 10,000 instances took minutes of the stand-in's own CPU; here
they are direct lookups. A DescribeInstances `instance-id` filter tests only the instances it names.

EC2 Instance Connect: moto's `SendSSHPublicKey` answers success and authorizes nothing. Here it also records
the key for that instance and OS user, expiring after 60 s (`EC2AUDIT_EIC_KEY_TTL`), in the key directory
`EC2AUDIT_EIC_KEY_DIR` that the simulated fleet and the real sshd hosts read (devstack/standins/hosts/eic_keys.py);
an unknown instance is EC2InstanceNotFoundException, one not running EC2InstanceStateInvalidException. Without
the variable it behaves as moto does.
"""
from __future__ import annotations


def direct_lookups() -> None:
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


def id_filters_read_their_instances() -> None:
    """DescribeInstances with an `instance-id` filter (include/fleet/discovery.py asks for ≤ 200 ids a call):
    moto copies every reservation of the region and tests every instance against the filter's list of ids —
    10,000 × 200 comparisons a call at 10,000 hosts. Here only the instances with one of those ids (a set
    lookup each) are filtered, by moto's own filter, in copies of their reservations: an id filter is an exact
    match, so no other instance could pass it. Only when every filter is one moto implements (it raises on others, as
    before). Same reservations, same order."""
    import copy

    from moto.ec2 import utils
    from moto.ec2.models import instances

    all_reservations = instances.InstanceBackend.all_reservations

    def by_id_first(self, filters=None):
        ids = (filters or {}).get("instance-id")
        if (not ids or utils.filter_dict_attribute_mapping.get("instance-id") != "id"
                or not all(type(v) is str for v in ids)
                or not all(name in utils.filter_dict_attribute_mapping or utils.is_tag_filter(name) for name in filters)):
            return all_reservations(self, filters)
        wanted, reservations = set(ids), []
        for reservation in self.reservations.copy().values():
            held = [instance for instance in reservation.instances if instance.id in wanted]
            if held:  # moto's filter sets a copy's instances to those that pass: only these can
                narrowed = copy.copy(reservation)
                narrowed.instances = held
                reservations.append(narrowed)
        return utils.filter_reservations(reservations, filters)

    instances.InstanceBackend.all_reservations = by_id_first


def instance_connect_authorizes() -> None:
    import json

    from moto.core.exceptions import JsonRESTError
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2instanceconnect.responses import Ec2InstanceConnectResponse

    from devstack.standins.hosts import eic_keys

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

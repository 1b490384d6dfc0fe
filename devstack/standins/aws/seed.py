"""Register a simulated fleet in the local AWS stand-in (moto server): VPC, instances, log streams, pins.

Instances get explicit private IPs in 127.42.0.0/16 so the SSH simulator and real sshd hosts can listen
on exactly the addresses discovery will find.
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import boto3

from devstack.standins.hosts.host_states import AUDIT_GROUP, PROFILES

LINUX_AMI = "ami-760aaa0f"  # amzn-ami-hvm in moto's default catalogue
WINDOWS_AMI = "ami-03cf127a"  # Windows Server 2016 in moto's catalogue (platform: windows)
REGION = "us-east-1"  # the local stack's one region
VPC_CIDR, SUBNET_CIDR = "127.42.0.0/16", "127.42.0.0/20"


def clients(endpoint: str, region: str = "us-east-1", role_arn: str | None = None):
    kwargs = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
    if role_arn:  # another account: moto keys its state by the assumed role's account id
        creds = boto3.client("sts", **kwargs).assume_role(RoleArn=role_arn, RoleSessionName="seed")["Credentials"]
        kwargs.update(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["SessionToken"])
    return boto3.client("ec2", **kwargs), boto3.client("logs", **kwargs), boto3.resource("dynamodb", **kwargs)


def seed_fleet(endpoint: str, hosts: Iterable[dict], region: str = "us-east-1", now_ms: int | None = None,
               role_arn: str | None = None, cidrs: tuple[str, str] = (VPC_CIDR, SUBNET_CIDR)) -> dict[str, str]:
    """Create one instance per host entry; returns address → instance id (and sets entry['instance_id']).

    Host entry fields used: address, name, environment, profile, windows (bool), state ("running" |
    "stopped" | "terminated"), vpc (a label: hosts with another label get a VPC of their own, same CIDRs;
    absent = the first VPC). Sets entry['vpc_id'] too.
    """
    ec2, logs, _ = clients(endpoint, region, role_arn)
    vpc = ec2.create_vpc(CidrBlock=cidrs[0])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidrs[1])["Subnet"]["SubnetId"]
    subnets = {"": (vpc, subnet)}
    now_ms = now_ms or int(time.time() * 1000)
    try:
        logs.create_log_group(logGroupName=AUDIT_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    ids: dict[str, str] = {}
    for host in hosts:  # one at a time: moto's EC2 answers 500 to concurrent RunInstances
        tags = [{"Key": "Name", "Value": host.get("name", host["address"])},
                {"Key": "Environment", "Value": host.get("environment", "prod")}]
        label = host.get("vpc", "")
        if label not in subnets:
            other = ec2.create_vpc(CidrBlock=cidrs[0])["Vpc"]["VpcId"]
            subnets[label] = (other, ec2.create_subnet(VpcId=other, CidrBlock=cidrs[1])["Subnet"]["SubnetId"])
        host["vpc_id"] = subnets[label][0]
        instance = ec2.run_instances(
            ImageId=WINDOWS_AMI if host.get("windows") else LINUX_AMI, MinCount=1, MaxCount=1,
            InstanceType="t3.micro", SubnetId=subnets[label][1], PrivateIpAddress=host["address"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]
        instance_id = instance["InstanceId"]
        host["instance_id"] = ids[host["address"]] = instance_id
        state = host.get("state", "running")
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[instance_id])
        elif state == "terminated":
            ec2.terminate_instances(InstanceIds=[instance_id])
        age = PROFILES[host["profile"]].stream_age_minutes if host.get("profile") in PROFILES else None
        if age is not None and not host.get("windows"):
            stream = host.get("stream") or instance_id  # the name the host's agent gives its audit stream
            logs.create_log_stream(logGroupName=AUDIT_GROUP, logStreamName=stream)
            logs.put_log_events(logGroupName=AUDIT_GROUP, logStreamName=stream, logEvents=[{
                "timestamp": now_ms - age * 60_000,
                "message": 'type=USER_LOGIN msg=audit(1700000000.000:1): pid=1 uid=0 res=success'}])
    return ids


def age_streams(endpoint: str, region: str = "us-east-1") -> None:
    """moto sets lastIngestionTime to the write time; nothing to do for lastEventTimestamp-based ages."""


def seed_pins(endpoint: str, fleet: list[dict], table: str = "ec2_audit_evidence") -> None:
    """Hosts marked `pinned_other_key` get a pin for a key they do not have: HOST_KEY_MISMATCH."""
    import asyncssh

    from include.evidence.store import EvidenceStore
    from include.reach.hostkeys import PinStore

    dynamodb = clients(endpoint, REGION)[2]
    EvidenceStore(dynamodb, table).ensure_tables()
    pins = PinStore(dynamodb, table)
    for host in fleet:
        if host.get("pinned_other_key"):
            other = asyncssh.generate_private_key("ssh-ed25519")
            pins.pin(host["instance_id"], other.export_public_key("openssh").decode().strip(),
                     other.get_fingerprint("sha256"), host["address"])

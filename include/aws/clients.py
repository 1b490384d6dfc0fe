"""AWS clients, from the Amazon provider's hooks: the one place that turns connections into boto3 clients.

Another account is an IAM role ARN (assumed from `aws_default`) or an Airflow AWS connection id. A role ARN
goes through the provider's own assume-role support — `aws_default` with `role_arn` added — so credentials
refresh before they expire (a long batch never outlives a one-shot STS token), and the connection's
`endpoint_url`, region and botocore settings apply to the assumed session as to any other.
"""
from __future__ import annotations

import json
from functools import cached_property

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

from include.aws.accounts import SESSION_NAME, is_role_arn
from include.settings.params import AWS_CONN_ID

# CloudWatch Logs allows DescribeLogStreams ~25 requests/s per account and region; batches in parallel (and
# hosts whose streams are not named by instance id: include/logs/streams.py) can hit that. Adaptive retries slow
# the client down on throttling instead of turning a throttled lookup into an ERROR verdict for a healthy host.
LOGS_RETRIES = {"retries": {"mode": "adaptive", "max_attempts": 10}}
# SendCommand and ListCommandInvocations have per-account rates too (docs/PERFORMANCE.md): slow down, not fail.
SSM_RETRIES = {"retries": {"mode": "adaptive", "max_attempts": 8}}
# Security Hub throttles BatchImportFindings per account: slow down, never fail.
SECURITYHUB_RETRIES = {"retries": {"mode": "adaptive", "max_attempts": 8}}


class AssumedRoleHook(AwsBaseHook):
    """`aws_default` with `role_arn` set: the provider assumes the role, with refreshing credentials."""

    def __init__(self, role_arn: str, **kwargs) -> None:
        self.role_arn = role_arn
        super().__init__(aws_conn_id=AWS_CONN_ID, **kwargs)

    @cached_property
    def conn_config(self) -> AwsConnectionWrapper:
        from airflow.sdk import Connection

        base = self.get_connection(AWS_CONN_ID)
        extra = {**base.extra_dejson, "role_arn": self.role_arn,
                 "assume_role_kwargs": {"RoleSessionName": SESSION_NAME}}
        # The provider never sends AssumeRole to the connection-wide endpoint_url, only to service_config.sts:
        # a connection pointed at one endpoint (a local stand-in, a private endpoint) means STS there too.
        services = dict(extra.get("service_config") or {})
        if extra.get("endpoint_url") and "endpoint_url" not in (services.get("sts") or {}):
            services["sts"] = {**(services.get("sts") or {}), "endpoint_url": extra["endpoint_url"]}
            extra["service_config"] = services
        conn = Connection(conn_id=f"{AWS_CONN_ID}-as-{self.role_arn}", conn_type="aws", login=base.login,
                          password=base.password, extra=json.dumps(extra))
        return AwsConnectionWrapper(conn=conn, region_name=self._region_name, botocore_config=self._config,
                                    verify=self._verify)


def _hook(account: str, region: str | None, **kwargs) -> AwsBaseHook:
    if is_role_arn(account):
        return AssumedRoleHook(account, region_name=region, **kwargs)
    return AwsBaseHook(aws_conn_id=account or AWS_CONN_ID, region_name=region, **kwargs)


def default_region() -> str:
    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="ec2").conn_region_name or "us-east-1"


def default_account_id() -> str:
    """aws_default's own 12-digit account (STS GetCallerIdentity, through the provider's hook)."""
    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, client_type="sts").account_id


def ec2_client(region: str, account: str = ""):
    return _hook(account, region, client_type="ec2").conn


def logs_client(region: str, account: str = ""):
    return _hook(account, region, client_type="logs", config=LOGS_RETRIES).conn


def eic_client(region: str, account: str = ""):
    """EC2 Instance Connect (SendSSHPublicKey) of the account and region: transport eic (include/reach/eic.py)."""
    return _hook(account, region, client_type="ec2-instance-connect").conn


def ssm_client(region: str, account: str = ""):
    """SSM (Run Command) of the account and region: transport ssm and auto (include/reach/ssm.py). The
    provider's SsmHook for a connection; for a role ARN the same client from the assumed-role hook."""
    if is_role_arn(account):
        return AssumedRoleHook(account, region_name=region, client_type="ssm", config=SSM_RETRIES).conn
    from airflow.providers.amazon.aws.hooks.ssm import SsmHook

    return SsmHook(aws_conn_id=account or AWS_CONN_ID, region_name=region, config=SSM_RETRIES).conn


def s3_client(region: str, account: str = ""):
    """S3 of the account and region: SSM command output in ssm_output_bucket."""
    return _hook(account, region, client_type="s3").conn


def kms_client(key_id: str):
    """KMS of the evidence account (`aws_default`) where the key lives: a key ARN names its region, an id or
    alias is the connection's region. The seals are signed with it (include/evidence/signing.py)."""
    parts = key_id.split(":")
    region = parts[3] if key_id.startswith("arn:") and len(parts) > 3 and parts[3] else None
    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, region_name=region, client_type="kms").conn


def securityhub_client(region: str, account: str = ""):
    """(Security Hub client, its 12-digit account id) of the account and region: the findings export
    (include/exports/securityhub.py) imports only the caller's own findings, so each account gets its own client."""
    hook = _hook(account, region, client_type="securityhub", config=SECURITYHUB_RETRIES)
    return hook.conn, hook.account_id


def dynamodb_resource():
    """The evidence account's DynamoDB (always `aws_default`: evidence is written centrally)."""
    return AwsBaseHook(aws_conn_id=AWS_CONN_ID, resource_type="dynamodb").conn



def sqs_client(queue_url: str = ""):
    """SQS of the evidence account (`aws_default`), in the events queue's region (its URL names it on AWS):
    the watch sends its deferred re-checks there, the silence sweep its messages (include/tasks/watch.py)."""
    import re

    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    match = re.match(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com", queue_url or "")
    return SqsHook(aws_conn_id=AWS_CONN_ID, region_name=match.group(1) if match else None).conn

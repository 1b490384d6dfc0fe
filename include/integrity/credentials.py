"""AWS access for the command line, without a running Airflow: `AIRFLOW_CONN_AWS_DEFAULT` when set (the JSON or
the URI form, read by Airflow's own Connection class when it imports, else by the small parser below), else the
standard AWS credential chain (an auditor's own read-only role: docs/EVIDENCE.md).

From the connection: `login`/`password` are the access key pair (or `extra.aws_access_key_id` /
`aws_secret_access_key`), `extra.aws_session_token`, `extra.region_name`, `extra.endpoint_url` (every call goes
there: a local stand-in), `extra.profile_name`, `extra.role_arn` (assumed once, for the command's few minutes).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

ENV = "AIRFLOW_CONN_AWS_DEFAULT"
DEFAULT_REGION = "us-east-1"
# Throttled DynamoDB, S3 and KMS calls slow the client down (adaptive mode) instead of failing the audit.
RETRIES = {"retries": {"mode": "adaptive", "max_attempts": 10}}
SESSION_NAME = "ec2-audit-integrity"


@dataclass(frozen=True)
class AwsAccess:
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""
    region: str = ""
    endpoint_url: str = ""
    profile: str = ""
    role_arn: str = ""


def connection_fields(value: str) -> tuple[str, str, dict[str, Any]]:
    """(login, password, extra) of a connection in Airflow's env-var form (JSON or URI)."""
    try:
        from airflow.sdk import Connection
    except ImportError:  # no Airflow installed: the documented forms parsed here
        return _parse(value)
    if value.lstrip().startswith("{"):
        conn = Connection.from_json(value, conn_id="aws_default")
    else:
        conn = Connection(conn_id="aws_default", uri=value)
    return conn.login or "", conn.password or "", dict(conn.extra_dejson)


def _parse(value: str) -> tuple[str, str, dict[str, Any]]:
    """JSON {"login", "password", "extra": {...} or its JSON text}, or the URI form
    aws://LOGIN:PASSWORD@/?key=value&... (values URL-encoded; `__extra__` = the extra as JSON)."""
    if value.lstrip().startswith("{"):
        doc = json.loads(value)
        extra = doc.get("extra") or {}
        return str(doc.get("login") or ""), str(doc.get("password") or ""), \
            json.loads(extra) if isinstance(extra, str) else dict(extra)
    parts = urlsplit(value)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    return unquote(parts.username or ""), unquote(parts.password or ""), extra


def access_from(value: str) -> AwsAccess:
    login, password, extra = connection_fields(value)
    return AwsAccess(access_key=login or str(extra.get("aws_access_key_id") or ""),
                     secret_key=password or str(extra.get("aws_secret_access_key") or ""),
                     session_token=str(extra.get("aws_session_token") or ""),
                     region=str(extra.get("region_name") or ""), endpoint_url=str(extra.get("endpoint_url") or ""),
                     profile=str(extra.get("profile_name") or ""), role_arn=str(extra.get("role_arn") or ""))


class Aws:
    """A boto3 session and where its calls go: what every reader of the command line is built on."""

    def __init__(self, session, endpoint_url: str = "") -> None:
        self.session = session
        self.endpoint_url = endpoint_url or None

    @classmethod
    def from_env(cls, region: str = "", env: Mapping[str, str] | None = None) -> "Aws":
        import boto3

        env = os.environ if env is None else env
        value = env.get(ENV, "").strip()
        if not value:  # the standard chain: env keys, profile, SSO, instance or container role
            session = boto3.Session(region_name=region or None)
            return cls(boto3.Session(region_name=region or session.region_name or DEFAULT_REGION))
        access = access_from(value)
        keys = {"aws_access_key_id": access.access_key or None, "aws_secret_access_key": access.secret_key or None,
                "aws_session_token": access.session_token or None, "profile_name": access.profile or None}
        session = boto3.Session(**keys, region_name=region or access.region or None)
        if not session.region_name:  # neither the connection nor the environment names one
            session = boto3.Session(**keys, region_name=DEFAULT_REGION)
        if access.role_arn:
            sts = session.client("sts", endpoint_url=access.endpoint_url or None)
            creds = sts.assume_role(RoleArn=access.role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
            session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"], region_name=session.region_name)
        return cls(session, access.endpoint_url)

    def client(self, service: str):
        from botocore.config import Config

        return self.session.client(service, endpoint_url=self.endpoint_url, config=Config(**RETRIES))

    def resource(self, service: str):
        from botocore.config import Config

        return self.session.resource(service, endpoint_url=self.endpoint_url, config=Config(**RETRIES))

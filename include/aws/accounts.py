"""Which AWS account × region a batch covers, and boto3 clients for another account.

Accounts are named in the `accounts` param as IAM role ARNs (assumed from the `aws_default` connection with
STS, so only that connection holds credentials) or as Airflow AWS connection ids (the provider then applies
that connection's own credentials or `role_arn`). Inventory and batches key instances by a scope string:
the bare region for the connection's own account (as before), `<account>|<region>` for the others.
"""
from __future__ import annotations

import re

SEP = "|"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
SESSION_NAME = "ec2-audit-compliance"


def scope_key(account: str, region: str) -> str:
    return f"{account}{SEP}{region}" if account else region


def parse_scope(key: str) -> tuple[str, str]:
    account, _, region = key.rpartition(SEP)
    return account, region


def is_role_arn(account: str) -> bool:
    return bool(ROLE_ARN.match(account))


def account_label(account: str) -> str:
    """What a person reads: the account id of a role ARN, a connection id as is, "" for the default."""
    match = ROLE_ARN.match(account)
    return match.group(1) if match else account


def audit_scopes(accounts: list[str], include_default: bool, regions: list[str]) -> list[tuple[str, str]]:
    """(account, region) pairs to discover, the default account ("") first."""
    owners = ([""] if include_default or not accounts else []) + [a for a in dict.fromkeys(accounts) if a]
    return [(a, r) for a in owners for r in regions]

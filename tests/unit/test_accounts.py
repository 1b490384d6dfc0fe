"""Multi-account scoping (pure): keys, labels, and which (account, region) pairs are discovered."""
import pytest

from include.accounts import account_label, audit_scopes, is_role_arn, parse_scope, scope_key
from include.batching import plan_batches
from include.config import AuditParams

ARN = "arn:aws:iam::222222222222:role/ec2-audit-read"


def test_scope_keys_round_trip_and_default_account_keeps_bare_region():
    assert scope_key("", "us-east-1") == "us-east-1" and parse_scope("us-east-1") == ("", "us-east-1")
    assert parse_scope(scope_key(ARN, "eu-west-1")) == (ARN, "eu-west-1")
    assert parse_scope(scope_key("aws_prod", "eu-west-1")) == ("aws_prod", "eu-west-1")


def test_labels_and_role_detection():
    assert account_label(ARN) == "222222222222" and is_role_arn(ARN)
    assert account_label("aws_prod") == "aws_prod" and not is_role_arn("aws_prod")
    assert not is_role_arn("arn:aws:iam::2222:role/x")  # not a 12-digit account


def test_scopes_cover_every_account_and_region_once():
    assert audit_scopes([], True, ["us-east-1"]) == [("", "us-east-1")]
    assert audit_scopes([ARN, ARN, "aws_prod"], True, ["us-east-1", "eu-west-1"]) == [
        ("", "us-east-1"), ("", "eu-west-1"), (ARN, "us-east-1"), (ARN, "eu-west-1"),
        ("aws_prod", "us-east-1"), ("aws_prod", "eu-west-1")]
    assert audit_scopes([ARN], False, ["us-east-1"]) == [(ARN, "us-east-1")]
    assert audit_scopes([], False, ["us-east-1"]) == [("", "us-east-1")]  # nothing else named: the default


def test_batches_never_mix_accounts():
    batches = plan_batches({"us-east-1": ["i-1", "i-2"], scope_key(ARN, "us-east-1"): ["i-3"]}, batch_size=10)
    assert sorted(tuple(b["instance_ids"]) for b in batches) == [("i-1", "i-2"), ("i-3",)]


def test_accounts_param_is_validated():
    with pytest.raises(ValueError, match="accounts"):
        AuditParams.from_params({"accounts": ["bad|name"]})
    assert AuditParams.from_params({"accounts": [ARN]}).accounts == [ARN]

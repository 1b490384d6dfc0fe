"""Multi-account scoping (pure): keys, labels, and which (account, region) pairs are discovered."""
import pytest

from include.aws.accounts import account_label, audit_scopes, is_role_arn, parse_scope, scope_key
from include.fleet.batching import plan_batches
from include.tasks.params import audit_params

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
    assert sorted(tuple(b.instance_ids) for b in batches) == [("i-1", "i-2"), ("i-3",)]


def test_accounts_param_is_validated():
    with pytest.raises(ValueError, match="accounts"):
        audit_params({"accounts": ["bad|name"]})
    assert audit_params({"accounts": [ARN]}).accounts == [ARN]


def test_a_role_arn_goes_through_the_providers_refreshing_assume_role(monkeypatch):
    import json

    from include.aws.clients import AssumedRoleHook

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret",
        "extra": {"endpoint_url": "http://127.0.0.1:1", "region_name": "eu-west-1"}}))
    arn = "arn:aws:iam::222222222222:role/ec2-audit-read"
    hook = AssumedRoleHook(arn, client_type="ec2", region_name="eu-west-1")
    config = hook.conn_config
    assert config.role_arn == arn and config.assume_role_kwargs == {"RoleSessionName": "ec2-audit-compliance"}
    assert config.get_service_endpoint_url("sts", sts_connection_assume=True) == "http://127.0.0.1:1"
    from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory

    calls = []

    def assume(factory):  # stands in for the STS call: what the provider does with its answer is under test
        calls.append(factory.role_arn)
        return {"access_key": "ASIA", "secret_key": "s", "token": "t", "expiry_time": "2099-01-01T00:00:00Z"}

    monkeypatch.setattr(BaseSessionFactory, "_refresh_credentials", assume)
    credentials = hook.get_session()._session._credentials
    assert calls == [arn] and type(credentials).__name__ == "RefreshableCredentials"  # renewed before expiry

"""The command line's reads: bounded pages (Limit on every Query page, every page followed), throttling backed off
a bounded number of times then a failed read (exit 2), and AIRFLOW_CONN_AWS_DEFAULT read in both of Airflow's
forms, with or without Airflow installed."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from include.integrity import credentials, reader
from include.integrity.reader import EvidenceReader, StoreUnreadable


class FakeTable:
    def __init__(self, pages: list[list[dict]], throttled: int = 0):
        self.pages, self.throttled, self.calls = pages, throttled, []

    def query(self, **kwargs):
        self.calls.append(kwargs)
        if self.throttled:
            self.throttled -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "Query")
        page = int(kwargs.get("ExclusiveStartKey", {}).get("page", 0))
        response = {"Items": self.pages[page]}
        if page + 1 < len(self.pages):
            response["LastEvaluatedKey"] = {"page": page + 1}
        return response


class FakeAws:
    def __init__(self, table: FakeTable):
        self.table = table

    def resource(self, service):
        table = self.table

        class Resource:
            meta = type("Meta", (), {"client": None})()

            def Table(self, name):  # noqa: N802 (boto3's name)
                return table

        return Resource()


def make(table: FakeTable, slept: list[float]) -> EvidenceReader:
    return EvidenceReader(FakeAws(table), "T", page_items=2, sleep=slept.append)


def test_every_page_is_asked_with_a_limit_and_followed():
    table = FakeTable([[{"instance_id": "i-1", "audit_date": "2031-03-01", "seq": 1}],
                       [{"instance_id": "i-1", "audit_date": "2031-03-01#v#1", "seq": 1, "item_type": "version"}]])
    slept: list[float] = []
    got = make(table, slept).query("x", KeyConditionExpression="k")
    assert len(got) == 2 and len(table.calls) == 2
    assert all(call["Limit"] == 2 for call in table.calls)
    assert table.calls[1]["ExclusiveStartKey"] == {"page": 1}
    assert slept == []


def test_throttled_reads_back_off_then_go_on():
    table = FakeTable([[{"instance_id": "i-1"}]], throttled=3)
    slept: list[float] = []
    assert make(table, slept).query("x") == [{"instance_id": "i-1"}]
    assert len(slept) == 3 and slept[0] < slept[2]


def test_throttled_past_the_bound_fails_the_read():
    table = FakeTable([[{"instance_id": "i-1"}]], throttled=reader.THROTTLED_ATTEMPTS + 1)
    slept: list[float] = []
    with pytest.raises(StoreUnreadable, match="ProvisionedThroughputExceeded"):
        make(table, slept).query("the seal chain")
    assert len(slept) == reader.THROTTLED_ATTEMPTS


def test_other_errors_fail_at_once():
    class Denied(FakeTable):
        def query(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Query")

    slept: list[float] = []
    with pytest.raises(StoreUnreadable, match="AccessDenied"):
        make(Denied([]), slept).query("x")
    assert slept == []


JSON_FORM = json.dumps({"conn_type": "aws", "login": "AKIA1", "password": "se/cret",
                        "extra": {"endpoint_url": "http://127.0.0.1:5000", "region_name": "eu-west-1",
                                  "aws_session_token": "tok"}})
URI_FORM = "aws://AKIA1:se%2Fcret@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A5000&region_name=eu-west-1" \
           "&aws_session_token=tok"
WANT = credentials.AwsAccess(access_key="AKIA1", secret_key="se/cret", session_token="tok", region="eu-west-1",
                             endpoint_url="http://127.0.0.1:5000")


@pytest.mark.parametrize("value", [JSON_FORM, URI_FORM])
def test_the_connection_is_read_in_both_forms_with_airflow_and_without(value, monkeypatch):
    assert credentials.access_from(value) == WANT
    monkeypatch.setattr(credentials, "connection_fields", credentials._parse)  # as without Airflow installed
    assert credentials.access_from(value) == WANT


def test_the_session_uses_the_connection_else_the_standard_chain():
    aws = credentials.Aws.from_env(env={credentials.ENV: JSON_FORM})
    assert aws.endpoint_url == "http://127.0.0.1:5000"
    assert aws.session.region_name == "eu-west-1"
    assert aws.session.get_credentials().access_key == "AKIA1"
    chain = credentials.Aws.from_env(region="ap-south-1", env={})
    assert chain.endpoint_url is None and chain.session.region_name == "ap-south-1"

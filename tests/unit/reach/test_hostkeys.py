"""Host-key policy (include/reach/hostkeys.py) over a fake DynamoDB client: each test is one way a key could slip by."""
from __future__ import annotations

import asyncssh
import pytest
from botocore.exceptions import ClientError

from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.reach.hostkeys import HostKeys, Pin, PinStore, parse_policy, trusts
from tests import factories

TABLE = "ev_host_keys"


def key_pair(kind: str = "ssh-ed25519") -> tuple[str, str]:
    key = asyncssh.generate_private_key(kind)
    return key.export_public_key("openssh").decode().strip(), key.get_fingerprint("sha256")


class FakeDynamo:
    """The client calls PinStore makes (as a boto3 resource's client: plain values), with DynamoDB's throttling
    and conditional-write answers."""

    def __init__(self, throttled_calls: int = 0, never_served: frozenset[str] = frozenset()) -> None:
        self.items: dict[str, dict] = {}
        self.throttled_calls, self.never_served = throttled_calls, never_served
        self.batch_gets = self.puts = self.transactions = 0
        self.refuse_transactions = ""  # a cancellation reason every action gets (e.g. "ThrottlingError")
        self.now = 0.0
        self.sleeps: list[float] = []
        self.meta = self  # PinStore takes a resource and uses resource.meta.client
        self.client = self

    # clock and sleep for PinStore: no wall clock in these tests
    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's names
        self.batch_gets += 1
        (table, request), = RequestItems.items()
        assert table == TABLE and request.get("ConsistentRead") is True
        served, left = [], []
        for key in request["Keys"]:
            iid = key["instance_id"]
            if self.batch_gets <= self.throttled_calls or iid in self.never_served:
                left.append(key)
            elif iid in self.items:
                served.append(self.items[iid])
        reply = {"Responses": {table: served}}
        if left:
            reply["UnprocessedKeys"] = {table: {"Keys": left, "ConsistentRead": True}}
        return reply

    def get_item(self, TableName, Key, ConsistentRead):  # noqa: N803
        assert ConsistentRead is True
        item = self.items.get(Key["instance_id"])
        return {"Item": item} if item else {}

    def put_item(self, TableName, Item, ConditionExpression=None, ExpressionAttributeValues=None):  # noqa: N803
        self.puts += 1
        current = self.items.get(Item["instance_id"])
        allowed = ConditionExpression is None or current is None or any(
            current["fingerprint"] == v for v in (ExpressionAttributeValues or {}).values())
        if not allowed:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "exists"}}, "PutItem")
        self.items[Item["instance_id"]] = Item

    def transact_write_items(self, TransactItems, ClientRequestToken):  # noqa: N803
        """All or nothing, as DynamoDB: a failed condition cancels the whole transaction, with one reason per
        action ("None" for the actions that would have passed)."""
        self.transactions += 1
        assert len(TransactItems) <= 100 and len(ClientRequestToken) <= 36
        reasons = []
        for action in TransactItems:
            put = action["Put"]
            assert put["TableName"] == TABLE and put["ConditionExpression"] == "attribute_not_exists(instance_id)"
            exists = put["Item"]["instance_id"] in self.items
            reasons.append({"Code": self.refuse_transactions or ("ConditionalCheckFailed" if exists else "None")})
        if any(r["Code"] != "None" for r in reasons):
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                               "CancellationReasons": reasons}, "TransactWriteItems")
        for action in TransactItems:
            self.items[action["Put"]["Item"]["instance_id"]] = action["Put"]["Item"]

    def put_pin(self, iid: str, key: str, fingerprint: str) -> None:  # "another worker"
        self.items[iid] = {"instance_id": iid, "host_key": key, "fingerprint": fingerprint}


def store_over(fake: FakeDynamo, **kw) -> PinStore:
    return PinStore(fake, "ev", sleep=fake.sleep, clock=fake.clock, **kw)


def host(iid: str) -> Host:
    return factories.host(iid, "127.42.6.9", account="123")


def session(iid: str, key: str, fingerprint: str) -> HostOutcome:
    """What the transport hands over after a good session."""
    return factories.outcome(iid, output=b"script output", host_key=key, host_key_fingerprint=fingerprint)


def test_throttled_load_is_retried_with_backoff_until_every_pin_is_read():
    fake = FakeDynamo(throttled_calls=12)  # today's loader gives up after 8 quick tries
    pins = {f"i-{n}": key_pair() for n in range(3)}
    for iid, (key, fp) in pins.items():
        fake.put_pin(iid, key, fp)
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    assert keys.prepare([*pins, "i-new"]) == {}
    assert {iid: keys.pin_for(iid).fingerprint for iid in pins} == {iid: fp for iid, (_, fp) in pins.items()}
    assert keys.pin_for("i-new") is None  # read and absent: a genuine first use
    assert len(fake.sleeps) == 12 and fake.sleeps[5] > fake.sleeps[0]  # it backed off between rounds


def test_pins_that_stay_unprocessed_make_their_hosts_error_and_never_first_use():
    key, fp = key_pair()
    fake = FakeDynamo(never_served=frozenset({"i-pinned", "i-unpinned"}))
    fake.put_pin("i-pinned", key, fp)
    fake.put_pin("i-ok", key, fp)
    keys = HostKeys("tofu", store_over(fake, load_budget_s=10), run_id="r")
    errors = keys.prepare(["i-pinned", "i-unpinned", "i-ok"])
    assert sorted(errors) == ["i-pinned", "i-unpinned"]
    assert all(d.startswith("host-key pin could not be read: ") for d in errors.values()), errors
    assert fake.now <= 10 and fake.batch_gets < 40  # bounded in time and count
    # Even a caller that connects anyway has no "first use": no key matches, nothing is pinned.
    other_key, other_fp = key_pair()
    assert keys.pin_for("i-unpinned") is not None
    assert not trusts("tofu", keys.pin_for("i-unpinned"), asyncssh.import_public_key(other_key))
    outcome = session("i-unpinned", other_key, other_fp)
    keys.settle(host("i-unpinned"), outcome)
    assert outcome.transport_status == Status.ERROR and outcome.output == b"" and fake.puts == 0


def test_lost_pin_race_to_another_key_is_mismatch_and_to_the_same_key_is_fine():
    fake = FakeDynamo()
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    assert keys.prepare(["i-race", "i-same"]) == {}
    seen_key, seen_fp = key_pair()
    other_key, other_fp = key_pair()
    fake.put_pin("i-race", other_key, other_fp)  # another worker won, with a different key
    fake.put_pin("i-same", seen_key, seen_fp)  # another worker won, with the key we saw too
    race, same = session("i-race", seen_key, seen_fp), session("i-same", seen_key, seen_fp)
    keys.settle(host("i-race"), race)
    keys.settle(host("i-same"), same)
    assert race.transport_status == Status.HOST_KEY_MISMATCH and race.output == b""
    assert other_fp in race.transport_detail and seen_fp in race.transport_detail
    assert fake.items["i-race"]["fingerprint"] == other_fp  # the first pin stands
    assert same.transport_status is None and same.output == b"script output"


def test_first_sight_is_pinned_synchronously():
    fake = FakeDynamo()
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    keys.prepare(["i-1"])
    key, fp = key_pair()
    outcome = session("i-1", key, fp)
    keys.settle(host("i-1"), outcome)
    assert outcome.transport_status is None and "first use" in outcome.host_key_note
    assert fake.items["i-1"]["fingerprint"] == fp and fake.items["i-1"]["address"] == "127.42.6.9"


def test_a_pin_that_cannot_be_written_is_not_a_verdict():
    class Refusing(FakeDynamo):
        def put_item(self, **kw):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "PutItem")

    keys = HostKeys("tofu", store_over(Refusing()), run_id="r")
    keys.prepare(["i-1"])
    outcome = session("i-1", *key_pair())
    keys.settle(host("i-1"), outcome)
    assert outcome.transport_status == Status.ERROR and "could not be written" in outcome.transport_detail


@pytest.mark.parametrize("policy", ["strict", "insecure"])
def test_strict_and_insecure_never_pin_and_ignore_accept_host_keys(policy, caplog):
    fake = FakeDynamo()
    key, fp = key_pair()
    fake.put_pin("i-1", *key_pair())
    keys = HostKeys(policy, store_over(fake), accept=["i-1"], run_id="r")
    assert keys.prepare(["i-1", "i-2"]) == {} and fake.batch_gets == 0
    for iid in ("i-1", "i-2"):
        outcome = session(iid, key, fp)
        keys.settle(host(iid), outcome)
        assert outcome.transport_status is None
    assert fake.puts == 0 and "i-2" not in fake.items  # nothing pinned, the listed host not re-pinned
    assert "accept_host_keys ignored" in caplog.text


def test_accept_host_keys_repins_under_tofu_and_keeps_the_old_fingerprint():
    fake = FakeDynamo()
    old_key, old_fp = key_pair()
    fake.put_pin("i-1", old_key, old_fp)
    fake.put_pin("i-2", old_key, old_fp)
    keys = HostKeys("tofu", store_over(fake), accept=["i-1"], run_id="run-7")
    keys.prepare(["i-1", "i-2"])
    assert keys.pin_for("i-1") is None and keys.pin_for("i-2").fingerprint == old_fp  # only the named one
    new_key, new_fp = key_pair("ssh-rsa")
    outcome = session("i-1", new_key, new_fp)
    keys.settle(host("i-1"), outcome)
    stored = fake.items["i-1"]
    assert (stored["fingerprint"], stored["previous_fingerprint"], stored["accepted_by_run"]) == \
        (new_fp, old_fp, "run-7")
    assert outcome.transport_status is None and old_fp in outcome.host_key_note


def test_a_pinned_key_accepts_no_other_key_of_any_type():
    key, fp = key_pair("ssh-ed25519")
    pin = Pin(key, fp)
    assert trusts("tofu", pin, asyncssh.import_public_key(key))
    for kind in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"):
        assert not trusts("tofu", pin, asyncssh.generate_private_key(kind).convert_to_public())
    # Every type is offered (pinned first), so a host that switched type still shows its key to compare.
    assert pin.algorithms[0] == "ssh-ed25519" and {"rsa-sha2-256", "ecdsa-sha2-nistp256"} <= set(pin.algorithms)
    rsa = Pin(*key_pair("ssh-rsa"))
    assert rsa.algorithms[0].startswith("rsa-sha2-") and "ssh-ed25519" in rsa.algorithms


def test_insecure_only_when_named():
    assert parse_policy(None) == parse_policy("") == parse_policy(" TOFU ") == "tofu"
    assert parse_policy("Insecure") == "insecure" and parse_policy("strict") == "strict"
    for near_miss in ("none", "off", "no", "false", "0", "disabled", "accept-new", "ca"):
        with pytest.raises(ValueError, match="host_key_policy"):
            parse_policy(near_miss)
    with pytest.raises(ValueError):
        HostKeys("none", None)


def _settle_all_in_groups(keys: HostKeys, sessions: dict[str, HostOutcome]) -> None:
    """What BatchRun.reach does: first sights through PinGroups, then settle with the group's answer."""
    import asyncio

    from include.reach.hostkeys import PinGroups

    async def run():
        groups = PinGroups(keys.store)

        async def one(iid: str, outcome: HostOutcome):
            first = keys.first_sight(host(iid), outcome)
            keys.settle(host(iid), outcome, await groups.pin(first) if first else None)

        await asyncio.gather(*(one(iid, outcome) for iid, outcome in sessions.items()))

    asyncio.run(run())


def test_first_sight_pins_go_in_transactions_of_25_and_a_lost_race_is_still_a_mismatch():
    """A first run pinned every host with its own PutItem (10,000 calls at 10,000 hosts). Here 30 first
    sights are two transactions; the one host another worker pinned first (another key) cancels its group,
    is HOST_KEY_MISMATCH as before, and the rest of that group is sent again."""
    fake = FakeDynamo()
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    ids = [f"i-{n:02d}" for n in range(30)]
    keys.prepare(ids)
    seen = {iid: key_pair() for iid in ids}
    other_key, other_fp = key_pair()
    fake.put_pin("i-07", other_key, other_fp)  # after prepare(): a race
    sessions = {iid: session(iid, *seen[iid]) for iid in ids}
    _settle_all_in_groups(keys, sessions)
    assert fake.puts == 0 and fake.transactions == 3  # 25 (cancelled by i-07), its 24 again, then 5
    assert sessions["i-07"].transport_status == Status.HOST_KEY_MISMATCH and sessions["i-07"].output == b""
    assert fake.items["i-07"]["fingerprint"] == other_fp
    for iid in ids:
        if iid != "i-07":
            assert sessions[iid].transport_status is None and "first use" in sessions[iid].host_key_note
            assert fake.items[iid]["fingerprint"] == seen[iid][1]


def test_a_throttled_pin_group_falls_back_to_one_conditional_put_a_host():
    fake = FakeDynamo()
    fake.refuse_transactions = "ThrottlingError"
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    ids = [f"i-{n}" for n in range(3)]
    keys.prepare(ids)
    sessions = {iid: session(iid, *key_pair()) for iid in ids}
    _settle_all_in_groups(keys, sessions)
    assert fake.transactions == 1 and fake.puts == 3
    assert all(o.transport_status is None and "first use" in o.host_key_note for o in sessions.values())


def test_a_pin_group_that_cannot_be_written_at_all_is_error_for_each_of_its_hosts():
    class Refusing(FakeDynamo):
        def put_item(self, **kw):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "PutItem")

    fake = Refusing()
    fake.refuse_transactions = "ThrottlingError"
    keys = HostKeys("tofu", store_over(fake), run_id="r")
    keys.prepare(["i-1", "i-2"])
    sessions = {iid: session(iid, *key_pair()) for iid in ("i-1", "i-2")}
    _settle_all_in_groups(keys, sessions)
    assert all(o.transport_status == Status.ERROR and "could not be written" in o.transport_detail
               for o in sessions.values())
    assert fake.items == {}

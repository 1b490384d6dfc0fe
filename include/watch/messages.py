"""A message on the events queue → the `WatchEvent`s it proves, and a `Rejected` for what it cannot (never raises).

Shapes read (CONTRACT "Security events and checks between runs"):
- EventBridge "EC2 Instance State-change Notification" (source aws.ec2), delivered to SQS as the event itself
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitoring-instance-state-changes.html): state `running`
  is a launch; any other state is counted and ignored.
- A CloudWatch Logs subscription payload as Lambda receives it, `{"awslogs": {"data": base64(gzip(json))}}`
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html), sent on by
  deploy/forwarder/handler.py with `"region"` added (without it: `default_region`). The decoded JSON holds
  messageType (CONTROL_MESSAGE: CloudWatch Logs checking the destination, dropped), owner (the account),
  logGroup, logStream, subscriptionFilters and logEvents [{id, timestamp (ms), message}]. Each log event that
  include/watch/tamper.classify calls tamper is one event, for the instance the STREAM NAME (else the group
  name) names by id — the record's text is never read for an id, so what a host writes can never name another
  host; a stream naming no id leaves instance_id "" for plan.fold to prove the owner.
- The silence sweep's own message (`SWEEP_SOURCE`, built by include/watch/sweep.silence_message).
- An SQS Message dict (`Body`, `MessageId`): read as its Body, with its MessageId.

Bounds: a body over MAX_BODY_CHARS, data decompressing past MAX_DECOMPRESSED (a gzip bomb) and log events past
MAX_LOG_EVENTS are rejected, never read.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from include.checks.parsers import INSTANCE_ID
from include.core.clock import iso, parse_moment
from include.settings.schema import INSTANCE_ID_PATTERN
from include.watch import tamper as tamper_mod
from include.watch.records import LAUNCH, SILENCE, TAMPER, Rejected, WatchEvent

EC2_SOURCE, EC2_DETAIL_TYPE = "aws.ec2", "EC2 Instance State-change Notification"
SWEEP_SOURCE, SWEEP_DETAIL_TYPE = "ec2-audit.sweep", "Audit stream silent"
# WatchEvent.source: which shape the event came in
SHAPE_EC2, SHAPE_LOGS, SHAPE_SWEEP, SHAPE_REPLAY = "ec2-state", "audit-log", "sweep", "replay"

MAX_BODY_CHARS = 2 * 1024 * 1024  # SQS bodies are at most 1 MiB; a replay gets some room, not unbounded
MAX_DECOMPRESSED = 8 * 1024 * 1024
MAX_LOG_EVENTS = 10_000  # PutLogEvents' own batch limit: a real delivery never holds more
RECORD_CAP = 1_000
EXCERPT = 200

ID_RE = re.compile(INSTANCE_ID_PATTERN)
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")


class _Bad(Exception):
    """Why a message (or part) cannot be read; becomes a Rejected."""


def excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else _dump(value)
    text = text.replace("\n", " ")
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, default=str)[: EXCERPT + 1]
    except (TypeError, ValueError):
        return repr(value)[: EXCERPT + 1]


def read(body: str | bytes | Mapping, *, default_region: str, message_id: str = "",
         ) -> tuple[list[WatchEvent], list[Rejected]]:
    """The events one message proves, and what of it was rejected (why, an excerpt). Never raises."""
    try:
        return _read(body, default_region=default_region, message_id=message_id)
    except _Bad as exc:
        return [], [Rejected(str(exc), excerpt(body), message_id)]
    except Exception as exc:  # noqa: BLE001 - a message must never fail the run; say what went wrong
        return [], [Rejected(f"unreadable: {type(exc).__name__}: {exc}"[:300], excerpt(body), message_id)]


def _read(body: Any, *, default_region: str, message_id: str) -> tuple[list[WatchEvent], list[Rejected]]:
    obj = _object(body)
    if "Body" in obj and ("MessageId" in obj or "ReceiptHandle" in obj):  # an SQS Message dict
        return read(obj["Body"], default_region=default_region,
                    message_id=str(obj.get("MessageId") or message_id))
    shape = SHAPE_REPLAY if message_id.startswith("replay-") else ""
    if "awslogs" in obj:
        return _logs(obj, default_region, message_id, shape or SHAPE_LOGS)
    source = obj.get("source")
    if source == EC2_SOURCE:
        return _ec2(obj, message_id, shape or SHAPE_EC2)
    if source == SWEEP_SOURCE:
        return _sweep(obj, message_id, shape or SHAPE_SWEEP)
    if "from_trigger" in obj or "message_batch" in obj or "payload" in obj:
        raise _Bad("asset event extra without a successful message batch")
    raise _Bad(f"foreign: source {str(source)[:60]}" if source else "foreign: no source")


def _object(body: Any) -> Mapping:
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Bad("not UTF-8") from exc
    if isinstance(body, str):
        if len(body) > MAX_BODY_CHARS:
            raise _Bad(f"body of {len(body)} characters, over {MAX_BODY_CHARS}")
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise _Bad("not JSON") from exc
    if not isinstance(body, Mapping):
        raise _Bad(f"JSON {type(body).__name__}, not an object")
    return body


def _text(obj: Mapping, key: str, what: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _Bad(f"missing field {what or key}")
    return value


def _matching(pattern: re.Pattern, what: str, value: Any) -> str:
    """`value` when it is a string the pattern matches, else the message is refused naming the field."""
    if not isinstance(value, str) or not pattern.match(value):
        raise _Bad(f"bad {what} {str(value)[:40]!r}")
    return value


def _region(value: Any) -> str:
    return _matching(REGION_RE, "region", value)


def _account(value: Any, what: str = "account") -> str:
    return _matching(ACCOUNT_RE, what, value)


def _instance(value: Any) -> str:
    return _matching(ID_RE, "instance id", value)


def _moment(value: Any) -> str:
    """EventBridge's `time` (ISO-8601) → our stored form."""
    if not isinstance(value, str):
        raise _Bad("missing field time")
    moment = parse_moment(value)
    if moment is None:
        raise _Bad(f"bad time {value[:40]!r}")
    return iso(moment)


def _ms(value: Any) -> str:
    """A log event's timestamp (epoch milliseconds) → our stored form."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 253402300800000:
        raise _Bad(f"bad timestamp {str(value)[:40]!r}")
    return iso(datetime.fromtimestamp(value / 1000, tz=timezone.utc))


def _ec2(obj: Mapping, message_id: str, shape: str) -> tuple[list[WatchEvent], list[Rejected]]:
    if obj.get("detail-type") != EC2_DETAIL_TYPE:
        raise _Bad(f"foreign: aws.ec2 detail-type {str(obj.get('detail-type'))[:60]!r}")
    detail = obj.get("detail")
    if not isinstance(detail, Mapping):
        raise _Bad("missing field detail")
    instance_id = _instance(detail.get("instance-id"))
    state = _text(detail, "state", "detail.state")
    region, account, at = _region(obj.get("region")), _account(obj.get("account")), _moment(obj.get("time"))
    if state != "running":
        return [], [Rejected(f"state {state[:30]}: not a launch", f"{instance_id} {state[:30]}", message_id,
                             ignored=True)]
    return [WatchEvent(trigger=LAUNCH, region=region, at=at, instance_id=instance_id, account=account,
                       record=f"EC2 Instance State-change Notification: {instance_id} running",
                       source=shape, message_id=message_id)], []


def _sweep(obj: Mapping, message_id: str, shape: str) -> tuple[list[WatchEvent], list[Rejected]]:
    if obj.get("detail-type") != SWEEP_DETAIL_TYPE:
        raise _Bad(f"foreign: sweep detail-type {str(obj.get('detail-type'))[:60]!r}")
    detail = obj.get("detail")
    if not isinstance(detail, Mapping):
        raise _Bad("missing field detail")
    instance_id = _instance(detail.get("instance-id"))
    group, stream = _text(detail, "log-group", "detail.log-group"), _text(detail, "log-stream", "detail.log-stream")
    account = obj.get("account") or ""
    if account:
        _account(account)
    last = detail.get("last-event") or "never"
    return [WatchEvent(trigger=SILENCE, region=_region(obj.get("region")), at=_moment(obj.get("time")),
                       instance_id=instance_id, account=account, log_group=group[:512], log_stream=stream[:512],
                       record=f"stream {group[:512]} {stream[:512]} silent since {str(last)[:40]}",
                       source=shape, message_id=message_id)], []


def decode_logs_data(data: Any) -> dict:
    """base64(gzip(JSON object)) → the object, bounded (MAX_DECOMPRESSED)."""
    if not isinstance(data, str) or not data:
        raise _Bad("missing field awslogs.data")
    if len(data) > MAX_BODY_CHARS:
        raise _Bad(f"awslogs.data of {len(data)} characters, over {MAX_BODY_CHARS}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad("awslogs.data: bad base64") from exc
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip only
    try:
        plain = inflater.decompress(raw, MAX_DECOMPRESSED + 1)
    except zlib.error as exc:
        raise _Bad("awslogs.data: bad gzip") from exc
    if len(plain) > MAX_DECOMPRESSED or inflater.unconsumed_tail:
        raise _Bad(f"awslogs.data: decompresses past {MAX_DECOMPRESSED} bytes")
    if not inflater.eof:
        raise _Bad("awslogs.data: bad gzip (truncated)")
    try:
        decoded = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Bad("awslogs.data: not JSON") from exc
    if not isinstance(decoded, dict):
        raise _Bad("awslogs.data: JSON not an object")
    return decoded


def named_instance(log_group: str, log_stream: str) -> str:
    """The instance id the stream name (else the group name) names, as one token; '' when it names none or
    several (the owner is then proven by plan.fold)."""
    for name in (log_stream, log_group):
        ids = set(INSTANCE_ID.findall(name))
        if len(ids) == 1:
            return ids.pop()
        if ids:
            return ""
    return ""


def _logs(obj: Mapping, default_region: str, message_id: str, shape: str,
          ) -> tuple[list[WatchEvent], list[Rejected]]:
    awslogs = obj.get("awslogs")
    if not isinstance(awslogs, Mapping):
        raise _Bad("awslogs not an object")
    region = _region(obj.get("region") or default_region)
    payload = decode_logs_data(awslogs.get("data"))
    kind = payload.get("messageType")
    if kind == "CONTROL_MESSAGE":
        return [], [Rejected("control message: dropped", excerpt(payload), message_id, ignored=True)]
    if kind != "DATA_MESSAGE":
        raise _Bad(f"awslogs: messageType {str(kind)[:40]!r}")
    account = _account(payload.get("owner"), "owner")
    group, stream = _text(payload, "logGroup"), _text(payload, "logStream")
    log_events = payload.get("logEvents")
    if not isinstance(log_events, list):
        raise _Bad("missing field logEvents")
    instance_id = named_instance(group, stream)
    events: list[WatchEvent] = []
    rejected: list[Rejected] = []
    if len(log_events) > MAX_LOG_EVENTS:
        rejected.append(Rejected(f"{len(log_events) - MAX_LOG_EVENTS} log events past the cap of {MAX_LOG_EVENTS} "
                                 f"not read ({group} {stream})", "", message_id))
    plain = 0
    for entry in log_events[:MAX_LOG_EVENTS]:
        try:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("message"), str):
                raise _Bad(f"log event without a message in {group[:200]} {stream[:200]}")
            at = _ms(entry.get("timestamp"))
        except _Bad as exc:
            rejected.append(Rejected(str(exc), excerpt(entry), message_id))
            continue
        message = entry["message"]
        kind = tamper_mod.classify(message)
        if not kind:
            plain += 1
            continue
        events.append(WatchEvent(trigger=TAMPER, region=region, at=at, instance_id=instance_id, account=account,
                                 tamper=kind, record=message[:RECORD_CAP], log_group=group, log_stream=stream,
                                 source=shape, message_id=message_id))
    if plain:
        rejected.append(Rejected(f"{plain} log events not tamper ({group[:200]} {stream[:200]})", "", message_id,
                                 ignored=True))
    return events, rejected


def bodies_from_asset_events(extras: Iterable[Mapping]) -> list[tuple[Any, str]]:
    """The (body, MessageId) of every SQS message in the asset events' extras, as the watch DAG's
    MessageQueueTrigger puts them: `{"from_trigger": True, "payload": {"status": "success", "message_batch":
    [SQS Message dicts]}}`. An extra of another shape is passed on whole, for read() to reject by name."""
    out: list[tuple[Any, str]] = []
    for extra in extras or ():
        payload = extra.get("payload") if isinstance(extra, Mapping) else None
        batch = payload.get("message_batch") if isinstance(payload, Mapping) else None
        if not isinstance(payload, Mapping) or payload.get("status") != "success" or not isinstance(batch, list):
            out.append((extra, ""))
            continue
        for message in batch:
            if isinstance(message, Mapping) and "Body" in message:
                out.append((message["Body"], str(message.get("MessageId") or "")))
            else:
                out.append((message, ""))
    return out


def bodies_from_conf(conf: Mapping | None) -> list[tuple[Any, str]]:
    """A manual replay's bodies, `{"events": [<body as an object or a JSON string>, ...]}` → (body,
    "replay-<n>"), n from 1. One body not in a list is read as the list of it."""
    events = (conf or {}).get("events") if isinstance(conf, Mapping) else None
    if events is None:
        return []
    if not isinstance(events, list):
        events = [events]
    return [(body, f"replay-{n}") for n, body in enumerate(events, start=1)]

"""CloudWatch Logs as AWS behaves, where moto differs.

Ingestion time: moto stamps lastIngestionTime with the wall clock of the write, so a stream seeded with an
event from 10 hours ago would still look fresh. Here ingestion follows the newest event's own timestamp, as it
does for a real agent that ships events as they happen; that lets the demo hold a genuinely stale stream.
FilterLogEvents reads a pattern of several quoted terms as AWS does (all must appear), where moto matches
nothing.
"""
from __future__ import annotations

from datetime import datetime, timezone


def ingestion_follows_events() -> None:
    from moto.logs import models

    original = models.LogStream.put_log_events

    def put_log_events(self, log_events):
        token = original(self, log_events)
        newest = max((e["timestamp"] for e in log_events), default=None)
        if newest is not None:
            moment = datetime.fromtimestamp(newest / 1000, tz=timezone.utc).replace(tzinfo=None)
            self.last_ingestion_time = min(self.last_ingestion_time, moment)
        return token

    models.LogStream.put_log_events = put_log_events


def filter_terms_as_aws() -> None:
    """FilterLogEvents: moto reads `"a" "b"` as one quoted phrase (the text between the outer quotes), which
    nothing matches. AWS reads a space-separated list of terms, quoted or not, that must all appear. Patterns
    with `?`, `-`, JSON or space-delimited selectors stay moto's."""
    import re

    from moto.logs import models, utils

    original = utils.EventMessageFilter
    term = re.compile(r'"([^"]*)"|(\S+)')

    class EventMessageFilter(original):
        def __init__(self, pattern: str):
            super().__init__(pattern)
            self.terms = None
            text = (pattern or "").strip()
            if '"' in text and not re.match(r"[{\[]", text):
                found = [q or bare for q, bare in term.findall(text)]
                if found and not any(t[:1] in "?-" for t in found if t):
                    self.terms = found

        def matches(self, message: str) -> bool:
            if self.terms is None:
                return super().matches(message)
            return all(t in message for t in self.terms)

    utils.EventMessageFilter = EventMessageFilter
    models.EventMessageFilter = EventMessageFilter

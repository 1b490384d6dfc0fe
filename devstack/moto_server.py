"""Run moto's HTTP server as the local AWS stand-in (EC2, DynamoDB, CloudWatch Logs).

One simulation tweak: moto stamps lastIngestionTime with the wall clock of the write, so a stream seeded
with an event from 10 hours ago would still look fresh. Here ingestion follows the newest event's own
timestamp, as it does for a real agent that ships events as they happen; that lets the demo hold a
genuinely stale stream. Nothing else in moto is changed.

    python -m devstack.moto_server -H 127.0.0.1 -p 5055
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone


def _ingestion_follows_events() -> None:
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


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    _ingestion_follows_events()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

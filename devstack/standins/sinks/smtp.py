"""A local SMTP server (aiosmtpd) that stores every message it receives as an .eml file.

    python -m devstack.standins.sinks.smtp --host 127.0.0.1 --port 8025 --maildir DIR [--ready-file F]
"""
from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

from devstack import procs


class _SaveToMaildir:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{next(self.counter):04d}.eml"
        tmp = self.maildir / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, self.maildir / name)  # readers never see a half-written message
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, host: str, port: int, maildir: str | Path) -> None:
        self.maildir = Path(maildir)
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.controller = Controller(_SaveToMaildir(self.maildir), hostname=host, port=port)

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[Path]:
        return sorted(self.maildir.glob("*.eml"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--ready-file")
    args = parser.parse_args(argv)
    sink = SmtpSink(args.host, args.port, args.maildir).start()
    procs.serve_until_signalled(sink.stop, args.ready_file)


if __name__ == "__main__":
    main()

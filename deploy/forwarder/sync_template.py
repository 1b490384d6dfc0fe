"""Copies deploy/forwarder/handler.py into deploy/event-sources.yaml's inline ZipFile (CloudFormation cannot read a
file; the inline code is at most 4,096 characters). Run after editing the handler: python deploy/forwarder/sync_template.py"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE.parent / "event-sources.yaml"
MARK = "        ZipFile: |\n"
INDENT = " " * 10


def render(template: str, handler: str) -> str:
    head, rest = template.split(MARK, 1)
    lines = rest.splitlines(keepends=True)
    n = 0
    while n < len(lines) and (not lines[n].strip() or lines[n].startswith(INDENT)):
        n += 1
    code = "".join(INDENT + line if line.strip() else "\n" for line in handler.splitlines(keepends=True))
    return head + MARK + code + "\n" + "".join(lines[n:])


if __name__ == "__main__":
    TEMPLATE.write_text(render(TEMPLATE.read_text(), (HERE / "handler.py").read_text()))

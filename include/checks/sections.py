"""Split the combined script's output back into one text per probe (pure functions).

Every marker carries the nonce sent with this host's script (probes.frame), so only the script itself can
open, close, cut or end a section: a config file the script cats cannot, whatever it contains. Lines are
split on "\\n" only (str.splitlines would also split on "\\r", U+2028 and friends, which a host can write).
A section that is repeated, cut by a per-probe cap, or open when the output ends is unusable: any check that
needs it is ERROR, never PASS.

Inside a section, real file markers are rewritten to the canonical `FILE_MARK <path>` form the parsers read,
and any host-written line that starts like a marker is neutralised first, so it can never be read as one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from include.checks.probes import MARK, NONCE_RE, end_mark, file_mark, section_mark

FILE_MARK = "@@ec2audit-file"  # canonical form, produced only by split_sections from a nonce-bearing marker
_ESCAPE = "\\"  # prefixed to host lines that look like markers


@dataclass
class ScriptOutput:
    sections: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # section → why it cannot be used
    complete: bool = False  # the end marker was seen exactly once
    truncated: bool = False  # the client stopped reading at its output cap

    @property
    def ambiguous(self) -> set[str]:
        return set(self.problems)

    def get(self, name: str) -> str | None:
        """The section's text, or None when it is missing, repeated or cut."""
        if name in self.problems:
            return None
        return self.sections.get(name)

    def why_missing(self, name: str) -> str:
        if name in self.problems:
            return self.problems[name]
        return "cut off by the output cap" if self.truncated else "missing"

    def usable(self) -> dict[str, str]:
        return {name: text for name, text in self.sections.items() if name not in self.problems}


def split_sections(text: str, nonce: str) -> ScriptOutput:
    if not NONCE_RE.fullmatch(nonce or ""):
        raise ValueError("split_sections needs the nonce the script was framed with")
    open_prefix, file_prefix = section_mark(nonce) + " ", file_mark(nonce) + " "
    end, cut = end_mark(nonce), f"{MARK}-{nonce}-cut"
    result = ScriptOutput()
    current: str | None = None
    lines: list[str] = []
    ends = 0

    def close() -> None:
        if current is None:
            return
        if current in result.sections:
            result.problems[current] = "repeated"
        else:
            result.sections[current] = "\n".join(lines).strip("\n")

    for line in text.split("\n"):
        if line.startswith(open_prefix):
            close()
            current, lines = line[len(open_prefix):], []
        elif line == end:
            close()
            current, lines = None, []
            ends += 1
        elif current is None:
            continue
        elif line == cut:
            result.problems.setdefault(current, "cut at its size cap on the host")
        elif line.startswith(file_prefix):
            lines.append(f"{FILE_MARK} {line[len(file_prefix):]}")
        else:
            lines.append(_ESCAPE + line if line.lstrip().startswith(MARK) else line)
    if current is not None:  # output ended inside a section: it may be partial
        close()
        result.problems.setdefault(current, "cut off by the output cap" if ends == 0 else "repeated")
    result.complete = ends == 1
    if ends > 1:
        result.problems.setdefault("end", "the end marker appeared more than once")
    return result


def split_files(section_text: str) -> list[tuple[str, str]]:
    """Split the cwagent_config section into (path, content) pairs."""
    files: list[tuple[str, list[str]]] = []
    for line in section_text.split("\n"):
        if line.startswith(FILE_MARK + " "):
            files.append((line[len(FILE_MARK) + 1:].strip(), []))
        elif files:
            files[-1][1].append(line)
    return [(path, "\n".join(body).strip()) for path, body in files]


def render_sections(sections: dict[str, str], nonce: str, *, complete: bool = True) -> str:
    """Inverse of split_sections: what the script prints. Used by the simulated fleet and tests."""
    out = []
    for name, body in sections.items():
        out.append(f"\n{section_mark(nonce)} {name}\n{render_file_marks(body, nonce)}\n")
    if complete:
        out.append(f"\n{end_mark(nonce)}\n")
    return "".join(out)


def render_file_marks(body: str, nonce: str) -> str:
    return "\n".join(f"{file_mark(nonce)} {ln[len(FILE_MARK) + 1:]}" if ln.startswith(FILE_MARK + " ") else ln
                     for ln in body.split("\n"))


def render_files(files: list[tuple[str, str]]) -> str:
    """Inverse of split_files (canonical marks; render_sections adds the nonce)."""
    return "".join(f"{FILE_MARK} {path}\n{content}\n" for path, content in files)

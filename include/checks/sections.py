"""Split the combined script's output back into one text per probe (pure functions).

A section that appears twice is marked ambiguous rather than trusted: a file the script cats (agent
config) could contain a line that imitates a section marker, and we must not let it overwrite a real
answer. Every expected section appears once legitimately, so any imitation produces a duplicate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from include.checks.probes import END_MARK, FILE_MARK, SECTION_MARK


@dataclass
class ScriptOutput:
    sections: dict[str, str] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)
    complete: bool = False  # the end marker was seen (output not cut short)
    truncated: bool = False  # the client stopped reading at its output cap

    def get(self, name: str) -> str | None:
        """The section's text, or None when it is missing or ambiguous."""
        if name in self.ambiguous:
            return None
        return self.sections.get(name)


def split_sections(text: str) -> ScriptOutput:
    result = ScriptOutput()
    current: str | None = None
    lines: list[str] = []

    def close() -> None:
        if current is None:
            return
        if current in result.sections:
            result.ambiguous.add(current)
        else:
            result.sections[current] = "\n".join(lines).strip("\n")

    for line in text.splitlines():
        if line.startswith(SECTION_MARK + " "):
            close()
            current, lines = line[len(SECTION_MARK) + 1 :].strip(), []
        elif line.strip() == END_MARK:
            close()
            current, lines = None, []
            result.complete = True
        elif current is not None:
            lines.append(line)
    if current is not None:  # cut short: keep what we have, but the last section may be partial
        close()
        result.ambiguous.add(current)
    return result


def split_files(section_text: str) -> list[tuple[str, str]]:
    """Split the cwagent_config section into (path, content) pairs."""
    files: list[tuple[str, list[str]]] = []
    for line in section_text.splitlines():
        if line.startswith(FILE_MARK + " "):
            files.append((line[len(FILE_MARK) + 1 :].strip(), []))
        elif files:
            files[-1][1].append(line)
    return [(path, "\n".join(body).strip()) for path, body in files]


def render_sections(sections: dict[str, str], *, complete: bool = True) -> str:
    """Inverse of split_sections: what the script prints. Used by the simulated fleet and tests."""
    out = []
    for name, body in sections.items():
        out.append(f"\n{SECTION_MARK} {name}\n{body}\n")
    if complete:
        out.append(f"\n{END_MARK}\n")
    return "".join(out)


def render_files(files: list[tuple[str, str]]) -> str:
    """Inverse of split_files."""
    return "".join(f"{FILE_MARK} {path}\n{content}\n" for path, content in files)

"""Every HTML page and email comes from the Jinja2 templates in include/report/templates/, loaded here.

Autoescape is on for .html templates: whatever evidence carries (tags, names, details, exception texts) is
escaped where it is written into the page, never by hand. Undefined names raise instead of printing nothing.
One layout (`base.html`) and one table macro (`macros.html`, with the inline styles mail clients need).
(This module is not called `templates.py` so that it does not share a name with the templates folder.)
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

FOLDER = Path(__file__).with_name("templates")


def pct(value) -> str:
    """A percentage as every page and subject line writes it: one decimal, or n/a when nothing is scorable."""
    return "n/a" if value is None else f"{value:.1f}%"


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(FOLDER), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      extensions=["jinja2.ext.do"])
    env.filters["pct"] = pct
    return env


def render(template: str, /, **context) -> str:
    return environment().get_template(template).render(**context)

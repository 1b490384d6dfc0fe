"""core/clock.parse_moment: the one reader of stored and received ISO-8601 timestamps."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from include.core.clock import parse_moment

UTC_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["2026-12-07T12:00:00Z", "2026-12-07T13:00:00+01:00", "2026-12-07T12:00:00",
                                  "2026-12-07T12:00:00.000Z"])
def test_every_form_reads_as_the_same_utc_moment(text):
    moment = parse_moment(text)
    assert moment == UTC_NOON and moment.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("junk", ["", "yesterday", "2026-13-07T12:00:00Z", None, 1796649273])
def test_what_is_not_a_moment_is_none(junk):
    assert parse_moment(junk) is None

"""Time as the wire formats write it: RFC 3339 UTC text, protobuf Timestamps. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def rfc3339(moment: datetime) -> str:
    """`2026-01-02T03:04:05.678901Z`; %-formatting is ~3.5x faster than strftime."""
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - measured fastest
        m.year,
        m.month,
        m.day,
        m.hour,
        m.minute,
        m.second,
        m.microsecond,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(stamp: Any, moment: datetime) -> None:
    """`stamp.FromDatetime(moment)` for an aware datetime, in exact integer arithmetic and
    without the time-tuple round trip (a google.protobuf.Timestamp, written in place)."""
    delta = moment - _EPOCH
    stamp.seconds = delta.days * 86400 + delta.seconds
    stamp.nanos = delta.microseconds * 1000

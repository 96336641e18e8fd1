"""Clock tools: the current time in an IANA time zone, and conversion between zones."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.errors import ToolError


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def describe(moment: datetime, zone_name: str) -> dict[str, Any]:
    """Return an aware datetime as the fields the clock tools answer with."""
    offset = moment.utcoffset() or timedelta(0)
    return {
        "timezone": zone_name,
        "datetime": moment.isoformat(timespec="seconds"),
        "utc_offset": _format_offset(offset),
        "abbreviation": moment.tzname(),
        "weekday": moment.strftime("%A"),
        "is_dst": bool(moment.dst()),
    }


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def get_current_time(timezone: str = "UTC") -> dict[str, Any]:
    """Get the current date and time in a time zone.

    Args:
        timezone: IANA time zone name, for example 'Europe/Paris' or 'America/New_York'.
    """
    zone = _zone(timezone)
    return describe(datetime.now(zone), zone.key)


def convert_time(time: str, from_timezone: str, to_timezone: str) -> dict[str, Any]:
    """Convert a local date and time from one time zone to another.

    Args:
        time: ISO 8601 local date and time such as '2026-03-29T14:30', or a time of day
            such as '14:30' (today in from_timezone).
        from_timezone: IANA time zone the time is expressed in.
        to_timezone: IANA time zone to convert to.
    """
    source_zone, target_zone = _zone(from_timezone), _zone(to_timezone)
    moment = _parse_local(time, source_zone)
    converted = moment.astimezone(target_zone)
    return {
        "source": describe(moment, source_zone.key),
        "target": describe(converted, target_zone.key),
    }


def _parse_local(text: str, zone: tzinfo) -> datetime:
    text = text.strip()
    try:
        if "T" in text or "-" in text[:5] or " " in text:
            parsed = datetime.fromisoformat(text)
        else:
            today = datetime.now(zone).date().isoformat()
            parsed = datetime.fromisoformat(f"{today}T{text}")
    except ValueError as exc:
        raise ToolError(
            f"cannot read time {text!r}; use ISO 8601 such as '2026-03-29T14:30' or '14:30'"
        ) from exc
    if parsed.tzinfo is not None:
        return parsed.astimezone(zone)
    return parsed.replace(tzinfo=zone)

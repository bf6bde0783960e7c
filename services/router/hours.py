"""Business hours: weekdays, time ranges, holidays and make-up working days, in one time zone."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from services.router.errors import SpecError, within
from services.router.rulefile import Hours

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class BusinessHours(msgspec.Struct, frozen=True, kw_only=True):
    zone: ZoneInfo
    weekdays: frozenset[int]
    """0 = Monday, as ``date.weekday()``."""
    ranges: tuple[tuple[int, int], ...]
    """Minutes since midnight, start included, end excluded."""
    holidays: frozenset[date]
    workdays: frozenset[date]

    def is_open(self, at: datetime) -> bool:
        """``at`` may be in any zone; it is read in this one."""
        local = at.astimezone(self.zone)
        day = local.date()
        if day in self.holidays:
            return False
        if local.weekday() not in self.weekdays and day not in self.workdays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.ranges)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(
            f"unknown time zone `{name}` (use an IANA name such as Asia/Shanghai)"
        ) from None


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _weekdays(items: list[str]) -> frozenset[int]:
    days: set[int] = set()
    for i, item in enumerate(items):
        for word in item.replace(",", " ").split():
            first, dash, last = word.lower().partition("-")
            if first not in WEEKDAYS or (dash and last not in WEEKDAYS):
                raise SpecError(
                    f"unknown weekday `{word}`: use mon…sun or a range like mon-fri", (i,)
                )
            a = WEEKDAYS.index(first)
            b = WEEKDAYS.index(last) if dash else a
            if b < a:
                raise SpecError(f"weekday range `{word}` runs backwards", (i,))
            days.update(range(a, b + 1))
    return frozenset(days)


def _ranges(items: list[str]) -> tuple[tuple[int, int], ...]:
    out = []
    for i, item in enumerate(items):
        m = _RANGE.match(item)
        if not m:
            raise SpecError(f"time range `{item}` is not HH:MM-HH:MM", (i,))
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise SpecError(f"time range `{item}` has an impossible time", (i,))
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise SpecError(
                f"time range `{item}` ends before it starts; split a night shift in two "
                "(22:00-24:00 and 00:00-06:00)",
                (i,),
            )
        out.append((start, end))
    return tuple(out)


def _dates(items: list[str]) -> frozenset[date]:
    out = set()
    for i, item in enumerate(items):
        try:
            out.add(date.fromisoformat(item.strip()))
        except ValueError:
            raise SpecError(f"`{item}` is not a date (YYYY-MM-DD)", (i,)) from None
    return frozenset(out)


def compile_hours(spec: Hours, default_zone: ZoneInfo) -> BusinessHours:
    """Raises :class:`SpecError` with the path of the mistake inside ``spec``."""

    with within("timezone"):
        tz = zone(spec.timezone) if spec.timezone else default_zone
    with within("weekdays"):
        weekdays = _weekdays(_as_list(spec.weekdays))
    with within("ranges"):
        ranges = _ranges(_as_list(spec.ranges))
    with within("holidays"):
        holidays = _dates(spec.holidays)
    with within("workdays"):
        workdays = _dates(spec.workdays)
    return BusinessHours(
        zone=tz, weekdays=weekdays, ranges=ranges, holidays=holidays, workdays=workdays
    )

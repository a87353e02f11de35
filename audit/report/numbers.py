"""How the report writes numbers, intervals, dates and statuses: the jinja filters (``FILTERS``).

Every formatter takes the bundle's raw value and returns text; None, NaN and infinity read "n/a", so a value
the audit could not compute is never shown as a number.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from audit.wording import plural

NBSP = "\u00a0"
NA = "n/a"
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None, NaN and infinity read "n/a"."""
    if value is None or not math.isfinite(value):
        return NA
    text = f"{value:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def fmt_signed(value: float | None, digits: int = 3) -> str:
    """A number with an explicit sign (+0.020, -0.078)."""
    text = fmt_num(value, digits)
    return text if text == NA or text.startswith("-") else "+" + text


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share in 0..1 as a percentage: 0.075 -> "7.5 %"."""
    text = fmt_num(None if value is None else 100 * value, digits)
    return text if text == NA else f"{text}{NBSP}%"


def fmt_signed_pct(value: float | None, digits: int = 1) -> str:
    """A relative change as a signed percentage: -0.075 -> "-7.5 %"."""
    text = fmt_pct(value, digits)
    return text if text == NA or text.startswith("-") else "+" + text


def fmt_ci(ci: list[float] | tuple[float, float] | None, digits: int = 3) -> str:
    """An interval as "[low, high]"."""
    if ci is None:
        return NA
    return f"[{fmt_num(ci[0], digits)}, {fmt_num(ci[1], digits)}]"


def fmt_pct_ci(ci: list[float] | tuple[float, float] | None, digits: int = 1) -> str:
    """An interval of shares as "[2.0 %, 19.4 %]"."""
    if ci is None:
        return NA
    return f"[{fmt_pct(ci[0], digits)}, {fmt_pct(ci[1], digits)}]"


def fmt_ratio(value: float | None) -> str:
    """A ratio with two decimals."""
    return fmt_num(value, 2)


def fmt_ratio_ci(ci: list[float] | tuple[float, float] | None) -> str:
    """An interval of ratios with two decimals."""
    return fmt_ci(ci, 2)


def fmt_int(value: int | None) -> str:
    """An integer with thousands separators."""
    return NA if value is None else f"{value:,}"


def fmt_parameters(value: int | None) -> str:
    """A parameter count in words: 134515008 -> "134.5 million"."""
    if value is None:
        return NA
    for size, word in ((1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if value >= size:
            return f"{value / size:.1f}{NBSP}{word}"
    return str(value)


def fmt_bytes(value: int | None) -> str:
    """A size in binary units: 106_000_000 -> "101.1 MiB"."""
    if value is None:
        return NA
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= size:
            return f"{value / size:.1f}{NBSP}{unit}"
    return f"{value}{NBSP}B"


def fmt_p(value: float | None) -> str:
    """A p-value with its relation, to follow "p": "= 0.032", "< 0.001", "n/a" (no discordant case to test)."""
    if value is None:
        return NA
    return f"<{NBSP}0.001" if value < 0.001 else f"={NBSP}{value:.3f}"


def fmt_seconds(value: float | None) -> str:
    """A duration: "25.6 s" or "3 min 12 s"."""
    if value is None:
        return NA
    if value < 60:
        return f"{value:.1f}{NBSP}s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}{NBSP}min {seconds}{NBSP}s"


def _parse_time(iso: str) -> datetime:
    """An ISO timestamp as a datetime, in UTC where it carries a zone."""
    moment = datetime.fromisoformat(iso)
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment


def fmt_date(iso: str | None) -> str:
    """An ISO timestamp as a date in words ("25 November 2026"), independent of the locale."""
    if not iso:
        return NA
    moment = _parse_time(iso)
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def fmt_timestamp(iso: str | None) -> str:
    """An ISO timestamp as "2026-11-25 21:26:35 UTC"."""
    if not iso:
        return NA
    moment = _parse_time(iso)
    zone = " UTC" if moment.tzinfo else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + zone


def fmt_value(value: float | None, unit: str) -> str:
    """A control value in its unit."""
    if unit == "share":
        return fmt_pct(value)
    if unit == "ratio":
        return fmt_ratio(value)
    return fmt_num(value)


def fmt_interval(ci: list[float] | None, unit: str) -> str:
    """A control interval in its unit."""
    if unit == "share":
        return fmt_pct_ci(ci)
    if unit == "ratio":
        return fmt_ratio_ci(ci)
    return fmt_ci(ci)


def fmt_threshold(threshold: float, direction: str, unit: str) -> str:
    """A threshold with the side that passes: "≤ 0.250", "≥ 0.80"."""
    return f"{'≤' if direction == 'max' else '≥'}{NBSP}{fmt_value(threshold, unit)}"


def status_class(status: str) -> str:
    """CSS class of a status badge."""
    return status.replace(" ", "-")


FILTERS = {
    "num": fmt_num,
    "signed": fmt_signed,
    "pct": fmt_pct,
    "signed_pct": fmt_signed_pct,
    "ci": fmt_ci,
    "pct_ci": fmt_pct_ci,
    "ratio": fmt_ratio,
    "ratio_ci": fmt_ratio_ci,
    "int": fmt_int,
    "parameters": fmt_parameters,
    "seconds": fmt_seconds,
    "bytes": fmt_bytes,
    "value": fmt_value,
    "interval": fmt_interval,
    "threshold": fmt_threshold,
    "p": fmt_p,
    "date": fmt_date,
    "timestamp": fmt_timestamp,
    "status_class": status_class,
    "count": plural,
}

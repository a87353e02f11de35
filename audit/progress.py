"""Progress on stderr for a long audit: which stage runs, how far it is, and how long it and the audit have left.

A line reads ``[stage 6/8 attribution] 12/47 method x case runs (3 from the cache) · 1:02 elapsed · ETA 3:10 ·
audit ETA at least 3:40 (2 more stages not timed yet)``: the stage is the 6th of the 8 this run executes
(``Stages``: stages that flags or the suite leave out are not counted), the bar has done 12 of its 47 units, 3 of
them read from the results cache; a finished bar reads ``47/47 ... · done in 4:12``.

The estimator. A bar's ETA is ``rate x units left``, less the time already spent on the unit in flight, where
``rate`` is the median seconds per unit over the last ``RATE_WINDOW`` computed units (``RecentRate``). A median of
nine ignores the one slow first unit (warm-up of kernels, allocator and caches) and follows a change of cost
within a few units; a batched advance of k units in t seconds counts as k units of t / k. Units read from the
results cache are near free: they are counted and shown, but left out of the rate, and the units left are
assumed to be computed (a resumed run meets its cached units first, so the ETA errs long rather than short). A bar with
no computed unit yet borrows the rate last measured by a bar of the same stage and unit (the prompt-format
variants score the same cases); otherwise its ETA is unknown.

The audit ETA is the bar's ETA plus the bars this stage still expects (``Stages.begin(parts=...)``) whose unit
count and rate are known. Stages not started yet are not guessed: a per-unit cost of one stage does not carry
over to another (scoring is one batched forward pass over a shared prefix per scenario; attribution dozens of
forward and backward passes per case), so the line says ``audit ETA at least 3:40 (2 more stages not timed
yet)`` rather than print a number that is wrong.

When lines appear. A bar prints nothing in its first second, so quick stages stay quiet. On a terminal its line
is redrawn in place (at most every 0.2 s as units finish, and every second from a background timer so the clock
keeps moving, with ``still on case 13 of 47, 0:45 on this case`` once a unit has run 10 s). Elsewhere (CI logs) a
line is written at most every ``LOG_EVERY_S`` as units finish, and the timer writes a heartbeat line when
``HEARTBEAT_S`` pass without one, so a unit that takes minutes still shows the run is alive. ``quiet`` prints
nothing and starts no timer.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import threading
import time
import weakref
from collections import deque
from contextvars import ContextVar
from typing import Callable, TextIO

from audit.wording import plural

QUIET_START_S = 1.0  # a bar says nothing during its first second
TTY_REDRAW_S = 0.2  # a terminal line is redrawn at most this often as units finish
LOG_EVERY_S = 10.0  # a log line at most this often as units finish (not a terminal)
HEARTBEAT_S = 30.0  # a log line at least this often while a bar runs (not a terminal)
TICK_S = 1.0  # how often the background timer looks
RATE_WINDOW = 9  # computed units the rate's median is taken over

_CURRENT: ContextVar["Stages | None"] = ContextVar("audit_progress_stages", default=None)


def clock_text(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from one hour on."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RecentRate:
    """Seconds per computed unit: the median over the last ``window`` computed units (None before the first)."""

    def __init__(self, window: int = RATE_WINDOW):
        self.samples: deque[float] = deque(maxlen=window)

    def add(self, seconds: float, units: int) -> None:
        if units > 0:
            self.samples.extend([max(seconds, 0.0) / units] * min(units, self.samples.maxlen))

    def value(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def cache_counter(cache) -> Callable[[], tuple[int, int]]:
    """(hits, misses) so far of a ``ResultsCache``, over all its stages (a disabled cache counts nothing)."""
    return lambda: (sum(c["hits"] for c in cache.stages.values()), sum(c["misses"] for c in cache.stages.values()))


class Stages:
    """The stages one audit run executes, in order: numbers them and adds up the audit ETA.

    Used as a context manager around the run: every ``Progress`` made inside, in any module, is labelled
    ``[stage k/n name · label]``, reports its rate here and counts as cached the units during which
    ``cache_counts`` (see ``cache_counter``) saw hits and no misses; leaving the block stops the timers of bars a
    failed stage left open.
    """

    def __init__(self, names: list[str], *, quiet: bool = False, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 cache_counts: Callable[[], tuple[int, int]] | None = None):
        self.names = list(names)
        self.quiet, self.stream, self.clock, self.cache_counts = quiet, stream, clock, cache_counts
        self.index = -1
        self.parts: list[tuple[int | None, str]] = []  # (units or None, unit) of the bars the stage will open
        self.part = -1  # the part the open bar is
        self.rates: dict[tuple[str | None, str], float] = {}  # (stage, unit) -> seconds per computed unit
        self._bars: weakref.WeakSet = weakref.WeakSet()
        self._token = None

    @property
    def name(self) -> str | None:
        return self.names[self.index] if self.index >= 0 else None

    def __enter__(self) -> "Stages":
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, *exc) -> bool:
        for bar in list(self._bars):
            bar.stop()
        _CURRENT.reset(self._token)
        return False

    def begin(self, name: str, what: str | None = None, parts: list[tuple[int | None, str]] | None = None) -> None:
        """Start stage ``name`` and say ``what`` it does; ``parts``: (units or None, unit) of the bars it will open."""
        self.index = self.names.index(name)
        self.parts, self.part = list(parts or []), -1
        if what:
            self.note(what)

    def label(self, text: str | None = None) -> str:
        if self.index < 0:
            return text or ""
        head = f"stage {self.index + 1}/{len(self.names)} {self.name}"
        return head if not text or text == self.name else f"{head} · {text}"

    def note(self, message: str) -> None:
        note(f"[{self.label()}] {message}", stream=self.stream, quiet=self.quiet)

    def attach(self, bar: "Progress") -> None:
        self._bars.add(bar)
        later = [i for i in range(self.part + 1, len(self.parts)) if self.parts[i][1] == bar.unit]
        if later:
            self.part = later[0]

    def audit_eta(self, eta: float | None) -> str:
        """The audit ETA given the open bar's ``eta`` (see the module docstring)."""
        if eta is None:
            return "audit ETA unknown"
        total, untimed_here = eta, False
        for units, unit in self.parts[self.part + 1:]:
            rate = self.rates.get((self.name, unit))
            if units is None or rate is None:
                untimed_here = True
            else:
                total += units * rate
        later = len(self.names) - self.index - 1
        if not untimed_here and not later:
            return f"audit ETA {clock_text(total)}"
        stages = plural(later, "more stage")
        what = " and ".join((["rest of this stage"] if untimed_here else []) + ([stages] if later else []))
        return f"audit ETA at least {clock_text(total)} ({what} not timed yet)"


class Progress:
    """One bar: ``total`` units of work, advanced as they finish (module docstring: what it prints and when).

    ``clock``, ``tty`` and ``heartbeat_s`` are for tests; ``background=False`` starts no timer (call ``tick``).
    """

    def __init__(self, stage: str, total: int, unit: str = "cases", stream: TextIO | None = None, quiet: bool = False,
                 *, clock: Callable[[], float] | None = None, tty: bool | None = None,
                 heartbeat_s: float = HEARTBEAT_S, tick_s: float = TICK_S, background: bool = True):
        self.stages = owner = _CURRENT.get()
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or (owner.stream if owner else None) or sys.stderr
        self.quiet = quiet or bool(owner and owner.quiet)
        self.clock = clock or (owner.clock if owner else time.monotonic)
        self.title = owner.label(stage) if owner else stage
        self.key = (owner.name if owner else None, unit)
        self.tty = tty if tty is not None else bool(hasattr(self.stream, "isatty") and self.stream.isatty())
        self.heartbeat_s = heartbeat_s
        self.done = self.cached = 0
        self.started = self.last_advance = self.clock()
        self.last_print: float | None = None
        self.rate = RecentRate()
        self._counts = owner.cache_counts() if owner and owner.cache_counts else None
        self._lock = threading.RLock()
        self._closed = self._final_printed = False
        self._width = 0
        self._stop = threading.Event()
        if owner:
            owner.attach(self)
        if not self.quiet and background:
            threading.Thread(target=_beat, args=(weakref.ref(self), self._stop, tick_s), daemon=True,
                             name=f"progress {stage}").start()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, *rest) -> bool:
        if kind is None:
            self.close()
        else:
            self.stop()
        return False

    def remaining(self, now: float) -> float | None:
        """Seconds left: rate x units left, less the time on the unit in flight; None while no rate is known."""
        left = self.total - self.done
        if left <= 0:
            return 0.0
        rate = self.rate.value()
        if rate is None and self.stages is not None:
            rate = self.stages.rates.get(self.key)
        if rate is None:
            return None
        return max(rate - (now - self.last_advance), 0.0) + rate * (left - 1)

    def line(self, now: float | None = None, *, still: bool = False, final: bool = False) -> str:
        now = self.clock() if now is None else now
        head = f"[{self.title}] {self.done}/{self.total} {self.unit}"
        if self.cached:
            head += f" ({self.cached} from the cache)"
        if final or self.done >= self.total:
            return f"{head} · done in {clock_text(now - self.started)}"
        parts = [head]
        if still:
            one = self.unit[:-1] if self.unit.endswith("s") else self.unit
            parts.append(f"still on {one} {self.done + 1} of {self.total}, "
                         f"{clock_text(now - self.last_advance)} on this {one.split()[-1]}")
        eta = self.remaining(now)
        parts.append(f"{clock_text(now - self.started)} elapsed")
        parts.append("ETA unknown" if eta is None else f"ETA {clock_text(eta)}")
        if self.stages is not None:
            parts.append(self.stages.audit_eta(eta))
        return " · ".join(parts)

    def advance(self, n: int = 1, cached: bool | int | None = None) -> None:
        """``n`` more units done; ``cached``: how many of them (True: all) came from the results cache. Left None,
        the count comes from the run's results cache: the units during which it had hits and no misses."""
        with self._lock:
            now = self.clock()
            derived = self._from_cache(n)
            hits = derived if cached is None else (n if cached is True else int(cached))
            hits = max(0, min(n, hits))
            if n - hits:
                self.rate.add(now - self.last_advance, n - hits)
                if self.stages is not None:
                    self.stages.rates[self.key] = self.rate.value()
            self.last_advance = now
            self.done += n
            self.cached += hits
            if self._closed or self.quiet or now - self.started < QUIET_START_S:
                return
            finished = self.done >= self.total
            every = TTY_REDRAW_S if self.tty else LOG_EVERY_S
            if finished or self.last_print is None or now - self.last_print >= every:
                self._emit(self.line(now), now)
                self._final_printed = finished

    def tick(self) -> None:
        """What the background timer calls: redraw on a terminal, a heartbeat line elsewhere when one is due."""
        with self._lock:
            if self._closed or self.quiet or self.done >= self.total:
                return
            now = self.clock()
            if now - self.started < QUIET_START_S:
                return
            if self.tty:
                self._emit(self.line(now, still=now - self.last_advance >= LOG_EVERY_S), now)
            elif now - (self.started if self.last_print is None else self.last_print) >= self.heartbeat_s:
                self._emit(self.line(now, still=True), now)

    def close(self) -> None:
        """The final line (unless the bar took under a second or already printed it); stops the timer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            now = self.clock()
            if self.quiet or now - self.started < QUIET_START_S:
                return
            if self.tty:
                self._emit(self.line(now, final=True), now, end=True)
            elif not self._final_printed:
                self._emit(self.line(now, final=True), now)

    def stop(self) -> None:
        """Stop the timer and print nothing more (a terminal line left open is ended)."""
        with self._lock:
            self._closed = True
            self._stop.set()
            if self.tty and self._width:
                self.stream.write("\n")
                self.stream.flush()
                self._width = 0

    def _from_cache(self, n: int) -> int:
        if self._counts is None:
            return 0
        hits, misses = self.stages.cache_counts()
        new_hits, new_misses = hits - self._counts[0], misses - self._counts[1]
        self._counts = (hits, misses)
        return min(new_hits, max(0, n - new_misses))

    def _emit(self, text: str, now: float, end: bool = False) -> None:
        if self.tty:
            text = text[: max(shutil.get_terminal_size().columns - 1, 20)]
            self.stream.write("\r" + text.ljust(self._width) + ("\n" if end else ""))
            self._width = 0 if end else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_print = now


def _beat(bar_ref, stop: threading.Event, every: float) -> None:
    """The background timer: ``tick`` every ``every`` seconds until the bar closes or is gone."""
    while not stop.wait(every):
        bar = bar_ref()
        if bar is None:
            return
        try:
            bar.tick()
        except Exception:  # a closed or broken stream must not outlive the bar or kill the run
            return
        finally:
            del bar


def note(message: str, stream: TextIO | None = None, quiet: bool = False) -> None:
    if not quiet:
        print(message, file=stream or sys.stderr, flush=True)

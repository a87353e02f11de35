"""Progress lines a user reads on stderr during a long audit (``audit.progress``).

Driven by a fake clock and a string stream, so no test sleeps through the times it checks: every line names
the stage and how many stages the run has, the ETA follows the recent rate rather than a slow first unit, a
heartbeat line appears while one unit runs longer than 30 s, cache hits are counted and kept out of the rate,
and ``quiet`` prints nothing.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import replace

import pytest

from audit.progress import Progress, Stages, cache_counter, clock_text
from audit.evidence.results_cache import ResultsCache

STAGES = ["load model", "scoring", "statistics", "internals", "attribution", "reasons", "report"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def __iadd__(self, seconds: float) -> "FakeClock":
        self.now += seconds
        return self


class Log(io.StringIO):
    """A non-terminal stream that remembers when (on the fake clock) each line was written."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.times = clock, []

    def write(self, text: str) -> int:
        self.times += [self.clock.now] * text.count("\n")
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(clock) -> Log:
    return Log(clock)


def bar(*args, **kwargs) -> Progress:
    return Progress(*args, background=False, **kwargs)


def test_every_line_says_which_of_the_runs_stages_is_running(clock, log):
    with Stages(STAGES, stream=log, clock=clock) as stages:
        stages.begin("load model", "loading model tiny (folder)")
        stages.begin("scoring", "scoring 4 cases")
        scoring = bar("scoring", 4)
        for _ in range(4):
            clock += 2
            scoring.advance()
        scoring.close()
        stages.begin("internals")
        probes = bar("probes", 2, unit="probe layers")
        clock += 12
        probes.advance()
    lines = log.lines()
    assert lines[0] == "[stage 1/7 load model] loading model tiny (folder)"
    assert lines[1] == "[stage 2/7 scoring] scoring 4 cases"
    assert [line.split("]")[0] for line in lines[2:4]] == ["[stage 2/7 scoring"] * 2
    assert lines[2].startswith("[stage 2/7 scoring] 1/4 cases · 0:02 elapsed · ETA 0:06")
    assert lines[3] == "[stage 2/7 scoring] 4/4 cases · done in 0:08"
    assert lines[4].startswith("[stage 4/7 internals · probes] 1/2 probe layers · 0:12 elapsed · ETA 0:12")


def test_the_stage_count_leaves_out_the_stages_this_run_skips():
    from audit.pipeline import stage_names
    from audit.suites import load_suite

    suite = load_suite("fair-lending")
    assert stage_names(suite, "baselines", True) == [
        "load model", "scoring", "statistics", "prompt formats", "internals", "attribution", "reasons", "report"]
    assert "prompt formats" not in stage_names(suite, "off", True)
    assert "report" not in stage_names(suite, "baselines", False)
    assert "reasons" not in stage_names(replace(suite, factors=()), "baselines", True)


def test_the_eta_follows_the_recent_rate_not_a_slow_first_unit(clock, log):
    with Stages(STAGES, stream=log, clock=clock) as stages:
        stages.begin("attribution")
        attribution = bar("attribution", 10, unit="method x case runs")
        clock += 100  # warm-up
        attribution.advance()
        for _ in range(3):
            clock += 10
            attribution.advance()
        line = attribution.line()
    # 6 runs left at 10 s each, not elapsed / done x left = 130 / 4 x 6 = 195 s
    assert "4/10 method x case runs · 2:10 elapsed · ETA 1:00 ·" in line
    assert line.endswith("audit ETA at least 1:00 (2 more stages not timed yet)")


def test_the_eta_counts_down_during_a_unit_and_is_unknown_before_any_rate(clock, log):
    with Stages(STAGES, stream=log, clock=clock) as stages:
        stages.begin("scoring")
        scoring = bar("scoring", 3)
        assert "ETA unknown · audit ETA unknown" in scoring.line()
        clock += 20
        scoring.advance()
        clock += 5
        assert "ETA 0:35" in scoring.line()  # 15 s left of the unit in flight, then one more of 20 s


def test_a_heartbeat_line_while_one_unit_takes_longer_than_30_s(clock, log):
    with Stages(STAGES, stream=log, clock=clock) as stages:
        stages.begin("attribution")
        attribution = bar("attribution", 3, unit="method x case runs")
        clock += 5
        attribution.advance()
        assert len(log.lines()) == 1
        clock += 29
        attribution.tick()
        assert len(log.lines()) == 1  # 29 s without a line: not yet
        clock += 2
        attribution.tick()
        assert len(log.lines()) == 2
        assert log.lines()[1].startswith("[stage 5/7 attribution] 1/3 method x case runs · still on method x case run "
                                         "2 of 3, 0:31 on this run · 0:36 elapsed · ETA ")
        clock += 10
        attribution.tick()
        assert len(log.lines()) == 2
        clock += 20
        attribution.tick()
        assert "still on method x case run 2 of 3, 1:01 on this run" in log.lines()[2]


def test_a_unit_that_never_finishes_is_reported_from_the_start(clock, log):
    slow = bar("trust checks", 2, unit="steps", stream=log, clock=clock)
    clock += 30
    slow.tick()
    assert log.lines() == ["[trust checks] 0/2 steps · still on step 1 of 2, 0:30 on this step · 0:30 elapsed · "
                           "ETA unknown"]


def test_the_background_timer_writes_the_heartbeat_and_stops_with_the_bar(clock, log):
    running = Progress("patching", 5, unit="pairs", stream=log, clock=clock, tick_s=0.01)
    clock += 31
    deadline = time.monotonic() + 5
    while "still on pair 1 of 5" not in log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "still on pair 1 of 5, 0:31 on this pair" in log.getvalue()
    running.close()
    written = log.getvalue()
    clock += 600
    time.sleep(0.1)
    assert log.getvalue() == written
    assert not [t for t in threading.enumerate() if t.name == "progress patching"]


def test_a_log_gets_a_line_at_most_every_10_s_and_at_least_every_30_s(clock, log):
    scoring = bar("scoring", 100, stream=log, clock=clock)
    for second in range(1, 101):
        clock += 1
        if second < 50 or second > 90:
            scoring.advance()
        else:
            scoring.tick()  # one unit takes 41 s: the heartbeat covers it
        if second == 90:
            scoring.advance()
    gaps = [b - a for a, b in zip(log.times, log.times[1:])]
    assert log.times[0] == 1001 and log.times[-1] == 1100
    assert all(gap >= 10 for gap in gaps[:-1]) and all(gap <= 30 for gap in gaps), gaps
    assert any("still on case 50 of 100" in line for line in log.lines())


def test_cache_hits_are_counted_and_left_out_of_the_rate(clock, log):
    with Stages(STAGES, stream=log, clock=clock) as stages:
        stages.begin("scoring")
        scoring = bar("scoring", 10)
        clock += 0.4
        scoring.advance(5, cached=True)
        clock += 10
        scoring.advance(1, cached=False)
        clock += 10
        scoring.advance()
        line = scoring.line()
        clock += 30
        scoring.advance(3, cached=1)
        scoring.close()
    assert "7/10 cases (5 from the cache) · 0:20 elapsed · ETA 0:30" in line  # 3 left at 10 s, the hits not in it
    assert log.lines()[-1] == "[stage 2/7 scoring] 10/10 cases (6 from the cache) · done in 0:50"


def test_the_run_s_results_cache_says_which_units_were_hits(tmp_path, clock, log):
    cache = ResultsCache(tmp_path)
    with Stages(STAGES, stream=log, clock=clock, cache_counts=cache_counter(cache)) as stages:
        stages.begin("scoring")
        scoring = bar("scoring", 6)
        cache.tally("scoring", hits=3)  # a scenario found in the cache, as audit.stages.scoring counts it
        clock += 0.1
        scoring.advance(3)
        cache.tally("scoring", misses=3)  # a scenario scored in two batches
        clock += 8
        scoring.advance(2)
        clock += 4
        scoring.advance(1)
        assert scoring.cached == 3
        assert scoring.rate.value() == 4.0


def test_the_audit_eta_adds_the_parts_of_this_stage_already_timed(clock, log):
    with Stages(STAGES[:3] + ["prompt formats"], stream=log, clock=clock) as stages:
        stages.begin("prompt formats", parts=[(4, "cases")] * 3)
        first = bar("as-written", 4)
        for _ in range(4):
            clock += 5
            first.advance()
        first.close()
        second = bar("no-prefill", 4)  # borrows the first variant's rate
        assert second.line().endswith("0:00 elapsed · ETA 0:20 · audit ETA 0:40")
        assert second.title == "stage 4/4 prompt formats · no-prefill"


def test_a_terminal_line_is_redrawn_in_place(clock):
    terminal = io.StringIO()
    scoring = bar("scoring", 3, stream=terminal, clock=clock, tty=True)
    for _ in range(3):
        clock += 2
        scoring.advance()
    assert "\n" not in terminal.getvalue() and terminal.getvalue().count("\r") == 3
    scoring.close()
    assert terminal.getvalue().endswith("\r[scoring] 3/3 cases · done in 0:06\n")


def test_a_stage_under_a_second_prints_nothing(clock, log):
    quick = bar("scoring", 2, stream=log, clock=clock)
    clock += 0.4
    quick.advance(2)
    quick.close()
    assert log.getvalue() == ""


def test_quiet_prints_nothing_and_starts_no_timer(clock, log):
    with Stages(STAGES, stream=log, clock=clock, quiet=True) as stages:
        stages.begin("scoring", "scoring 3 cases")
        silent = Progress("scoring", 3, tick_s=0.01)
        assert not [t for t in threading.enumerate() if t.name == "progress scoring"]
        for _ in range(3):
            clock += 40
            silent.tick()
            silent.advance()
        silent.close()
        stages.note("anything")
    loud_but_quiet = Progress("reasons", 1, stream=log, clock=clock, quiet=True, background=False)
    clock += 60
    loud_but_quiet.tick()
    loud_but_quiet.close()
    assert log.getvalue() == ""


def test_times_read_as_minutes_and_hours():
    assert [clock_text(s) for s in (0, 59.6, 190, 6120)] == ["0:00", "1:00", "3:10", "1:42:00"]


def test_a_real_audit_numbers_its_stages_and_shows_the_internals_bars(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    import audit
    import audit.progress
    from audit.pipeline import stage_names
    from audit.suites import load_suite

    monkeypatch.setattr(audit.progress, "QUIET_START_S", 0.0)  # every bar of the tiny model prints, every unit
    monkeypatch.setattr(audit.progress, "LOG_EVERY_S", 0.0)
    options = dict(model=str(tiny_llama_dir), limit=1, ig_steps=2, methods="ig", patching_pairs=1, render=False,
                   format_sensitivity="off", cache=False)
    audit.run(out=tmp_path / "loud", **options)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[stage ")]
    names = stage_names(load_suite("fair-lending"), "off", False)
    numbered = [line[len("[stage "):].split(" ", 1) for line in lines]
    assert {position.split("/")[1] for position, _ in numbered} == {str(len(names))}
    order = [int(position.split("/")[0]) for position, _ in numbered]
    assert order == sorted(order) and set(order) == set(range(1, len(names) + 1))
    assert all(rest.startswith(names[k - 1]) for k, (_, rest) in zip(order, numbered))
    for part in ("logit lens", "probes", "activation patching"):
        assert any(f"internals · {part}] " in line and " done in " in line for line in lines), part

    audit.run(out=tmp_path / "quiet", quiet=True, **options)
    said = capsys.readouterr().err
    assert "[stage" not in said and "ETA" not in said

"""funcnets.timing.interleaved: the round-robin timer every benchmark uses."""

import time

from funcnets.timing import interleaved


def test_interleaved_settles_each_function_for_settle_ms_before_timing_it():
    calls = []

    def make(name, ms):
        def fn():
            calls.append((name, time.perf_counter()))
            time.sleep(ms / 1e3)
        return fn

    out = interleaved({"a": make("a", 1), "b": make("b", 3)}, repeats=3, warmup=1, settle_ms=10)
    assert set(out) == {"a", "b"}
    assert out["a"] >= 1 and out["b"] >= 3  # medians of the timed calls, in ms
    # warm-up (a, b), then per repeat a's turn and b's turn: settling calls for >= 10 ms,
    # then the timed call, which starts 10 ms or more after the turn's first call
    turns = []
    for name, t in calls:
        if not turns or turns[-1][0] != name:
            turns.append((name, []))
        turns[-1][1].append(t)
    assert [name for name, _ in turns] == ["a", "b"] * 4
    for name, starts in turns[2:]:
        assert len(starts) >= 2 and (starts[-1] - starts[0]) * 1e3 >= 10, (name, starts)


def test_interleaved_settles_with_one_call_at_least():
    calls = []
    interleaved({"a": lambda: calls.append(1)}, repeats=2, warmup=0, settle_ms=0)
    assert len(calls) == 4  # one settling and one timed call per repeat

"""The event bridge coalesces step events (UI updates at most every ``interval``) but
forwards every event, in order, and posts other events at once."""

from __future__ import annotations

from mnemos.events import CheckpointEvent, EvalEvent, StepEvent
from mnemos_tui.bridge import EventBridge


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def step(n: int) -> StepEvent:
    return StepEvent(n, 1000, 3.0 - n * 1e-3, 1e-3, 1.0, 1000.0, n * 0.01, 10.0, n * 64)


def test_steps_are_coalesced_to_one_message_per_interval_and_none_is_lost():
    clock, posted = Clock(), []
    bridge = EventBridge(posted.append, interval=0.1, clock=clock)
    for n in range(1, 101):  # 100 steps, 10 ms apart: one second
        clock.now = n * 0.01
        bridge(step(n))
    bridge.flush()
    assert 9 <= len(posted) <= 12  # about ten per second, not a hundred
    steps = [e.step for message in posted for e in message.events]
    assert steps == list(range(1, 101))


def test_other_events_are_posted_at_once_with_what_is_pending():
    clock, posted = Clock(), []
    bridge = EventBridge(posted.append, interval=0.1, clock=clock)
    bridge(step(1))  # first event goes out at once
    clock.now = 0.01
    bridge(step(2))  # within the interval: held
    assert len(posted) == 1
    bridge(EvalEvent(2, 2.9, 3.0, 3.0, True, 0.02))
    assert len(posted) == 2
    assert [type(e).__name__ for e in posted[1].events] == ["StepEvent", "EvalEvent"]
    bridge(CheckpointEvent(2, "x", "latest"))
    assert len(posted) == 3 and bridge.posted == 3


def test_flush_with_nothing_pending_posts_nothing():
    posted = []
    bridge = EventBridge(posted.append)
    bridge.flush()
    assert posted == []

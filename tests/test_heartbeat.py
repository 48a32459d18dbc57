"""The worker's heartbeat, without a clock to wait on: it beats while a batch is held, never
while none is, and a failed beat does not stop it."""

from __future__ import annotations

import threading

from mlpoc.worker.heartbeat import Heartbeat

DEADLINE = 10.0  # seconds: a generous bound, never a duration the test relies on


def test_it_beats_while_a_batch_is_held_and_stops_when_it_is_released() -> None:
    beats: list[int] = []
    beat = threading.Event()

    def record() -> None:
        beats.append(len(beats))
        beat.set()

    heartbeat = Heartbeat(record, interval=0.01)
    heartbeat.start()
    assert not beat.wait(0.05)  # nothing held: no beat
    heartbeat.hold()
    for _ in range(3):
        assert beat.wait(DEADLINE)
        beat.clear()
    heartbeat.release()
    settled = len(beats)
    beat.clear()
    beat.wait(0.05)  # released: no more beats (one already in progress may finish)
    assert len(beats) <= settled + 1


def test_a_failed_beat_is_logged_and_the_next_one_still_comes() -> None:
    calls: list[str] = []
    second = threading.Event()

    def flaky() -> None:
        calls.append("beat")
        if len(calls) == 1:
            raise ConnectionError("SQS unreachable for a moment")
        second.set()

    heartbeat = Heartbeat(flaky, interval=0.01)
    heartbeat.start()
    heartbeat.hold()
    try:
        assert second.wait(DEADLINE)
    finally:
        heartbeat.release()
    assert len(calls) >= 2


def test_a_release_within_the_interval_skips_the_beat() -> None:
    beat = threading.Event()
    heartbeat = Heartbeat(beat.set, interval=3600)  # an hour: only a release can end the wait
    heartbeat.start()
    heartbeat.hold()
    heartbeat.release()
    assert not beat.wait(0.05)

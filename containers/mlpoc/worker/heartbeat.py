"""The worker's heartbeat: while a batch is held, call ``beat`` every ``interval`` seconds (it
extends the messages' visibility, the running job's lease and the task's scale-in protection).
It waits on events, not on a polling clock: a released batch stops it at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mlpoc.aws.log_events import Event

log = logging.getLogger("mlpoc.worker")


class Heartbeat:
    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self.beat = beat
        self.interval = interval
        self._holding = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def hold(self) -> None:
        """A batch is held from now on: beat every interval."""
        self._idle.clear()
        self._holding.set()

    def release(self) -> None:
        """The batch is done: stop beating (a beat in progress finishes)."""
        self._holding.clear()
        self._idle.set()

    def _run(self) -> None:
        while True:
            self._holding.wait()
            if self._idle.wait(self.interval):  # released within the interval: nothing to do
                continue
            try:
                self.beat()
            except Exception:  # a failed beat must not kill the thread; the next one retries
                log.exception(Event.HEARTBEAT_FAILED)

"""ECS task scale-in protection while a worker holds jobs.

On ECS the agent injects ``ECS_AGENT_URI``; a PUT to ``$ECS_AGENT_URI/task-protection/v1/state``
keeps service auto scaling (scale-in on an empty queue) and deployments from stopping a task in
the middle of a job. Anywhere else the variable is absent and this is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request

from mlpoc.aws.log_events import Event

log = logging.getLogger("mlpoc.worker")

PATH = "/task-protection/v1/state"


class TaskProtection:
    def __init__(
        self, agent_uri: str | None, *, expires_minutes: int = 60, timeout: float = 2.0
    ) -> None:
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.expires_minutes = expires_minutes
        self.timeout = timeout
        self.enabled = False
        self._since = 0.0

    @classmethod
    def from_env(cls) -> TaskProtection:
        return cls(os.environ.get("ECS_AGENT_URI"))

    def set(self, *, enabled: bool) -> None:
        if self.agent_uri is None or enabled == self.enabled:
            return
        if self._put(enabled):
            self.enabled = enabled
            self._since = time.monotonic()

    def renew(self) -> None:
        """Re-arm the protection before it expires under a very long job."""
        due = time.monotonic() - self._since > self.expires_minutes * 30
        if self.enabled and due and self._put(True):
            self._since = time.monotonic()

    def _put(self, enabled: bool) -> bool:
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.expires_minutes
        request = urllib.request.Request(  # noqa: S310 - the ECS agent's own http URI
            f"{self.agent_uri}{PATH}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            # losing protection only risks a redelivery, which the ledger absorbs
            log.warning(Event.PROTECTION_FAILED, extra={"error": str(error)})
            return False
        if "failure" in answer or "error" in answer:
            log.warning(Event.PROTECTION_REFUSED, extra={"answer": answer})
            return False
        log.info(Event.PROTECTION, extra={"enabled": enabled})
        return True

"""The embedded moto server of local mode (moto, with :mod:`mlpoc.local.motopatch` applied).

``python -m mlpoc.local.motoserver [PORT]`` serves one on 127.0.0.1 in its own process, for
tests that switch its access control on without touching the moto of their own process.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import urllib.request

from moto.server import ThreadedMotoServer

from mlpoc.local import motopatch
from mlpoc.local.safety import check_endpoint


def apply_patches() -> None:
    motopatch.apply()


def enforce_iam(endpoint: str, *, enabled: bool = True) -> None:
    """Turn moto's IAM access control on (every request signed by a known identity and allowed
    by its policies) or off, through the server's own endpoint."""
    request = urllib.request.Request(  # noqa: S310 - a checked loopback endpoint
        f"{check_endpoint(endpoint)}/moto-api/reset-auth",
        data=b"0" if enabled else b"inf",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


class EmbeddedMoto:
    """A moto server on a free port of 127.0.0.1, in this process (a thread)."""

    def __init__(self, port: int = 0) -> None:
        apply_patches()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""

    def start(self) -> str:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = check_endpoint(f"http://{host}:{port}")
        return self.endpoint

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Serve until SIGTERM/SIGINT; print the endpoint on the first line of stdout."""
    moto = EmbeddedMoto(int(argv[0]) if argv else 0)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sys.stdout.write(moto.start() + "\n")
    sys.stdout.flush()
    stop.wait()
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What keeps local mode local: its own credentials, a loopback endpoint, no profile, no config.

Every process and client of local mode gets its AWS settings from :func:`local_env`, and
:func:`check_env` vets the result before anything starts: an endpoint that is not a loopback
address, or an access key id shaped like a real one that the local moto did not issue, stops
local mode with a clear error. The user's own AWS variables (profile, keys, region, endpoint)
are never passed on.

The credentials are local mode's own: a fixed fake pair that creates the stack while moto's
access control is off, then the keys moto itself issues (an assumed role per process, an
operator user) once it is on. moto shapes those like AWS's (``ASIA…``, ``AKIA…``), so they are
accepted only when local mode says it issued them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3

from mlpoc.errors import LocalModeRefused

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mlpoc-local",
    "AWS_SECRET_ACCESS_KEY": "mlpoc-local",
    "AWS_SESSION_TOKEN": "mlpoc-local",
}
# IAM user keys start AKIA, temporary ones ASIA; both are 20 upper-case letters and digits.
REAL_KEY_ID = re.compile(r"^(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}$")
# Variables a child process may inherit from the shell; everything AWS_* is rebuilt.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
                  "COVERAGE_PROCESS_START", "SYSTEMROOT",
                  # a plugin module not packaged yet (mlpoc.plugins): workers import it too
                  "MLPOC_PLUGINS")  # fmt: skip


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def env(self) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


FAKE = Credentials(
    FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
    FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
)


def check_endpoint(endpoint: str) -> str:
    """The endpoint, if it is http(s) on a loopback address; LocalModeRefused otherwise."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise LocalModeRefused(
            f"local mode needs an http://127.0.0.1:<port> endpoint; got {endpoint!r}"
        )
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise LocalModeRefused(
                f"local mode only talks to a loopback endpoint (127.0.0.1, ::1, localhost); "
                f"{endpoint!r} could be a real AWS service. Nothing was started."
            )
    return endpoint


def check_env(env: Mapping[str, str], *, issued: Collection[str] = ()) -> None:
    """Refuse an environment that could reach a real account (``issued``: the access key ids
    the local moto issued, which look like real ones)."""
    check_endpoint(env.get("AWS_ENDPOINT_URL", ""))
    key_id = env.get("AWS_ACCESS_KEY_ID", "")
    if not key_id or (REAL_KEY_ID.match(key_id) and key_id not in issued):
        shown = key_id[:4] + "…" if key_id else "(none)"
        raise LocalModeRefused(
            "local mode runs only with its own fake credentials; the access key id "
            f"{shown} looks like a real one. Nothing was started."
        )
    if env.get("AWS_PROFILE"):
        raise LocalModeRefused("local mode does not use AWS profiles; unset AWS_PROFILE for it")
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        if env.get(name) != os.devnull:
            raise LocalModeRefused(
                f"local mode reads no AWS config files; {name} must be {os.devnull}"
            )


def local_env(
    endpoint: str,
    base: Mapping[str, str] | None = None,
    *,
    credentials: Credentials = FAKE,
) -> dict[str, str]:
    """The environment of a local-mode process: the shell's basics, local mode's own
    credentials, the endpoint."""
    base = os.environ if base is None else base
    env = {name: base[name] for name in PASSED_THROUGH if name in base}
    env.update(credentials.env())
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    check_env(env, issued=(credentials.access_key_id,))
    return env


def local_session(credentials: Credentials = FAKE) -> boto3.session.Session:
    """A boto3 session with local mode's credentials (pair it with a checked ``endpoint_url``)."""
    return boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=REGION,
    )

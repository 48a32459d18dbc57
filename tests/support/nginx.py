"""The bundle's proxy configuration, rendered and run with Debian's nginx the way the nginx image
runs it: ``containers/proxy/default.conf.template`` with its ``${MLPOC_*}`` variables taken from
the proxy's environment in ``containers/docker-compose.yml`` (the nginx image's envsubst step),
included in an ``http {}`` block like the image's own ``nginx.conf`` does."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mlpoc.paths import CHECKOUT

ROOT = CHECKOUT
NGINX = Path("/usr/sbin/nginx")
TEMPLATE = ROOT / "containers" / "proxy" / "default.conf.template"
COMPOSE = ROOT / "containers" / "docker-compose.yml"


def proxy_environment() -> dict[str, str]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return {k: str(v) for k, v in compose["services"]["proxy"]["environment"].items()}


def render(variables: dict[str, str]) -> str:
    """envsubst of the MLPOC_* variables only (NGINX_ENVSUBST_FILTER=^MLPOC_); every one the
    template names must be set, as the image's entrypoint would otherwise leave it raw."""
    text = TEMPLATE.read_text()
    missing = sorted(set(re.findall(r"\$\{(MLPOC_\w+)\}", text)) - set(variables))
    assert not missing, f"the proxy's environment lacks {missing}"
    return re.sub(r"\$\{(MLPOC_\w+)\}", lambda m: variables[m.group(1)], text)


def configure(workdir: Path, **overrides: str) -> Path:
    """A runnable nginx.conf under ``workdir``: the rendered server plus what the image's main
    configuration provides (events, mime types, paths), as the current user where possible."""
    logs = workdir / "logs"
    (logs / "healthd").mkdir(parents=True, exist_ok=True)
    variables = {**proxy_environment(), "MLPOC_PROXY_LOGS": str(logs), **overrides}
    (workdir / "default.conf").write_text(render(variables))
    user = "root" if os.geteuid() == 0 else ""
    for path in (workdir, logs, logs / "healthd"):
        path.chmod(0o777)  # nginx's workers write the logs
    config = workdir / "nginx.conf"
    config.write_text(
        (f"user {user};\n" if user else "")
        + f"pid {workdir}/nginx.pid;\n"
        + f"error_log {workdir}/error.log warn;\n"
        + "events { worker_connections 256; }\n"
        + "http {\n"
        + "  include /etc/nginx/mime.types;\n"
        + f"  client_body_temp_path {workdir}/body;\n"
        + f"  proxy_temp_path {workdir}/proxy;\n"
        + f"  include {workdir}/default.conf;\n"
        + "}\n"
    )
    return config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t``: the configuration parses and every directive is accepted."""
    return subprocess.run(
        [str(NGINX), "-t", "-p", str(config.parent), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(NGINX), "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

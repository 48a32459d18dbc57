"""The Beanstalk bundle's proxy: Debian's nginx with the bundle's configuration, in front of the
API running as a process (what the two containers do on the instance)."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import nginx
from tests.support.aws_stack import Stack
from tests.support.workers import wait_for

KEY = "proxy-test-key-" + "k" * 24
ORIGIN = "origin-" + "o" * 40
HEALTHD = re.compile(r'^\d+\.\d{3}"(?P<uri>[^"]*)"(?P<status>\d{3})"\d+\.\d{3}"[\d.-]*"[^"]*$')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_proxy_configuration_is_valid_nginx(tmp_path: Path) -> None:
    assert nginx.NGINX.exists(), "install Debian's nginx (make test does)"
    # the values containers/docker-compose.yml gives the proxy, logs under tmp_path
    checked = nginx.check(nginx.configure(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


@dataclass
class Proxied:
    url: str
    logs: Path


def request(
    url: str,
    path: str,
    *,
    origin: bool = True,
    key: bool = True,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    sent = {**(headers or {})}
    if origin:
        sent["X-Origin-Verify"] = ORIGIN
    if key:
        sent["X-API-Key"] = KEY
    call = urllib.request.Request(url + path, data=data, headers=sent)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(call, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def proxied(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    from tests.support.aws_stack import create_stack

    stack: Stack = create_stack(moto_endpoint)
    secret = boto3.client(
        "secretsmanager", region_name="us-east-1", endpoint_url=moto_endpoint
    ).create_secret(Name=f"origin-{stack.data_bucket}", SecretString=ORIGIN)["ARN"]
    api_port, proxy_port = free_port(), free_port()
    workdir = tmp_path_factory.mktemp("proxy")
    api = subprocess.Popen(
        [sys.executable, "-m", "mlpoc.api"],
        env={
            **os.environ,
            **stack.env(),
            "MLPOC_API_KEY": KEY,
            "MLPOC_ORIGIN_SECRET_ARN": secret,
            "MLPOC_API_PORT": str(api_port),
        },
        stdout=(workdir / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    config = nginx.configure(
        workdir,
        MLPOC_PROXY_PORT=str(proxy_port),
        MLPOC_API_UPSTREAM=f"127.0.0.1:{api_port}",
        MLPOC_PROXY_ACCESS_LOG=str(workdir / "logs" / "access.log"),
        MLPOC_PROXY_RATE="5",
        MLPOC_PROXY_BURST="10",
    )
    proxy = nginx.start(config)
    url = f"http://127.0.0.1:{proxy_port}"

    def up() -> bool:
        try:
            return request(url, "/healthz", origin=False, key=False)[0] == 200
        except urllib.error.URLError:  # nginx or the API not listening yet
            return False

    deadline = time.monotonic() + 60
    while not up():
        assert api.poll() is None, (workdir / "api.log").read_text()
        assert proxy.poll() is None, (workdir / "error.log").read_text()
        assert time.monotonic() < deadline, "the API did not come up behind nginx"
        time.sleep(0.2)
    yield Proxied(url=url, logs=workdir / "logs")
    proxy.terminate()
    api.terminate()
    proxy.wait(timeout=10)
    api.wait(timeout=10)


@pytest.mark.integration
def test_requests_from_cloudfront_pass_through_and_others_are_refused(proxied: Proxied) -> None:
    status, _, body = request(proxied.url, "/v1/jobs")
    assert status == 200
    assert json.loads(body) == {"jobs": []}
    # without CloudFront's header: refused, whatever the key
    status, _, body = request(proxied.url, "/v1/jobs", origin=False)
    assert status == 403
    assert json.loads(body)["error"]["code"] == "forbidden"
    # with the header but without the key: the API's 401
    assert request(proxied.url, "/v1/jobs", key=False)[0] == 401


@pytest.mark.integration
def test_pages_are_compressed_and_bodies_capped(proxied: Proxied) -> None:
    status, headers, body = request(proxied.url, "/ui/jobs", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers.get("Content-Encoding") == "gzip"
    assert b"<html" in gzip.decompress(body)
    status, _, body = request(proxied.url, "/v1/jobs", data=b"x" * (2 * 1024 * 1024))
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"


@pytest.mark.integration
def test_a_client_past_the_rate_gets_429_in_the_apis_error_shape(proxied: Proxied) -> None:
    # 5 a second with a burst of 10: twenty requests at once cannot all pass
    statuses = []
    for _ in range(20):
        status, _, body = request(
            proxied.url,
            "/healthz",
            origin=False,
            key=False,
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        statuses.append(status)
        if status == 429:
            assert json.loads(body)["error"]["code"] == "rate_limited"
    assert 429 in statuses
    assert statuses[0] == 200
    # another client (the last X-Forwarded-For entry, the one CloudFront appends) is not limited
    other = {"X-Forwarded-For": "203.0.113.1, 192.0.2.55"}
    assert request(proxied.url, "/healthz", origin=False, key=False, headers=other)[0] == 200


@pytest.mark.integration
def test_every_request_is_logged_and_the_health_agent_gets_its_lines(proxied: Proxied) -> None:
    request(proxied.url, "/v1/models")
    request(proxied.url, "/v1/models", origin=False)
    # the access log has one line per request (nginx writes it after the answer: wait for it)
    access = proxied.logs / "access.log"
    for status in ("200", "403"):
        wait_for(
            lambda status=status: f'"GET /v1/models HTTP/1.1" {status}' in access.read_text(),
            timeout=10,
            interval=0.05,
            what=f"the {status} line in the access log",
        )

    # Beanstalk's health agent reads healthd/application.log.<YYYY-MM-DD-HH>: its format
    def health_lines() -> list[dict[str, Any]]:
        return [
            m.groupdict()
            for health in (proxied.logs / "healthd").glob("application.log.*")
            for m in map(HEALTHD.match, health.read_text().splitlines())
            if m
        ]

    wanted = [{"uri": "/v1/models", "status": "200"}, {"uri": "/v1/models", "status": "403"}]
    wait_for(
        lambda: all(line in health_lines() for line in wanted),
        timeout=10,
        interval=0.05,
        what="both requests in the health agent's log",
    )
    names = [h.name for h in (proxied.logs / "healthd").glob("application.log.*")]
    assert names and all(
        re.fullmatch(r"application\.log\.\d{4}-\d{2}-\d{2}-\d{2}", n) for n in names
    )

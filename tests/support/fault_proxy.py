"""An HTTP proxy in front of the moto server that throttles a share of the requests.

It answers the way each service really throttles — DynamoDB with
ProvisionedThroughputExceededException, SQS with RequestThrottled, S3 with 503 SlowDown — and
forwards everything else untouched. A throttled request never reaches moto, exactly like a
real throttle, so a client that does not retry loses the call.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class FaultPlan:
    # throttle one request in `every` of each service: counted per service, so which services
    # are hit does not depend on how the workers' timed calls (heartbeats, polls) interleave
    every: int
    seen: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def should_fault(self, service: str) -> bool:
        with self.lock:
            self.seen[service] = self.seen.get(service, 0) + 1
            if self.seen[service] % self.every == 0:
                self.injected[service] = self.injected.get(service, 0) + 1
                return True
            return False


def _service(headers: http.client.HTTPMessage) -> str:
    target = headers.get("X-Amz-Target", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    return "s3"


def _throttle(service: str) -> tuple[int, dict[str, str], bytes]:
    if service == "dynamodb":
        body = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded.",
        }
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body).encode()
    if service == "sqs":
        body = {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Rate exceeded"}
        return (
            400,
            {
                "Content-Type": "application/x-amz-json-1.0",
                "x-amzn-query-error": "RequestThrottled;Sender",
            },
            json.dumps(body).encode(),
        )
    xml = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    return 503, {"Content-Type": "application/xml"}, xml


class FaultProxy:
    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        target = urlsplit(upstream)
        self.plan = plan
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service = _service(self.headers)
                if proxy.plan.should_fault(service):
                    status, headers, payload = _throttle(service)
                else:
                    connection = http.client.HTTPConnection(
                        target.hostname, target.port, timeout=60
                    )
                    headers_out = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    connection.request(self.command, self.path, body=body, headers=headers_out)
                    response = connection.getresponse()
                    payload = response.read()
                    status = response.status
                    headers = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() not in {"transfer-encoding", "connection", "content-length"}
                    }
                    connection.close()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

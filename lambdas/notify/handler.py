"""SNS (alarms, budget) → Slack. The webhook URL is read from Secrets Manager at run time.

With no secret configured (``MLPOC_SLACK_SECRET_ARN`` unset) the notification is only logged,
so alarms still reach the email subscription and the logs. The secret holds the webhook URL,
either as the whole string or as ``{"webhook_url": "https://hooks.slack.com/…"}``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpoc.aws import lambda_logs
from mlpoc.aws.log_events import MONITOR_SOURCE

logger = lambda_logs.logger("notify")

SLACK_PREFIX = "https://hooks.slack.com/"
CACHE_SECONDS = 300
_cache: dict[str, tuple[float, str]] = {}


def webhook_url(secret_arn: str, secretsmanager: Any | None = None) -> str:
    cached = _cache.get(secret_arn)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    client = secretsmanager or boto3.client("secretsmanager")
    raw = client.get_secret_value(SecretId=secret_arn)["SecretString"].strip()
    url = json.loads(raw).get("webhook_url", "") if raw.startswith("{") else raw
    if not url.startswith(SLACK_PREFIX):
        raise ValueError(
            f"the secret {secret_arn} must hold a Slack incoming-webhook URL starting with "
            f"{SLACK_PREFIX} (or JSON with webhook_url)"
        )
    _cache[secret_arn] = (time.monotonic(), url)
    return str(url)


def format_event(event: dict[str, Any]) -> str | None:
    """An EventBridge event the alerts topic receives, as one readable line (None: unknown)."""
    detail = event.get("detail") or {}
    kind = event.get("detail-type")
    if kind == "EC2 Spot Instance Interruption Warning":
        return (
            f":warning: *Spot interruption* in two minutes: instance "
            f"{detail.get('instance-id', '?')} in {event.get('region', '?')}. A GPU job on it is "
            "released (SIGTERM) and runs again on another instance."
        )
    if kind == "ECS Task State Change":
        exits = [c.get("exitCode") for c in detail.get("containers", [])]
        return (
            f":x: *Worker task stopped* ({detail.get('group', '?')}): "
            f"{detail.get('stoppedReason', 'no reason given')}; exit codes {exits}"
        )
    return None


def format_monitor(alert: dict[str, Any]) -> str:
    """A monitor job's alert: the model, each sentence on its own line, and where to look."""
    lines = "\n".join(f"• {said}" for said in alert.get("alerts", []))
    return (
        f":chart_with_downwards_trend: *{alert.get('model', '?')}* may not be good any more "
        f"(monitor job {alert.get('job_id', '?')}):\n{lines}\nThe models page shows each "
        f"drifting feature; `mlpoc monitor show {alert.get('model', '?')}` prints the report."
    )


def format_message(subject: str | None, message: str) -> str:
    """A CloudWatch alarm, an EventBridge event or a monitor alert (JSON) as readable text;
    anything else (budgets) as sent."""
    try:
        alarm = json.loads(message)
    except json.JSONDecodeError:
        alarm = None
    if isinstance(alarm, dict) and alarm.get("source") == MONITOR_SOURCE:
        return format_monitor(alarm)
    if isinstance(alarm, dict) and "detail-type" in alarm:
        line = format_event(alarm)
        if line is not None:
            return line
    if isinstance(alarm, dict) and "AlarmName" in alarm:
        state = alarm.get("NewStateValue", "?")
        icon = {"ALARM": ":rotating_light:", "OK": ":white_check_mark:"}.get(
            state, ":grey_question:"
        )
        return f"{icon} *{alarm['AlarmName']}* is {state}: {alarm.get('NewStateReason', '')}"
    return f"*{subject}*\n{message}" if subject else message


def post(url: str, text: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - https, checked against SLACK_PREFIX
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        if response.status >= 300:  # noqa: PLR2004
            raise RuntimeError(f"Slack answered {response.status}")


@logger.inject_lambda_context
@event_source(data_class=SNSEvent)
def handler(event: SNSEvent, context: LambdaContext) -> dict[str, int]:
    secret_arn = os.environ.get("MLPOC_SLACK_SECRET_ARN")
    sent = 0
    for record in event.records:
        text = format_message(record.sns.subject, record.sns.message)
        # what arrived, always (`mlpoc smoke` follows an alarm to this line)
        logger.info("notify.received", extra={"subject": record.sns.subject})
        if not secret_arn:
            logger.info("notify.no_webhook", extra={"text": text})
            continue
        post(webhook_url(secret_arn), text)  # an error here: SNS retries the invocation
        sent += 1
    return {"sent": sent}

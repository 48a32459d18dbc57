"""Synthesize the CDK app the way `cdk synth` does, in-process, once per test session."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from mlpoc.local.synth import load_context
from mlpoc.paths import CHECKOUT
from stacks.builder import Stacks, build
from stacks.share_stack import ShareStack

ROOT = CHECKOUT
# the `linked` app (tests/conftest.py): an ML account with a business account's share
LINKED_ML = "123456789012"
LINKED_READER = "111122223333"
LINKED_KEY_ARN = f"arn:aws:kms:eu-west-1:{LINKED_READER}:key/12345678-1234-1234-1234-123456789012"
LINKED_SOURCE = {"bucket": "biz-exchange", "prefix": "cleansed/", "key_arn": LINKED_KEY_ARN,
                 "account": LINKED_READER}  # fmt: skip
LINKED_SCHEDULES = [
    {"model": "digits", "expression": "rate(1 day)"},
    {"model": "churn", "expression": "cron(0 3 ? * MON *)", "promote": "never",
     "source": "s3://biz-exchange/cleansed/churn/"},
]  # fmt: skip


def cdk_json_context() -> dict[str, Any]:
    return load_context(ROOT)


def make_app(outdir: Path, *, bundling: bool = False, **overrides: Any) -> tuple[cdk.App, Stacks]:
    """A bare cdk.App does not read cdk.json: load its context, skip asset bundling (unless
    ``bundling``: the assets staged as `cdk synth` stages them, with the kit's local bundlers,
    such as the Beanstalk bundle the container tests run)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    context = {
        **cdk_json_context(),
        **{f"mlpoc:{k}": v for k, v in overrides.items()},
        **({} if bundling else {"aws:cdk:bundling-stacks": []}),
    }
    app = cdk.App(context=context, outdir=str(outdir))
    stacks = build(app)
    assert isinstance(stacks, Stacks), "the share stack has its own helper (share_app)"
    return app, stacks


class Synthesized:
    def __init__(self, outdir: Path, *, bundling: bool = False, **overrides: Any) -> None:
        self.app, self.stacks = make_app(outdir, bundling=bundling, **overrides)
        self.assembly = self.app.synth()
        self.outdir = outdir
        self.data = Template.from_stack(self.stacks.data)
        self.data_json: dict[str, Any] = self.data.to_json()
        self.service = Template.from_stack(self.stacks.service)
        self.service_json: dict[str, Any] = self.service.to_json()

    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


@functools.cache
def default_app() -> Synthesized:
    """The app with cdk.json's defaults (stage poc), synthesized once per test process: the
    `poc` fixture, and the data template every test stack is created from."""
    return Synthesized(Path(tempfile.mkdtemp(prefix="cdk-poc-")))


@dataclass
class SharedApp:
    outdir: Path
    stack: ShareStack
    template: Template
    json: dict[str, Any]


def share_app(outdir: Path, ml_account: str, **overrides: Any) -> SharedApp:
    """The share stack as the business account synthesizes it (``mlpoc:share.ml_account``)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    share = {**cdk_json_context()["mlpoc:share"], "ml_account": ml_account, **overrides}
    app = cdk.App(
        context={**cdk_json_context(), "mlpoc:share": share, "aws:cdk:bundling-stacks": []},
        outdir=str(outdir),
    )
    stack = build(app)
    assert isinstance(stack, ShareStack)
    app.synth()
    template = Template.from_stack(stack)
    return SharedApp(outdir=outdir, stack=stack, template=template, json=template.to_json())

"""Every change local mode makes to moto, in one module.

moto 5.2 checks IAM policies when its access control is on (local mode turns it on), but not
the way AWS does for every service this kit uses. Each :class:`Patch` below closes one gap, and
``tests/test_moto_patches.py`` checks two things for each: that the moto installed still has,
byte for byte, the code the patch replaces (``moto_source``: a sha256 of its source, "" where
moto has nothing there), so an upgrade that changes it fails a test instead of silently
changing what local mode enforces; and that the patched behaviour is the one AWS documents.

The gaps:

* **DynamoDB** is authorized against the resource ``*``, so a policy scoped to a table ARN (what
  ``grant_*`` writes) always fails. Patched: the table ARN (``…/index/<name>`` for a query or
  scan of an index); ``BatchWriteItem``/``BatchGetItem`` are checked on every table they touch,
  and ``TransactWriteItems``/``TransactGetItems`` item by item with the actions AWS checks for
  them (``PutItem``, ``UpdateItem``, ``DeleteItem``, ``ConditionCheckItem``, ``GetItem``).
* **DynamoDB across accounts**: moto finds a table named by its ARN only in the caller's own
  account and has no resource policies. Patched: a table ARN of another account is that
  account's table, and the call is allowed only if the table's resource policy (which local
  mode sets from the template) allows the caller's account (:func:`resource_policy_allows`).
* **Secrets Manager** is authorized against ``*`` too. Patched: the secret's ARN.
* **SNS** is authorized against ``*`` too, so ``grant_publish`` (scoped to the topic) always
  fails. Patched: the topic's ARN (``TopicArn``, or ``TargetArn`` for a publish).
* **SQS** ``GetQueueUrl`` (and ``CreateQueue``) are authorized against ``*``. Patched: the
  queue's ARN, from ``QueueName``. And moto asks for ``sqs:DeleteMessageBatch`` (and the other
  batch names), which IAM does not have: AWS authorizes a batch call with the single action's
  permission (``sqs:DeleteMessage``, ``sqs:SendMessage``, ``sqs:ChangeMessageVisibility``).
  Patched to ask for those.
* **Access denied** says only "Access Denied" (S3) or omits the resource, in an XML body that
  the JSON-protocol clients (DynamoDB, SQS, Secrets Manager) cannot read as AccessDenied.
  Patched: AWS's sentence ("User: … is not authorized to perform: … on resource: … because no
  identity-based policy allows the … action") in each service's own error shape, and every
  denial is recorded in :data:`DENIALS`, which local mode shows in ``mlpoc local status``.
* **DynamoDB isolation**: moto applies an update's actions to the stored item one by one, in
  place, and a transaction's items one after another, while its threaded server answers other
  requests meanwhile; a ``GetItem`` could see a job SUCCEEDED without its result. DynamoDB's
  reads return only committed values ("read-committed isolation"), and transactions are
  serializable with ``GetItem``. Patched: the server handles one DynamoDB request at a time
  (:data:`DYNAMODB_LOCK`; DynamoDB has no long polls, so nothing waits long behind it).
* **SQS performance**: ``is_message_valid_based_on_retention_period`` computed all queue
  attributes (walking every message) for each message, so one receive on a queue of n
  messages cost O(n²). Patched: it reads the one attribute it needs and decides the same way.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.core.responses import BaseResponse
from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.responses import DynamoHandler
from moto.iam.access_control import IAMRequest, IAMRequestBase, S3IAMRequest
from moto.s3.exceptions import S3AccessDeniedError
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sns.responses import SNSResponse
from moto.sqs.models import SQSBackend
from moto.sqs.responses import SQSResponse

# -- what was denied -------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    principal: str  # arn:aws:sts::<account>:assumed-role/<role>/<session>
    action: str  # dynamodb:BatchWriteItem
    resource: str
    at: float

    @property
    def role(self) -> str:
        """The role's name (local mode names roles after their logical ids in the template)."""
        match = re.search(r":assumed-role/([^/]+)/", self.principal)
        return match.group(1) if match else self.principal

    @property
    def session(self) -> str:
        return self.principal.rsplit("/", 1)[-1]

    def sentence(self) -> str:
        return (
            f"User: {self.principal} is not authorized to perform: {self.action} on resource: "
            f"{self.resource} because no identity-based policy allows the {self.action} action"
        )


DENIALS: list[Denial] = []
_DENIALS_LOCK = threading.Lock()


def _record(request: IAMRequestBase) -> Denial:
    return _remember(
        request._access_key.arn, request._action, getattr(request, "_mlpoc_resource", "*")
    )


def _remember(principal: str, action: str, resource: str) -> Denial:
    denial = Denial(principal=principal, action=action, resource=resource, at=time.time())
    with _DENIALS_LOCK:
        DENIALS.append(denial)
    return denial


# -- the replacements --------------------------------------------------------------------------


def _check_action_permitted(self: IAMRequestBase, resource: str) -> None:
    self._mlpoc_resource = resource  # type: ignore[attr-defined]  # for the denial's message
    ORIGINALS[(IAMRequestBase, "check_action_permitted")](self, resource)


# The error code each JSON-protocol service returns for a denied call (its API reference).
JSON_DENIED = {"dynamodb": "AccessDeniedException", "secretsmanager": "AccessDeniedException"}


def _raise_access_denied(self: IAMRequest) -> None:
    denial = _record(self)
    if self._service in JSON_DENIED:
        error = JsonRESTError(JSON_DENIED[self._service], denial.sentence())
        raise error
    if self._service == "sqs":
        error = JsonRESTError("AccessDenied", denial.sentence())
        error.code = 403
        raise error
    # query-protocol services (IAM, STS, …): moto's XML error, with the resource in the sentence
    raise AccessDeniedError(
        user_arn=denial.principal,
        action=f"{denial.action} on resource: {denial.resource} because no identity-based "
        f"policy allows the {denial.action} action",
    )


def _raise_s3_access_denied(self: S3IAMRequest) -> None:
    denial = _record(self)
    error = S3AccessDeniedError()
    error.message = denial.sentence()
    raise error


def _sqs_resource(self: SQSResponse) -> str:
    if self._get_action() in ("GetQueueUrl", "CreateQueue"):
        name = self._get_param("QueueName")
        account = self._get_param("QueueOwnerAWSAccountId") or self.current_account
        if name:
            return f"arn:aws:sqs:{self.region}:{account}:{name}"
    resource: str = ORIGINALS[(SQSResponse, "_determine_resource")](self)
    return resource


TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def dynamodb_authorizations(
    action: str, body: Mapping[str, Any], *, region: str, account: str
) -> list[tuple[str, str]]:
    """The (action, resource) pairs AWS authorizes for one DynamoDB request."""

    def arn(table: str, index: str | None = None) -> str:
        base = (
            table
            if table.startswith("arn:")
            else f"arn:aws:dynamodb:{region}:{account}:table/{table}"
        )
        return f"{base}/index/{index}" if index else base

    if action in ("BatchWriteItem", "BatchGetItem"):
        return [(action, arn(table)) for table in body.get("RequestItems", {})]
    if action == "TransactWriteItems":
        pairs = []
        for item in body.get("TransactItems", []):
            for kind, spec in item.items():
                pairs.append((TRANSACT_WRITE_ACTIONS[kind], arn(spec["TableName"])))
        return pairs
    if action == "TransactGetItems":
        return [
            ("GetItem", arn(item["Get"]["TableName"])) for item in body.get("TransactItems", [])
        ]
    table = body.get("TableName") or body.get("TableArn") or body.get("ResourceArn")
    return [(action, arn(str(table), body.get("IndexName")) if table else "*")]


@functools.cache
def _iam_request_for(action: str) -> type[IAMRequest]:
    """moto's IAMRequest, authorizing ``action`` instead of the operation's own name."""

    class _ItemRequest(IAMRequest):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, "action": action})

    return _ItemRequest


def _dynamodb_authorize(self: DynamoHandler, resource: str = "*") -> None:
    del resource  # derived from the request body instead
    pairs = dynamodb_authorizations(
        self._get_action(), self.body, region=self.region, account=self.current_account
    )
    for action, arn in pairs:
        self._authenticate_and_authorize_action(_iam_request_for(action), arn)
        owner = arn.split(":")[4] if arn.startswith("arn:") else self.current_account
        if owner != self.current_account:
            _authorize_across_accounts(action, arn, caller=self.current_account, owner=owner)


def _authorize_across_accounts(action: str, arn: str, *, caller: str, owner: str) -> None:
    """Another account's table: its resource policy must allow the caller (AWS also asks the
    caller's own policies, which moto checked above)."""
    table_arn = arn.split("/index/", maxsplit=1)[0]
    region = arn.split(":")[3]
    policy = dynamodb_backends[owner][region].resource_policies.get(table_arn)
    document = json.loads(policy.policy_doc) if policy is not None else {"Statement": []}
    if not resource_policy_allows(document, action=f"dynamodb:{action}", arn=arn, account=caller):
        denial = _remember(f"arn:aws:iam::{caller}:root", f"dynamodb:{action}", arn)
        raise JsonRESTError(
            "AccessDeniedException",
            f"User: {denial.principal} is not authorized to perform: {denial.action} on "
            f"resource: {arn} because no resource-based policy allows the {denial.action} action",
        )


def resource_policy_allows(
    document: Mapping[str, Any], *, action: str, arn: str, account: str
) -> bool:
    """Whether a table's resource policy lets ``account`` do ``action`` on ``arn``, as local
    mode can tell: principals by account (``*``, the id, or its root ARN), actions and
    resources with wildcards, and the one condition the kit writes
    (``StringEquals aws:PrincipalAccount``). Any other condition does not hold here, so local
    mode allows less than AWS, never more."""
    allowed = False
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not (
            _principal_is(statement.get("Principal"), account)
            and _any_matches(statement.get("Action", []), action)
            and _any_matches(statement.get("Resource", "*"), arn, resource=True)
            and _conditions_hold(statement.get("Condition", {}), account)
        ):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _principal_is(principal: Any, account: str) -> bool:
    if principal == "*":
        return True
    named = _listed(principal.get("AWS", [])) if isinstance(principal, dict) else []
    return any(p in ("*", account) or re.fullmatch(rf"arn:aws[\w-]*:iam::{account}:root", p)
               for p in named)  # fmt: skip


def _any_matches(patterns: Any, value: str, *, resource: bool = False) -> bool:
    for pattern in _listed(patterns):
        if fnmatch.fnmatchcase(value, pattern):
            return True
        # in a table's own policy, the table's ARN also covers its indexes
        if resource and fnmatch.fnmatchcase(value.split("/index/", maxsplit=1)[0], pattern):
            return True
    return False


def _conditions_hold(conditions: Mapping[str, Any], account: str) -> bool:
    for operator, tests in conditions.items():
        for key, wanted in tests.items():
            if (operator, key) != ("StringEquals", "aws:PrincipalAccount"):
                return False
            if account not in _listed(wanted):
                return False
    return True


def _get_table(self: DynamoDBBackend, table_name: str) -> Any:
    """A table named by the ARN of another account's table is that account's (moto looks only
    in the caller's); ``_dynamodb_authorize`` has checked the table's resource policy."""
    if table_name.startswith("arn:"):
        region, owner = table_name.split(":")[3:5]
        if owner != self.account_id:
            return dynamodb_backends[owner][region].get_table(table_name)
    return ORIGINALS[(DynamoDBBackend, "get_table")](self, table_name)


# SQS has no IAM actions of its own for the batch calls (SQS Developer Guide, batch actions).
SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs_authorize(self: SQSResponse, resource: str = "*") -> None:
    action = self._get_action()
    self._authenticate_and_authorize_action(
        _iam_request_for(SQS_BATCH_ACTIONS.get(action, action)), resource
    )


def _secret_resource(self: SecretsManagerResponse) -> str:
    secret_id = self._get_param("SecretId")
    if not secret_id:
        return "*"
    try:
        arn: str = self.backend.secrets[secret_id].arn
    except KeyError:
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"
    return arn


def _sns_resource(self: SNSResponse) -> str:
    arn = self._get_param("TopicArn") or self._get_param("TargetArn")
    return str(arn) if arn else "*"


DYNAMODB_LOCK = threading.Lock()


def _dynamodb_call_action(self: DynamoHandler) -> Any:
    with DYNAMODB_LOCK:
        return ORIGINALS[(DynamoHandler, "call_action")](self)


def _valid_for_retention(self: SQSBackend, queue_name: str, message: Any) -> bool:
    retention = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    target: type
    name: str
    replacement: Callable[..., Any]


PATCHES: tuple[Patch, ...] = (
    Patch(IAMRequestBase, "check_action_permitted", _check_action_permitted),
    Patch(IAMRequest, "_raise_access_denied", _raise_access_denied),
    Patch(S3IAMRequest, "_raise_access_denied", _raise_s3_access_denied),
    Patch(SQSResponse, "_determine_resource", _sqs_resource),
    Patch(SQSResponse, "_authenticate_and_authorize_normal_action", _sqs_authorize),
    Patch(DynamoHandler, "_authenticate_and_authorize_normal_action", _dynamodb_authorize),
    Patch(DynamoDBBackend, "get_table", _get_table),
    Patch(DynamoHandler, "call_action", _dynamodb_call_action),
    Patch(SecretsManagerResponse, "_determine_resource", _secret_resource),
    Patch(SNSResponse, "_determine_resource", _sns_resource),
    Patch(SQSBackend, "is_message_valid_based_on_retention_period", _valid_for_retention),
)
# What the patches replace or rely on, as moto 5.2.5 has it: "Class.attribute" -> sha256 of its
# source ("" where moto has nothing there, so the patch adds it). A moto upgrade that changes
# any of these fails tests/test_moto_patches.py: re-read the code, adjust the patch, re-pin.
MOTO_SOURCES: dict[str, str] = {
    "IAMRequestBase.check_action_permitted": (
        "c4cad2131aeeec99d9da35c654c8f33ef81ccb2051470eb8a1b3178f1ada1b24"
    ),
    "IAMRequest._raise_access_denied": (
        "8c1741bf743368e2846042cab621a494161d258dea0e8661659dc4401cc6b93a"
    ),
    "S3IAMRequest._raise_access_denied": (
        "98daa0c1dded7c789a8de44dcde88ca78073c4ada636656f62f19123a299a64f"
    ),
    "SQSResponse._determine_resource": (
        "2d296f32b0b00856b73bf472b12d7413acb8e52fdbcce7c3918d7542f38dfab6"
    ),
    "SQSResponse._authenticate_and_authorize_normal_action": (
        "eaa6fd7174850bcbac48e22c254b2b09b7117bd6a9e1d4e3425248615c47d065"
    ),
    "DynamoHandler._authenticate_and_authorize_normal_action": (
        "eaa6fd7174850bcbac48e22c254b2b09b7117bd6a9e1d4e3425248615c47d065"
    ),
    "DynamoDBBackend.get_table": (
        "a738146035fc206b81e0659a004dcc62ae70eb356ef7c5ab771ba68bdd2d7ab0"
    ),
    "DynamoHandler.call_action": (
        "ce5f57cf83cde3400fa73a201929d18af92aaba2bb301d4d74609a1467b8daaf"
    ),
    "SecretsManagerResponse._determine_resource": "",
    "SNSResponse._determine_resource": "",
    "SQSBackend.is_message_valid_based_on_retention_period": (
        "cca23b94a5f3af9d9c5af1c09ee5e615017bdf6bd032301cb321c06c7e595d4b"
    ),
    # relied on: how BaseResponse authorizes, and how the IAM request is built
    "BaseResponse.call_action": (
        "26076963fd17fd1a40be642032b5a8d90f159c19d01b80a5f0b0c839770ee0d6"
    ),
    "ActionAuthenticatorMixin._authenticate_and_authorize_action": (
        "f8cfc0296ca017faca1c0cd574290bac2729e96d75265f75ebf6c2c97c10af45"
    ),
    "IAMRequestBase.__init__": ("b606a83700ae8354cab640be29270be640866158b28387b651d5dc115344ee4e"),
}
RELIED_ON: tuple[tuple[type, str], ...] = (
    (BaseResponse, "call_action"),
    (ActionAuthenticatorMixin, "_authenticate_and_authorize_action"),
    (IAMRequestBase, "__init__"),
)
ORIGINALS: dict[tuple[type, str], Any] = {}
_LOCK = threading.Lock()


def _source_sha256(value: Any) -> str:
    if value is None:
        return ""
    return hashlib.sha256(inspect.getsource(value).encode()).hexdigest()


def moto_sources() -> dict[str, str]:
    """The current moto's sources at every pinned place (before this module's patches)."""
    found = {}
    for patch in PATCHES:
        key = (patch.target, patch.name)
        original = ORIGINALS[key] if key in ORIGINALS else getattr(patch.target, patch.name, None)
        found[f"{patch.target.__name__}.{patch.name}"] = _source_sha256(original)
    for target, name in RELIED_ON:
        found[f"{target.__name__}.{name}"] = _source_sha256(target.__dict__[name])
    return found


def apply() -> None:
    """Apply every patch once per process (idempotent)."""
    with _LOCK:
        for patch in PATCHES:
            key = (patch.target, patch.name)
            if key in ORIGINALS:
                continue
            ORIGINALS[key] = getattr(patch.target, patch.name, None)
            setattr(patch.target, patch.name, patch.replacement)

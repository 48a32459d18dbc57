"""Two accounts in one moto server, under local mode's IAM enforcement: the share stack created
in the business account from its synthesized template, the ML stacks configured with its
outputs, a train job reading the shared data as the train role, a job on any other bucket of
the business account refused, predictions read back from the business account, and a scheduled
retrain that trains on new data and then finds nothing new.

What moto does not enforce here, and only a real deploy proves: the share stack's bucket and
key policies (moto's CloudFormation skips bucket policies and KMS checks no key policy), the
conditions of every policy, and KMS for the predictions table (tests/test_accounts_template.py
pins those in the templates).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from mlpoc.aws.clients import Clients
from mlpoc.cli import ops, render
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.errors import JobRejected
from mlpoc.local.deploy import LocalDeployer, LocalStack
from mlpoc.local.processes import LOCAL_ACCOUNT
from mlpoc.local.safety import REGION, Credentials, local_session
from mlpoc.local.scheduler import LocalScheduler
from mlpoc.runtime.contract import parse_job
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from mlpoc.worker.train import handle_train
from tests.support.cdk_app import Synthesized, share_app
from tests.support.enforced import EnforcedStack, deploy_enforced, moto_process

pytestmark = pytest.mark.integration

BUSINESS = "111111111111"
OUTSIDER = "222222222222"
DENIED = {"AccessDenied", "AccessDeniedException"}


def assume_admin(endpoint: str, account: str) -> Credentials:
    """An admin role in another account id (moto gives it that account's own resources)."""
    sts = local_session().client("sts", endpoint_url=endpoint)
    found = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/admin", RoleSessionName=f"admin-{account}"
    )["Credentials"]
    credentials = Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])
    iam = local_session(credentials).client("iam", endpoint_url=endpoint)
    iam.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Statement": []}))
    iam.put_role_policy(
        RoleName="admin",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )  # fmt: skip
    return credentials


@dataclass
class TwoAccounts:
    ml: EnforcedStack
    share: LocalStack
    business: Credentials
    outsider: Credentials
    lake: str  # another bucket of the business account

    @property
    def exchange(self) -> str:
        return self.share.outputs["ExchangeBucketName"]

    def client(self, who: Credentials, service: str) -> Any:
        return local_session(who).client(service, endpoint_url=self.ml.endpoint)

    def clients(self, role: str) -> Clients:
        session: boto3.session.Session = self.ml.session(role)
        return Clients(
            s3=session.client("s3", endpoint_url=self.ml.endpoint),
            sqs=session.client("sqs", endpoint_url=self.ml.endpoint),
            dynamodb=session.client("dynamodb", endpoint_url=self.ml.endpoint),
        )

    def settings(self, role: str) -> Settings:
        """The worker's settings from its task definition's environment, as deployed."""
        return replace(Settings.from_env(role, self.ml.specs[role].env), wait_seconds=0)

    def run(self, role: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send one job (as the operator) and run it with an in-process worker of ``role``'s
        own identity; its ledger record."""
        settings = self.settings(role)
        self.ml.client("operator", "sqs").send_message(
            QueueUrl=settings.queue_url, MessageBody=json.dumps({"schema": 1, **message})
        )
        return self.work(role, message["job_id"])

    def work(self, role: str, job_id: str) -> dict[str, Any]:
        settings, clients = self.settings(role), self.clients(role)
        handler = handle_train if role == "train" else PredictHandler(settings, clients)
        Worker(settings=settings, clients=clients, handler=handler).process_batch()
        operator = self.ml.client("operator", "dynamodb")
        record = Ledger(operator, self.ml.outputs["JobsTableName"]).get(job_id)
        assert record is not None, job_id
        return record


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoAccounts]:
    with moto_process(covered=False) as endpoint:
        business, outsider = assume_admin(endpoint, BUSINESS), assume_admin(endpoint, OUTSIDER)
        # GIVEN the share stack created in the business account from its synthesized template
        share_template = share_app(tmp_path_factory.mktemp("cdk-share"), LOCAL_ACCOUNT).json
        share = LocalDeployer(endpoint, business).create("mlpoc-share", share_template)
        s3 = local_session(business).client("s3", endpoint_url=endpoint)
        exchange = share.outputs["ExchangeBucketName"]
        s3.put_object(Bucket=exchange, Key="cleansed/digits/a.csv",
                      Body=digits.training_csv(slice(0, 600)).encode())  # fmt: skip
        s3.put_object(Bucket=exchange, Key="cleansed/digits/score.csv",
                      Body=digits.prediction_csv(slice(1500, 1550)).encode())  # fmt: skip
        s3.put_object(Bucket=exchange, Key="private/a.csv", Body=b"a,label\n1,x\n")
        lake = f"business-lake-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=lake)
        s3.put_object(Bucket=lake, Key="cleansed/digits/a.csv",
                      Body=digits.training_csv(slice(0, 600)).encode())  # fmt: skip
        # AND the ML stacks configured with its outputs (what the README says to paste)
        source = json.loads(share.outputs["MlpocSource"])
        app = Synthesized(
            tmp_path_factory.mktemp("cdk-ml"),
            sources=[source],
            result_readers=[BUSINESS],
            schedules=[{"model": "digits", "expression": "rate(1 day)",
                        "source": f"s3://{exchange}/cleansed/digits/"}],
        )  # fmt: skip
        ml = deploy_enforced(endpoint, app)
        yield TwoAccounts(ml=ml, share=share, business=business, outsider=outsider, lake=lake)


def refused(call: Any) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] in DENIED
    return False


def test_the_share_stack_comes_from_its_template_and_says_what_moto_skipped(
    accounts: TwoAccounts,
) -> None:
    assert accounts.share.outputs["MlpocSource"].startswith('{"bucket":"')
    assert json.loads(accounts.share.outputs["MlpocSource"])["account"] == BUSINESS
    skipped = {r.type for r in accounts.share.left_out}
    assert "AWS::S3::BucketPolicy" in skipped  # enforced only on AWS (template tests pin it)


def test_a_train_job_reads_the_shared_dataset_as_the_train_role(accounts: TwoAccounts) -> None:
    dataset = f"s3://{accounts.exchange}/cleansed/digits/a.csv"
    record = accounts.run(
        "train",
        {"job_id": "shared-train", "type": "train", "model": "shared", "dataset": dataset},
    )
    assert record["status"] == "SUCCEEDED", record
    assert record["result"]["model_version"] == 1


def test_any_other_bucket_or_prefix_of_the_business_account_is_refused(
    accounts: TwoAccounts,
) -> None:
    settings = accounts.settings("train")
    elsewhere = {"schema": 1, "job_id": "lake", "type": "train", "model": "shared",
                 "dataset": f"s3://{accounts.lake}/cleansed/digits/a.csv"}  # fmt: skip
    # the contract refuses it, naming the folders that may be read
    with pytest.raises(JobRejected, match="read only from the folders in mlpoc:sources"):
        parse_job(json.dumps(elsewhere), data_bucket=settings.data_bucket,
                  sources=settings.sources)  # fmt: skip
    # AND the worker records the refusal without reading anything
    record = accounts.run("train", elsewhere)
    assert record["status"] == "FAILED" and "mlpoc:sources" in record["reason"]
    # AND IAM refuses the train role the other bucket, and the exchange bucket's other prefixes
    s3 = accounts.clients("train").s3
    assert refused(lambda: s3.get_object(Bucket=accounts.lake, Key="cleansed/digits/a.csv"))
    assert refused(lambda: s3.get_object(Bucket=accounts.exchange, Key="private/a.csv"))
    assert refused(lambda: s3.list_objects_v2(Bucket=accounts.lake))


def test_the_business_account_reads_the_predictions_and_nobody_else_does(
    accounts: TwoAccounts,
) -> None:
    # GIVEN predictions for a shared set, made by the predict role
    dataset = f"s3://{accounts.exchange}/cleansed/digits/a.csv"
    trained = accounts.run(
        "train", {"job_id": "readers-train", "type": "train", "model": "readers",
                  "dataset": dataset, "params": {"promote": "always"}},
    )  # fmt: skip
    assert trained["status"] == "SUCCEEDED", trained
    scored = accounts.run(
        "predict", {"job_id": "readers-predict", "type": "predict", "model": "readers",
                    "dataset": f"s3://{accounts.exchange}/cleansed/digits/score.csv"},
    )  # fmt: skip
    assert scored["status"] == "SUCCEEDED", scored
    table = accounts.ml.client("operator", "dynamodb").describe_table(
        TableName=accounts.ml.outputs["PredictionsTableName"]
    )["Table"]["TableArn"]
    assert "PredictionsTable: resource policy" in " ".join(accounts.ml.wired)
    key = {"model": {"S": "readers"}, "item_id": {"S": "digit-1500"}}
    # WHEN the business account reads by the table's ARN (boto3 only, as the README shows)
    reader = accounts.client(accounts.business, "dynamodb")
    item = reader.get_item(TableName=table, Key=key)["Item"]
    # THEN it gets the prediction, and can query the model's predictions
    assert item["label"]["S"] in {str(d) for d in range(10)}
    found = reader.query(
        TableName=table,
        KeyConditionExpression="#m = :m",
        ExpressionAttributeNames={"#m": "model"},
        ExpressionAttributeValues={":m": {"S": "readers"}},
    )["Items"]
    assert len(found) == 50
    # AND it may not write, and an account that is not a reader may not read
    assert refused(lambda: reader.put_item(TableName=table, Item={**key, "label": {"S": "x"}}))
    outsider = accounts.client(accounts.outsider, "dynamodb")
    assert refused(lambda: outsider.get_item(TableName=table, Key=key))


def test_a_scheduled_run_trains_on_new_data_then_finds_nothing_new(accounts: TwoAccounts) -> None:
    # GIVEN the template's schedule, run by local mode's scheduler as the schedules' role
    (schedule,) = [s for s in accounts.ml.schedules if json.loads(s.input)["type"] == "train"]
    sqs = accounts.ml.client("scheduler", "sqs")
    sent: list[str] = []

    def send(_: Any, body: str) -> None:
        sqs.send_message(QueueUrl=schedule.queue_url(accounts.ml.endpoint), MessageBody=body)
        sent.append(json.loads(body)["job_id"])

    start = time.time()
    scheduler = LocalScheduler([schedule], send=send, started=start)
    assert scheduler.tick(start + 60) == []  # rate(1 day): not due yet
    # AND new data in the shared folder
    local_session(accounts.business).client("s3", endpoint_url=accounts.ml.endpoint).put_object(
        Bucket=accounts.exchange, Key="cleansed/digits/b.csv",
        Body=digits.training_csv(slice(600, 900)).encode(),
    )  # fmt: skip
    # WHEN the schedule is due, its job is sent, and the train worker runs it
    (first,) = scheduler.tick(start + 86_400)
    assert first.startswith("schedule-digits-")
    record = accounts.work("train", first)
    # THEN it trained on the new file (and whatever the folder held before)
    assert record["status"] == "SUCCEEDED", record
    assert f"s3://{accounts.exchange}/cleansed/digits/b.csv" in record["result"]["built"]["added"]
    assert record["result"]["promoted"] is True
    # WHEN it is due again with nothing new
    (second,) = scheduler.tick(start + 2 * 86_400)
    again = accounts.work("train", second)
    # THEN it ends SUCCEEDED with "nothing new", and trained nothing
    assert (again["status"], again["result"]["outcome"]) == ("SUCCEEDED", "nothing new")
    # AND `mlpoc schedule run digits` fires the same job at once (the operator's identity)
    dep = Deployment(
        name="local", region=REGION, outputs=accounts.ml.outputs,
        session=accounts.ml.session("operator"), endpoint=accounts.ml.endpoint, api_url=None,
        local_schedules=[schedule.to_state()],
    )  # fmt: skip
    job = ops.run_schedule(dep, "digits")
    assert job.job_id.startswith("schedule-digits-manual-")
    manual = accounts.work("train", job.job_id)
    assert manual["result"]["outcome"] == "nothing new"
    assert sent == [first, second]
    # AND `mlpoc models` says which version came from the schedule
    shown = Console(width=250, record=True)
    shown.print(render.models_table(ops.models(dep, "digits")))
    (row,) = [line for line in shown.export_text().splitlines() if "schedule" in line]
    assert f"v{record['result']['model_version']}" in row


def test_the_share_synth_is_the_business_accounts_own(tmp_path: Path) -> None:
    """The app synthesizes the share stack alone when mlpoc:share names the ML account."""
    shared = share_app(tmp_path, LOCAL_ACCOUNT)
    assert shared.stack.stack_name == "mlpoc-share"
    assert "AWS::ECS::Service" not in json.dumps(shared.json)

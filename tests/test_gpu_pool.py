"""The optional GPU training pool (mlpoc:gpu): the template with it on and off, its cost, the
Dockerfile's GPU target, a GPU job end to end on local mode's CPU stand-in under IAM, and the
sentence a GPU job gets from a stack without the pool."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from mlpoc import cost
from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.cli import ops
from mlpoc.cli.target import Deployment
from mlpoc.data import digits
from mlpoc.errors import ConfigError, TargetError
from mlpoc.local.supervisor import GPU_STAND_IN, local_notes
from mlpoc.models.registry import Registry
from mlpoc.runtime import submission
from mlpoc.runtime.contract import NO_GPU_POOL, Job, S3Uri
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from stacks.config import Config
from tests.support.aws_stack import REGION, Stack, create_stack
from tests.support.cdk_app import ROOT, Synthesized, cdk_json_context
from tests.support.cli import uncovered_env
from tests.support.enforced import EnforcedStack, deploy_enforced, moto_process
from tests.support.workers import start_worker, wait_for_status

KEY = "k" * 32


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(tmp_path_factory.mktemp("cdk-gpu"), gpu=True, gpu_packages=["torch==2.9.1"])


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = of_type(template, kind).values()
    return resource["Properties"]


# -- the template ---------------------------------------------------------------------------------
def test_the_pool_is_an_all_spot_group_from_zero_behind_a_managed_capacity_provider(
    gpu: Synthesized,
) -> None:
    group = one(gpu.service_json, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["MinSize"], group["MaxSize"]) == ("0", "2")
    assert group["CapacityRebalance"] is True
    assert group["NewInstancesProtectedFromScaleIn"] is True  # managed termination protection
    policy = group["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "g4dn.xlarge", "g5.xlarge", "g6.xlarge",
    ]  # fmt: skip
    provider = one(gpu.service_json, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    (group_id,) = of_type(gpu.service_json, "AWS::AutoScaling::AutoScalingGroup")
    assert provider["AutoScalingGroupArn"] == {"Ref": group_id}
    associations = one(gpu.service_json, "AWS::ECS::ClusterCapacityProviderAssociations")
    (provider_id,) = of_type(gpu.service_json, "AWS::ECS::CapacityProvider")
    assert {"Ref": provider_id} in associations["CapacityProviders"]


def test_the_instances_boot_the_ecs_gpu_ami_privately_and_report_gpu_use(gpu: Synthesized) -> None:
    data = one(gpu.service_json, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert "ecsoptimizedamiamazonlinux2023gpurecommended" in data["ImageId"]["Ref"]
    parameters = gpu.service_json["Parameters"]
    assert parameters[data["ImageId"]["Ref"]]["Default"] == (
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    )
    # AL2023's repositories are S3 over HTTPS: the instances may reach port 443 only
    groups = of_type(gpu.service_json, "AWS::EC2::SecurityGroup")
    (instances,) = [g["Properties"] for k, g in groups.items() if k.startswith("GpuInstances")]
    assert [(r["FromPort"], r["ToPort"]) for r in instances["SecurityGroupEgress"]] == [(443, 443)]
    assert data["MetadataOptions"] == {"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}
    (volume,) = data["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    assert data["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
    script = json.dumps(data["UserData"])
    assert "amazon-cloudwatch-agent" in script
    assert "nvidia_gpu" in script
    # the agent's install runs in the exit trap: after ECS_CLUSTER is written, so the ECS agent
    # joins this cluster however long the install takes
    order = ["function exitTrap", "dnf install", "trap exitTrap EXIT", "ECS_CLUSTER"]
    assert [script.index(w) for w in order] == sorted(script.index(w) for w in order)
    # AND the instance role may put metrics into the agent's namespace only
    statements = [
        s
        for i, p in of_type(gpu.service_json, "AWS::IAM::Policy").items()
        if i.startswith("GpuInstanceRole")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "cloudwatch:PutMetricData"
    ]
    assert statements == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "CWAgent"}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]


def test_the_agents_get_what_spot_draining_and_the_idle_metric_need(gpu: Synthesized) -> None:
    # the ECS agent drains on a Spot notice only when told to (off by default), and then sets
    # its own instance DRAINING, within this cluster
    data = one(gpu.service_json, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert "echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config" in json.dumps(
        data["UserData"]
    )
    statements = [
        s
        for i, p in of_type(gpu.service_json, "AWS::IAM::Policy").items()
        if i.startswith("GpuInstanceRole")
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]

    def granting(action: str) -> dict[str, Any]:
        # aws-cdk-lib merges statements with the same resource and condition
        (found,) = [
            s
            for s in statements
            if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        ]
        return found

    drain = granting("ecs:UpdateContainerInstancesState")
    assert drain["Resource"] == "*"
    assert drain["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["WorkerCluster", "Arn"]}}
    }
    # the CloudWatch agent reads the group's name from the instance's tags: without
    # ec2:DescribeTags it drops every metric, and the idle alarm never gets data
    tags = granting("ec2:DescribeTags")
    assert tags["Resource"] == "*" and "Condition" not in tags


def test_the_gpu_service_runs_the_train_workers_code_and_role_on_one_gpu(
    gpu: Synthesized,
) -> None:
    tasks = of_type(gpu.service_json, "AWS::ECS::TaskDefinition")
    (gpu_task,) = [t["Properties"] for i, t in tasks.items() if i.startswith("GpuTask")]
    (train_task,) = [t["Properties"] for i, t in tasks.items() if i.startswith("WorkersTrainTask")]
    assert gpu_task["NetworkMode"] == "bridge"
    assert gpu_task["RequiresCompatibilities"] == ["EC2"]
    assert gpu_task["TaskRoleArn"] == train_task["TaskRoleArn"]
    (container,) = gpu_task["ContainerDefinitions"]
    assert container["Command"] == ["python", "-m", "mlpoc.worker", "gpu"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["MLPOC_PREFETCH"] == "1"
    assert "ExportsOutputRefGpuQueue" in json.dumps(env["MLPOC_GPU_QUEUE_URL"])
    services = of_type(gpu.service_json, "AWS::ECS::Service")
    (service,) = [s["Properties"] for i, s in services.items() if i.startswith("GpuService")]
    (provider_id,) = of_type(gpu.service_json, "AWS::ECS::CapacityProvider")
    assert service["CapacityProviderStrategy"] == [
        {"CapacityProvider": {"Ref": provider_id}, "Weight": 1}
    ]
    assert service["DesiredCount"] == 0
    # AND it scales on the GPU queue's depth from zero, like the Fargate workers
    targets = of_type(gpu.service_json, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert sorted(
        (t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"]) for t in targets.values()
    ) == [(0, 2), (0, 4), (0, 4)]
    # AND its image is the Dockerfile's gpu target, for x86_64
    manifest = next(gpu.outdir.glob("mlpoc-service.assets.json"))
    images = json.loads(manifest.read_text())["dockerImages"].values()
    targets_built = sorted(
        (i["source"].get("dockerBuildTarget", "(default)"), i["source"].get("platform"))
        for i in images
    )
    assert targets_built == [
        ("api", "linux/arm64"), ("gpu", "linux/amd64"), ("worker", "linux/arm64")
    ]  # fmt: skip
    # the model plugins reach the GPU image as they reach the worker's; mlpoc:gpu_packages only it
    args = {i["source"]["dockerBuildTarget"]: i["source"].get("dockerBuildArgs") for i in images}
    assert args["gpu"] == {"PLUGINS": "lightgbm", "GPU_PACKAGES": "torch==2.9.1"}
    assert args["worker"] == {"PLUGINS": "lightgbm"}


def test_spot_interruptions_and_an_idle_gpu_reach_the_alerts_topic(gpu: Synthesized) -> None:
    rules = of_type(gpu.service_json, "AWS::Events::Rule")
    (spot,) = [r["Properties"] for i, r in rules.items() if "SpotInterruptions" in i]
    assert spot["EventPattern"] == {
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
        "source": ["aws.ec2"],
    }
    (topic_id,) = of_type(gpu.service_json, "AWS::SNS::Topic")
    assert spot["Targets"][0]["Arn"] == {"Ref": topic_id}
    policy = one(gpu.service_json, "AWS::SNS::TopicPolicy")["PolicyDocument"]["Statement"]
    (allowed,) = [s for s in policy if s.get("Sid") == "AllowSpotInterruptionRule"]
    (rule_id,) = [i for i in rules if "SpotInterruptions" in i]
    assert allowed["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
    alarms = of_type(gpu.service_json, "AWS::CloudWatch::Alarm")
    (idle,) = [a["Properties"] for i, a in alarms.items() if i.startswith("AlertsGpuIdle")]
    # Minimum across the group's instances: one idle instance fires it while another is busy
    assert (idle["Namespace"], idle["MetricName"], idle["Statistic"]) == (
        "CWAgent", "nvidia_smi_utilization_gpu", "Minimum",
    )  # fmt: skip
    assert (idle["ComparisonOperator"], idle["Threshold"]) == ("LessThanThreshold", 5)
    assert idle["Period"] * idle["EvaluationPeriods"] == 30 * 60
    assert idle["TreatMissingData"] == "notBreaching"  # a pool at zero is not idle
    assert idle["AlarmActions"] == [{"Ref": topic_id}]


def test_the_data_stack_gets_a_gpu_queue_with_a_dead_letter_queue(gpu: Synthesized) -> None:
    outputs = gpu.data_json["Outputs"]
    assert {"GpuQueueUrl", "GpuDeadLetterQueueUrl"} <= set(outputs)
    queues = of_type(gpu.data_json, "AWS::SQS::Queue")
    (queue,) = [q["Properties"] for i, q in queues.items() if i.startswith("GpuQueue")]
    assert "RedrivePolicy" in queue
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": ["ProjectKey", "Arn"]}


def test_with_the_pool_off_none_of_it_exists(poc: Synthesized) -> None:
    for kind in (
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::ECS::CapacityProvider",
        "AWS::EC2::LaunchTemplate",
    ):
        assert of_type(poc.service_json, kind) == {}
    assert not [i for i in poc.service_json["Resources"] if i.startswith(("Gpu", "AlertsSpot"))]
    assert not [i for i in poc.data_json["Resources"] if i.startswith("Gpu")]
    assert "GpuQueueUrl" not in poc.data_json["Outputs"]


def test_cdk_nag_and_cfn_lint_are_clean_with_the_pool(gpu: Synthesized) -> None:
    report = json.loads((gpu.outdir / "validation-report.json").read_text())
    assert [v for p in report["pluginReports"] for v in p.get("violations", [])] == []
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, gpu.templates())],
        cwd=ROOT,
        env=uncovered_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


# -- cost -----------------------------------------------------------------------------------------
def test_the_pool_costs_nothing_at_zero_and_is_priced_per_gpu_hour(
    gpu: Synthesized, poc: Synthesized
) -> None:
    off = cost.report(Assembly.from_dir(poc.outdir), "us-east-1")
    on = cost.report(Assembly.from_dir(gpu.outdir), "us-east-1")
    assert off.gpu == []
    assert not [line for line in off.idle if "GPU" in line.item]
    idle = {line.item: line.usd for line in on.idle}
    assert idle["GPU pool instances (Auto Scaling group, minimum 0)"] == 0.0
    assert idle["GPU container image in ECR (size assumed)"] == pytest.approx(6.0 * 0.10)
    assert on.unpriced == off.unpriced  # every new resource type has a rule
    # the pool's alarms (scale-out 2 metrics, idle scale-in 3, GPU dead letters, oldest
    # message, idle GPU: 1 each) are the rest of the difference
    assert on.idle_total - off.idle_total == pytest.approx(0.60 + (2 + 3 + 3) * 0.10, abs=0.011)
    gpu_hour = {line.item: line.usd for line in on.gpu}
    assert gpu_hour["g4dn.xlarge, one on-demand hour"] == 0.526
    assert gpu_hour["g4dn.xlarge, one Spot hour (the pool's)"] == pytest.approx(0.526 * 0.4)
    assert gpu_hour["g5.xlarge, one on-demand hour"] == 1.006
    tokyo = cost.report(Assembly.from_dir(gpu.outdir), "ap-northeast-1")
    assert [line.detail for line in tokyo.gpu] == ["no price in prices.json"] * 3


# -- the image ------------------------------------------------------------------------------------
def test_the_dockerfile_keeps_the_worker_as_its_default_target_and_has_a_gpu_one() -> None:
    text = (ROOT / "containers" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, flags=re.MULTILINE)
    assert stages[-1][1] == "worker"  # the last stage: what a build without --target makes
    named = {name: base for base, name in stages}
    assert {"worker", "api", "gpu"} <= set(named)
    # every base is a build argument (a stand-in where no registry answers) or a stage
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    for base in named.values():
        assert base.removeprefix("${").removesuffix("}") in arguments or base in named, base
    assert named["gpu"] == "${CUDA_BASE}"
    assert re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", arguments["PYTHON_BASE"])
    assert arguments["CUDA_BASE"].startswith("nvidia/cuda:")
    # no frontend image to fetch: BuildKit's own Dockerfile frontend builds it
    assert "# syntax=" not in text
    gpu_stage = text.split(" AS gpu\n", 1)[1].split("\nFROM ", 1)[0]
    assert 'CMD ["python", "-m", "mlpoc.worker", "gpu"]' in gpu_stage
    assert "USER 10001" in gpu_stage


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("g4dn.xlarge", "must be a list of x86_64 GPU instance types"),
        (["g5g.xlarge"], "x86_64 GPU"),  # ARM: the GPU image is amd64
        (["t3.large"], "x86_64 GPU"),
        (["g5.xlarge", "g5.xlarge"], "distinct"),
        ([], "1-20 distinct types"),
    ],
)
def test_bad_gpu_types_are_refused_with_one_sentence(value: Any, why: str) -> None:
    context = {**cdk_json_context(), "mlpoc:gpu_instance_types": value}
    with pytest.raises(ConfigError, match=re.escape("mlpoc:gpu_instance_types")) as error:
        Config.from_context(context)
    assert why in str(error.value)


# -- a stack without the pool ----------------------------------------------------------------------
@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        yield create_stack(None)


def gpu_job(stack: Stack, job_id: str = "g1") -> Job:
    dataset = S3Uri(stack.data_bucket, "datasets/digits/train.csv")
    return Job(job_id, "train", "digits", dataset, resources="gpu")


def test_without_the_pool_a_gpu_job_is_refused_by_the_api_and_the_cli(stack: Stack) -> None:
    settings = ApiSettings.from_env({**stack.env(""), "MLPOC_API_KEY": KEY})
    with TestClient(create_app(settings, stack.clients(), start_poller=False)) as api:
        answer = api.post(
            "/v1/jobs",
            headers={"X-API-Key": KEY},
            json={"type": "train", "model": "digits", "resources": "gpu",
                  "dataset": f"s3://{stack.data_bucket}/datasets/digits/a.csv"},
        )  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["error"] == {"code": "no_gpu_pool", "message": NO_GPU_POOL}
    outputs = {"DataBucketName": stack.data_bucket, "TrainQueueUrl": stack.train_queue_url,
               "JobsTableName": stack.jobs_table}  # fmt: skip
    dep = Deployment("aws", REGION, outputs, boto3.session.Session(region_name=REGION), None, None)
    with pytest.raises(TargetError, match=re.escape(NO_GPU_POOL)):
        ops.submit(
            dep,
            job_type="train",
            model="digits",
            dataset=f"s3://{stack.data_bucket}/datasets/digits/a.csv",
            gpu=True,
        )


def test_without_the_pool_a_gpu_job_sent_to_the_train_queue_fails_with_the_sentence(
    stack: Stack,
) -> None:
    clients = stack.clients()
    clients.sqs.send_message(QueueUrl=stack.train_queue_url, MessageBody=gpu_job(stack).to_json())
    settings = Settings.from_env("train", {**stack.env(""), "MLPOC_WAIT_SECONDS": "0"})
    result = Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    assert result.rejected == 1
    record = Ledger(clients.dynamodb, stack.jobs_table).get("g1")
    assert record is not None
    assert (record["status"], record["reason"]) == ("FAILED", NO_GPU_POOL)
    # AND the message is kept in the dead-letter queue for a person
    kept = clients.sqs.receive_message(QueueUrl=stack.train_dlq_url)["Messages"]
    assert json.loads(kept[0]["Body"])["resources"] == "gpu"


# -- local mode: the CPU stand-in ----------------------------------------------------------------
@pytest.fixture(scope="module")
def enforced_gpu(gpu: Synthesized) -> Iterator[EnforcedStack]:
    with moto_process(covered=False) as endpoint:
        yield deploy_enforced(endpoint, gpu)


@pytest.mark.integration
def test_a_gpu_job_runs_end_to_end_on_the_cpu_stand_in(
    enforced_gpu: EnforcedStack, log_dir: Path
) -> None:
    # GIVEN the stack with the pool, as local mode creates it: the gpu worker is a process of
    # the same code under the train worker's role, with moto's IAM on
    spec = enforced_gpu.specs["gpu"]
    assert spec.role_id == enforced_gpu.specs["train"].role_id
    # (and local mode says what it is)
    assert local_notes([], list(enforced_gpu.specs.values())) == [GPU_STAND_IN]
    stack = enforced_gpu.runtime_stack()
    gpu_queue = enforced_gpu.outputs["GpuQueueUrl"]
    clients = stack.clients()
    key = "datasets/digits/train.csv"
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=digits.training_csv(slice(0, 600)).encode()
    )
    worker = start_worker(
        "gpu",
        stack,
        log_dir,
        endpoint=enforced_gpu.endpoint,
        MLPOC_GPU_QUEUE_URL=gpu_queue,
        **enforced_gpu.role_env("gpu"),
    )
    ledger = Ledger(clients.dynamodb, stack.jobs_table)
    job_id = f"gpu-{uuid.uuid4().hex[:8]}"
    try:
        # WHEN a GPU train job is submitted the way every producer submits one
        urls = Settings.from_env("api", {**stack.env(), "MLPOC_GPU_QUEUE_URL": gpu_queue})
        job = Job(job_id, "train", "digits", S3Uri(stack.data_bucket, key), resources="gpu")
        submission.enqueue(ledger, clients.sqs, urls, job, source="test")
        record = wait_for_status(ledger, job_id, {"SUCCEEDED", "FAILED"}, timeout=120)
    finally:
        assert worker.terminate() == 0
    # THEN the stand-in trained, stored and registered the model
    assert record["status"] == "SUCCEEDED", record
    version = Registry(clients.dynamodb, stack.models_table).resolve("digits", "current")
    assert version.job_id == job_id
    assert not worker.events("job.access_denied")


def test_the_dashboard_shows_the_pool(gpu: Synthesized, poc: Synthesized) -> None:
    def body(synth: Synthesized) -> str:
        return json.dumps(one(synth.service_json, "AWS::CloudWatch::Dashboard")["DashboardBody"])

    (service_id,) = [i for i in of_type(gpu.service_json, "AWS::ECS::Service") if "Gpu" in i]
    assert service_id in body(gpu)  # its running tasks
    assert "GpuQueue" in body(gpu)  # its queue's depth and age (an export of the data stack)
    assert "Gpu" not in body(poc)


def test_every_service_waits_for_the_clusters_capacity_provider_association(
    gpu: Synthesized,
) -> None:
    # ECS: a capacity provider must be associated with the cluster before CreateService names
    # it in a strategy, and cannot be removed while a service uses it: each service depends on
    # the association, so CloudFormation creates it first and deletes it last
    resources = gpu.service_json["Resources"]
    (association,) = of_type(gpu.service_json, "AWS::ECS::ClusterCapacityProviderAssociations")
    services = of_type(gpu.service_json, "AWS::ECS::Service")
    assert len(services) == 3  # train, predict and the GPU pool's
    for name in services:
        assert association in resources[name].get("DependsOn", []), name

"""`mlpoc release-gpu` (what `make destroy` runs first) against moto's ECS and Auto Scaling: the
GPU pool's service to zero, its instances' scale-in protection off, the group to 0/0, and a wait
that ends when no instance is left, or fails naming the ones that stay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlpoc.cli.teardown import GpuPool, instances, release
from mlpoc.errors import TargetError

REGION = "us-east-1"


@pytest.fixture
def pool() -> Iterator[tuple[Any, Any, GpuPool]]:
    """A cluster with the GPU service at one task, and a group of two protected instances."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        ecs = boto3.client("ecs", region_name=REGION)
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.create_launch_template(
            LaunchTemplateName="gpu",
            LaunchTemplateData={"ImageId": image, "InstanceType": "g4dn.xlarge"},
        )
        zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="gpu-group",
            LaunchTemplate={"LaunchTemplateName": "gpu"},
            MinSize=0,
            MaxSize=2,
            DesiredCapacity=2,
            AvailabilityZones=[zone],
            NewInstancesProtectedFromScaleIn=True,
        )
        ecs.create_cluster(clusterName="workers")
        ecs.register_task_definition(
            family="gpu", containerDefinitions=[{"name": "worker", "image": "x", "memory": 512}]
        )
        ecs.create_service(
            cluster="workers", serviceName="gpu-service", taskDefinition="gpu", desiredCount=1
        )
        yield ecs, autoscaling, GpuPool(cluster="workers", service="gpu-service", group="gpu-group")


def test_the_pool_is_brought_to_zero_in_order_and_the_wait_ends_when_it_is_empty(
    pool: tuple[Any, Any, GpuPool],
) -> None:
    ecs, autoscaling, gpu = pool
    held = instances(autoscaling, gpu.group)
    assert len(held) == 2
    protected = autoscaling.describe_auto_scaling_instances(InstanceIds=held)
    assert all(i["ProtectedFromScaleIn"] for i in protected["AutoScalingInstances"])
    said: list[str] = []
    assert release(ecs, autoscaling, gpu, sleep=lambda _: None, progress=said.append) == 2
    service = ecs.describe_services(cluster="workers", services=["gpu-service"])["services"][0]
    assert service["desiredCount"] == 0
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[gpu.group])
    (found,) = group["AutoScalingGroups"]
    assert (found["MinSize"], found["MaxSize"], found["DesiredCapacity"]) == (0, 0, 0)
    assert instances(autoscaling, gpu.group) == []
    # the order: the service, the protection, the group
    assert [m.split(" ")[0] for m in said[:3]] == ["GPU", "scale-in", "group"]


def test_instances_that_stay_are_named_with_what_to_do(pool: tuple[Any, Any, GpuPool]) -> None:
    ecs, autoscaling, gpu = pool
    held = instances(autoscaling, gpu.group)
    stuck = {"AutoScalingGroups": [{"Instances": [{"InstanceId": held[0]}]}]}
    real = autoscaling.describe_auto_scaling_groups

    class Stuck:  # the group answers as one whose instance never terminates
        def __getattr__(self, name: str) -> Any:
            return getattr(autoscaling, name)

        def describe_auto_scaling_groups(self, **kwargs: Any) -> Any:
            real(**kwargs)
            return stuck

    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(TargetError, match=rf"still holds {held[0]} after 300 s: terminate them"):
        release(ecs, Stuck(), gpu, timeout=300, sleep=lambda _: None, clock=lambda: next(ticks))


def test_without_deployed_stacks_the_command_fails_before_touching_anything() -> None:
    from typer.testing import CliRunner

    from mlpoc.cli.app import app

    # `make destroy` goes on after this refusal (there is nothing to release, or to destroy)
    with mock_aws():
        result = CliRunner().invoke(app, ["release-gpu", "--target", "aws", "--region", REGION])
    assert result.exit_code == 1
    assert "stack mlpoc-data is not deployed in us-east-1" in " ".join(result.output.split())

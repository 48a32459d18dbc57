"""The optional GPU training pool (``mlpoc:gpu``): ECS on EC2 Spot GPU instances, from zero.

* **Capacity**: an Auto Scaling group of minimum 0, all Spot, price-capacity-optimized over the
  configured GPU types (one launch template, one override per type), with capacity rebalancing.
  The ECS GPU-optimized AMI comes from its public SSM parameter. An ECS capacity provider with
  managed scaling starts instances when a GPU task needs one and removes them when none runs;
  managed termination protection keeps an instance that still runs a task.
* **Work**: an ECS service on that capacity provider, one GPU per task, consuming the GPU queue
  with the train worker's code and role (``python -m mlpoc.worker gpu``), scaled on the queue's
  depth from zero like the Fargate workers (``workers.scale_with_queue``).
* **Network**: public subnets (the kit has no NAT gateway), no inbound traffic, outbound HTTPS
  (AWS APIs, ECR) and HTTP (the Amazon Linux repository the CloudWatch agent is installed from).
  Tasks use bridge networking: an ``awsvpc`` task on EC2 gets no public address, and would
  reach nothing without a NAT gateway. IMDSv2 with a hop limit of 1 keeps the containers off
  the instance role: tasks have the train role only.
* **Watch**: the CloudWatch agent publishes the NVIDIA GPU utilization per Auto Scaling group
  (``CWAgent`` / ``nvidia_smi_utilization_gpu``); the alerts construct raises an alarm on a GPU
  idle for 30 minutes, and forwards Spot interruption warnings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.runtime.environment import GPU_QUEUE_VARIABLE
from stacks.config import Config
from stacks.constructs.images import kit_image
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.workers import STOP_GRACE_SECONDS, STOP_TIMEOUT, scale_with_queue

CW_AGENT_NAMESPACE = "CWAgent"
GPU_UTILIZATION = "nvidia_smi_utilization_gpu"
ROOT_VOLUME_GIB = 100  # the ECS GPU AMI, a CUDA image, and room for a model's checkpoints
TASK_MEMORY_MIB = 12 * 1024  # reserved per task: fits a g4dn/g5/g6 .xlarge (16 GiB)
# the agent's configuration: GPU utilization every minute, aggregated per Auto Scaling group
AGENT_CONFIG = {
    "agent": {"metrics_collection_interval": 60},
    "metrics": {
        "namespace": CW_AGENT_NAMESPACE,
        "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}"},
        "aggregation_dimensions": [["AutoScalingGroupName"]],
        "metrics_collected": {"nvidia_gpu": {"measurement": ["utilization_gpu"]}},
    },
}
SPOT_DRAINING = "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true"
AGENT_CONFIG_PATH = "/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"


class GpuPool(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vpc: ec2.IVpc,
        cluster: ecs.Cluster,
        queue: sqs.IQueue,
        task_role: iam.IRole,
        environment: Mapping[str, str],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.instances = self._instances(config, vpc)
        self.capacity_provider = ecs.AsgCapacityProvider(
            self,
            "CapacityProvider",
            auto_scaling_group=self.instances,
            enable_managed_scaling=True,
            enable_managed_termination_protection=True,
            # (spot_instance_draining is read by aws-cdk-lib only for a group with a spotPrice,
            # which a mixed-instances group never has: the user data turns it on instead)
            target_capacity_percent=100,
        )
        cluster.add_asg_capacity_provider(self.capacity_provider)
        # Spot draining: on an interruption notice the ECS agent sets its own container
        # instance to DRAINING (the action AmazonEC2ContainerServiceforEC2Role grants for it),
        # limited to this cluster's instances by condition
        self.instance_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateContainerInstancesState"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_definition = self._task(queue, task_role, environment)
        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=0,
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(
                    capacity_provider=self.capacity_provider.capacity_provider_name, weight=1
                )
            ],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            min_healthy_percent=0,  # a stopped worker releases its job: nothing to keep up
            max_healthy_percent=100,  # a deploy never asks for a second GPU instance
        )
        # after the cluster's capacity-provider association exists, and deleted before it
        self.service.node.add_dependency(cluster)
        scale_with_queue(
            self,
            name="gpu",
            service=self.service,
            queue=queue,
            max_tasks=config.gpu_max_instances,
        )
        self._acknowledge()

    def _instances(self, config: Config, vpc: ec2.IVpc) -> autoscaling.AutoScalingGroup:
        self.security_group = ec2.SecurityGroup(
            self,
            "InstancesSecurityGroup",
            vpc=vpc,
            description="GPU instances: no inbound; outbound HTTPS (AWS APIs, AL2023 repositories)",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs")
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="GPU pool instances: the ECS agent and the CloudWatch agent",
        )
        # the CloudWatch agent's GPU metrics, into its own namespace only
        self.instance_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": CW_AGENT_NAMESPACE}},
            )
        )
        # the agent reads the instance's aws:autoscaling:groupName tag for the metric's
        # AutoScalingGroupName dimension, and drops every metric until it has it (its
        # ec2tagger; CloudWatchAgentServerPolicy grants the same action)
        self.instance_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ec2:DescribeTags"], resources=["*"])
        )
        user_data = ec2.UserData.for_linux()
        # Spot draining is off by default on the ECS agent (ECS: "Spot Instance draining is
        # turned off by default"): a notice then drains the instance's tasks
        user_data.add_commands(f"echo {SPOT_DRAINING} >> /etc/ecs/ecs.config")
        # on exit: after the ECS agent's configuration (the capacity provider adds it), so the
        # agent joins this cluster however long the package install takes
        user_data.add_on_exit_commands(
            "dnf install -y amazon-cloudwatch-agent",
            f"cat > {AGENT_CONFIG_PATH} <<'EOF'\n{json.dumps(AGENT_CONFIG, indent=1)}\nEOF",
            "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config "
            f"-m ec2 -s -c file:{AGENT_CONFIG_PATH}",
        )
        template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            # the ECS GPU-optimized Amazon Linux 2023 AMI (AL2's ECS AMIs reach their end of
            # support); its package repositories are S3 over HTTPS, so port 443 is all it needs
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
            role=self.instance_role,
            user_data=user_data,
            security_group=self.security_group,
            associate_public_ip_address=True,  # public subnets, no NAT gateway
            require_imdsv2=True,
            http_put_response_hop_limit=1,  # containers (bridge network) cannot reach IMDS
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        ROOT_VOLUME_GIB, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3
                    ),
                )
            ],
        )
        skip_checkov(
            template,
            "CKV_AWS_88",
            "Public subnets and no NAT gateway (about 32 USD a month, more than the PoC's idle "
            "budget): the address is outbound only. The security group admits nothing inbound "
            "and lets out HTTPS alone; IMDSv2 is required.",
        )
        return autoscaling.AutoScalingGroup(
            self,
            "Instances",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            min_capacity=0,
            max_capacity=config.gpu_max_instances,
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=template,
                instances_distribution=autoscaling.InstancesDistribution(
                    on_demand_base_capacity=0,
                    on_demand_percentage_above_base_capacity=0,  # all Spot
                    spot_allocation_strategy=autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED,
                ),
                launch_template_overrides=[
                    autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(t))
                    for t in config.gpu_instance_types
                ],
            ),
            capacity_rebalance=True,  # replace an instance at risk before its Spot notice
            new_instances_protected_from_scale_in=True,  # managed termination protection
        )

    def _task(
        self, queue: sqs.IQueue, task_role: iam.IRole, environment: Mapping[str, str]
    ) -> ecs.Ec2TaskDefinition:
        task = ecs.Ec2TaskDefinition(
            self, "Task", network_mode=ecs.NetworkMode.BRIDGE, task_role=task_role
        )
        # the GPU image (containers/Dockerfile, target gpu): CUDA's runtime and the same package
        image = kit_image(
            self,
            "Image",
            target="gpu",
            platform=ecr_assets.Platform.LINUX_AMD64,
            plugins=self._config.plugins,
            gpu_packages=self._config.gpu_packages,
        )
        task.add_container(
            "worker",
            image=ecs.ContainerImage.from_docker_image_asset(image),
            command=["python", "-m", "mlpoc.worker", "gpu"],
            environment={
                **environment,
                GPU_QUEUE_VARIABLE: queue.queue_url,
                "MLPOC_PREFETCH": "1",
                "MLPOC_STOP_GRACE_SECONDS": str(STOP_GRACE_SECONDS),
            },
            gpu_count=1,
            memory_reservation_mib=TASK_MEMORY_MIB,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="gpu", log_group=self.log_group),
            stop_timeout=STOP_TIMEOUT,
            readonly_root_filesystem=True,
            # an init as PID 1 forwards SIGTERM: one that comes before the worker's handler
            # exists (while it imports) ends it at once instead of waiting for the SIGKILL
            linux_parameters=ecs.LinuxParameters(self, "Linux", init_process_enabled=True),
        )
        return task

    def _acknowledge(self) -> None:
        acknowledge(
            self.instance_role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions: the statement is "
            f"limited to the {CW_AGENT_NAMESPACE} namespace by condition; ec2:DescribeTags "
            "(the CloudWatch agent's group-name dimension) has none either; "
            "ecs:UpdateContainerInstancesState (Spot draining) is limited to this cluster by "
            "its ecs:cluster condition; the ECS agent's statements aws-cdk-lib adds (container "
            "instance registration, telemetry, ecr:GetAuthorizationToken) take no resource ARN, "
            "and its logs:CreateLogStream/PutLogEvents on * serve the agent's awslogs driver for "
            "tasks without an execution role; the GPU task has one, scoped to its log group.",
            checkov="CKV_AWS_111",
        )
        acknowledge(
            self.instance_role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Action::ecs:Submit*]",
            "The ECS agent's state reports (SubmitTaskStateChange, SubmitContainerStateChange, "
            "SubmitAttachmentStateChanges), as aws-cdk-lib grants a container instance, limited "
            "to this cluster by resource.",
        )
        acknowledge(
            self.instances.node.default_child,  # type: ignore[arg-type]
            "AwsSolutions-EC26",
            "The rule cannot read a mixed-instances group's launch template; the template's only "
            "volume, the root, is encrypted (pinned by tests/test_cdk_gpu_pool.py).",
        )
        acknowledge(
            self.instances,
            "AwsSolutions-AS3",
            "Scaling events of this group are ECS managed scaling's own; Spot interruption "
            "warnings and an idle GPU are alarmed on (stacks/constructs/alerts.py).",
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "The environment holds resource names from the stack (buckets, tables, queue "
            "URLs) and tuning knobs, never a secret; secrets are read from Secrets Manager.",
        )
        acknowledge(
            self.task_definition.obtain_execution_role().node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the image pull "
            "and log writes in the same policy are scoped to the repository and log group.",
        )

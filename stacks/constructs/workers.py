"""The train and predict workers: one image (target ``worker``), two queue-driven Fargate services.

Each service runs 0 tasks while its queue is empty and scales out on the number of messages
*visible or in flight* (so a running job keeps its task), from zero on the first message. It
scales in to zero once its tasks have run with an empty queue for ``IDLE_MINUTES``; the submit
paths raise a service at zero to one task at once (the nudge, :mod:`mlpoc.runtime.scaling`).
Fargate Spot by default, with on-demand capacity in the strategy so a Spot shortage slows the
queue instead of stopping it. Tasks protect themselves from scale-in while they hold a job
(the worker calls the ECS agent's task-protection endpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from stacks.account_config import worker_role_name
from stacks.config import Config
from stacks.constructs.images import kit_image
from stacks.constructs.nag import acknowledge, as_nag_names

# ECS sends SIGTERM, then SIGKILL after this; the worker's own grace is shorter.
STOP_TIMEOUT = Duration.seconds(120)
STOP_GRACE_SECONDS = 100
# queue depth (visible + in flight) -> number of tasks; EXACT_CAPACITY, capped by max tasks
DEPTH_STEPS = ((1, 1), (10, 2), (50, 4))
# tasks that run this long with an empty queue are scaled in to zero
IDLE_MINUTES = 2
CLUSTER_ID = "WorkerCluster"


@dataclass(frozen=True)
class WorkerSpec:
    role: str  # "train" | "predict"
    queue: sqs.IQueue
    environment: dict[str, str]
    prefetch: int


class Workers(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vpc: ec2.IVpc,
        specs: list[WorkerSpec],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
        self.cluster.node.default_child.override_logical_id(CLUSTER_ID)  # type: ignore[union-attr]
        # One image for both roles, built for ARM64 (Graviton: cheaper, and Fargate Spot runs
        # ARM64 on platform 1.4.0).
        self.image = kit_image(
            self,
            "Image",
            target="worker",
            platform=ecr_assets.Platform.LINUX_ARM64,
            plugins=config.plugins,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "TasksSecurityGroup",
            vpc=vpc,
            description="Worker tasks: no inbound traffic; outbound to AWS APIs over HTTPS",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs")
        self.services: dict[str, ecs.FargateService] = {}
        self.task_roles: dict[str, iam.IRole] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.task_definitions: dict[str, ecs.FargateTaskDefinition] = {}
        for spec in specs:
            self._service(config, spec, log_retention)

    def _service(self, config: Config, spec: WorkerSpec, retention: logs.RetentionDays) -> None:
        name = spec.role.capitalize()
        log_group = logs.LogGroup(
            self, f"{name}Logs", retention=retention, removal_policy=RemovalPolicy.DESTROY
        )
        # named: the share stack in a business account grants these roles by name
        task_role = iam.Role(
            self,
            f"{name}TaskRole",
            role_name=worker_role_name(config.project, spec.role),
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.project}: the {spec.role} worker's tasks",
        )
        task = ecs.FargateTaskDefinition(
            self,
            f"{name}Task",
            task_role=task_role,
            cpu=config.worker_cpu,
            memory_limit_mib=config.worker_memory,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task.add_container(
            "worker",
            image=ecs.ContainerImage.from_docker_image_asset(self.image),
            command=["python", "-m", "mlpoc.worker", spec.role],
            environment={
                **spec.environment,
                "MLPOC_PREFETCH": str(spec.prefetch),
                "MLPOC_STOP_GRACE_SECONDS": str(STOP_GRACE_SECONDS),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix=spec.role, log_group=log_group),
            stop_timeout=STOP_TIMEOUT,
            readonly_root_filesystem=True,
            # an init as PID 1 forwards SIGTERM: one that comes before the worker's handler
            # exists (while it imports) ends it at once instead of waiting for the SIGKILL
            linux_parameters=ecs.LinuxParameters(self, f"{name}Linux", init_process_enabled=True),
        )
        # the worker's scale-in protection calls, for this cluster's tasks only
        stack = Stack.of(self)
        task.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"],
                resources=[
                    f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}:task/"
                    f"{self.cluster.cluster_name}/*"
                ],
            )
        )
        acknowledge(
            task.task_role.node.find_child("DefaultPolicy"),
            as_nag_names(
                stack,
                "AwsSolutions-IAM5[Resource::arn:{partition}:ecs:{region}:{account}:task/"
                f"<{CLUSTER_ID}>/*]",
            ),
            "Task ids are only known at run time; the statement is limited to this cluster's "
            "tasks and to the two task-protection actions the worker calls on itself.",
        )
        spot = ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=4)
        on_demand = ecs.CapacityProviderStrategy(capacity_provider="FARGATE", weight=1)
        service = ecs.FargateService(
            self,
            f"{name}Service",
            cluster=self.cluster,
            task_definition=task,
            desired_count=0,
            assign_public_ip=True,
            security_groups=[self.security_group],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            capacity_provider_strategies=[spot, on_demand] if config.spot else [on_demand],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            min_healthy_percent=0,  # a stopped worker releases its job: nothing to keep up
            max_healthy_percent=200,
        )
        # a service's capacity providers must be associated with the cluster before CreateService
        # names them, and the association must outlive the service on delete (ECS: "The
        # specified capacity provider is in use"): the service depends on the whole cluster
        # construct, its ClusterCapacityProviderAssociations included
        service.node.add_dependency(self.cluster)
        scale_with_queue(
            self,
            name=spec.role,
            service=service,
            queue=spec.queue,
            max_tasks=config.worker_max_tasks,
        )
        self.services[spec.role] = service
        self.task_roles[spec.role] = task.task_role
        self.task_definitions[spec.role] = task
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "The environment holds resource names from the stack (buckets, tables, queue "
            "URLs) and tuning knobs, never a secret; secrets are read from Secrets Manager.",
        )
        acknowledge(
            task.obtain_execution_role().node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the image pull "
            "and log writes in the same policy are scoped to the repository and log group.",
        )
        self.log_groups[spec.role] = log_group

    def grant_nudge(self, grantee: iam.IGrantable, *extra: ecs.BaseService) -> None:
        """The scale-from-zero nudge (:mod:`mlpoc.runtime.scaling`): read and set the desired count
        of
        the worker services (and the GPU pool's), and nothing else."""
        services = [*self.services.values(), *extra]
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeServices", "ecs:UpdateService"],
                resources=[service.service_arn for service in services],
            )
        )


def scale_with_queue(
    scope: Construct,
    *,
    name: str,
    service: ecs.BaseService,
    queue: sqs.IQueue,
    max_tasks: int,
) -> None:
    """Out on the queue's depth (visible + in flight), from zero on the first message; in to
    zero once the tasks have run IDLE_MINUTES with an empty queue.

    The scale-in alarm is in ALARM only while the service has tasks (their CPU metric has
    data): once the service is at zero it returns to OK. An alarm left in ALARM would re-apply
    "zero tasks" every minute (Application Auto Scaling repeats a step policy while its alarm
    stays in ALARM) and undo the submit paths' scale-from-zero nudge (:mod:`mlpoc.runtime.scaling`)
    before the queue's metrics catch up.
    """
    scaling = service.auto_scale_task_count(min_capacity=0, max_capacity=max_tasks)
    depth = cloudwatch.MathExpression(
        expression="visible + inflight",
        using_metrics={
            "visible": queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            "inflight": queue.metric_approximate_number_of_messages_not_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
        },
        period=Duration.minutes(1),
        label=f"{name} queue depth",
    )
    scaling.scale_on_metric(
        "QueueDepth",
        metric=depth,
        adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
        scaling_steps=[
            autoscaling.ScalingInterval(lower=lower, change=min(tasks, max_tasks))
            for lower, tasks in DEPTH_STEPS
        ],
        cooldown=Duration.minutes(1),
        evaluation_periods=1,
    )
    idle = cloudwatch.MathExpression(
        expression="IF(FILL(tasks, 0) > 0, IF(FILL(depth, 0) <= 0, 1, 0), 0)",
        using_metrics={
            "tasks": service.metric_cpu_utilization(
                period=Duration.minutes(1), statistic="SampleCount"
            ),
            "depth": depth,
        },
        period=Duration.minutes(1),
        label=f"{name} tasks idle",
    )
    title = name.capitalize()
    action = autoscaling.StepScalingAction(
        scope,
        f"{title}ScaleIn",
        scaling_target=scaling.node.find_child("Target"),  # type: ignore[arg-type]
        adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
        cooldown=Duration.minutes(1),
    )
    action.add_adjustment(adjustment=0, lower_bound=0)
    alarm = cloudwatch.Alarm(
        scope,
        f"{title}IdleAlarm",
        metric=idle,
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=IDLE_MINUTES,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=f"{name} tasks ran {IDLE_MINUTES} min with an empty queue: scale to zero",
    )
    alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(action))

"""The service stack's template: network, workers and their scaling, grants, functions, alerts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpoc.aws import bucket_layout
from stacks.constructs.access import TABLE_ACTIONS
from stacks.constructs.workers import STOP_GRACE_SECONDS, STOP_TIMEOUT
from stacks.data_stack import EVENTS_VISIBILITY
from tests.support.cdk_app import Synthesized

ENV_NAMES = {
    "MLPOC_DATA_BUCKET", "MLPOC_MODEL_BUCKET", "MLPOC_JOBS_TABLE", "MLPOC_MODELS_TABLE",
    "MLPOC_PREDICTIONS_TABLE", "MLPOC_ANNOTATIONS_TABLE", "MLPOC_TRAIN_QUEUE_URL",
    "MLPOC_PREDICT_QUEUE_URL",
}  # fmt: skip


def of_type(synth: Synthesized, kind: str) -> dict[str, Any]:
    return {k: v for k, v in synth.service_json["Resources"].items() if v["Type"] == kind}


def test_the_vpc_has_public_subnets_only_no_nat_and_free_gateway_endpoints(
    poc: Synthesized,
) -> None:
    assert of_type(poc, "AWS::EC2::NatGateway") == {}
    assert {
        r["Properties"]["MapPublicIpOnLaunch"] for r in of_type(poc, "AWS::EC2::Subnet").values()
    } == {True}
    endpoints = of_type(poc, "AWS::EC2::VPCEndpoint").values()
    assert sorted(e["Properties"]["VpcEndpointType"] for e in endpoints) == ["Gateway", "Gateway"]
    services = sorted(str(e["Properties"]["ServiceName"]) for e in endpoints)
    assert any("dynamodb" in s for s in services) and any(".s3" in s for s in services)
    poc.service.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def container(synth: Synthesized, role: str) -> dict[str, Any]:
    for task in of_type(synth, "AWS::ECS::TaskDefinition").values():
        (definition,) = task["Properties"]["ContainerDefinitions"]
        if definition["Command"][-1] == role:
            return {"task": task["Properties"], "container": definition}
    raise AssertionError(f"no {role} task definition")


@pytest.mark.parametrize("role", ["train", "predict"])
def test_workers_run_the_shared_image_on_arm64_with_the_runtime_environment(
    poc: Synthesized, role: str
) -> None:
    found = container(poc, role)
    task, definition = found["task"], found["container"]
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert definition["Command"] == ["python", "-m", "mlpoc.worker", role]
    assert definition["StopTimeout"] == STOP_TIMEOUT.to_seconds()
    env = {e["Name"]: e["Value"] for e in definition["Environment"]}
    assert set(env) >= ENV_NAMES
    assert int(env["MLPOC_STOP_GRACE_SECONDS"]) == STOP_GRACE_SECONDS < STOP_TIMEOUT.to_seconds()
    assert env["MLPOC_PREFETCH"] == ("1" if role == "train" else "10")
    assert definition["ReadonlyRootFilesystem"] is True
    # an init as PID 1 forwards ECS's SIGTERM even before the worker's handler exists
    assert definition["LinuxParameters"]["InitProcessEnabled"] is True
    assert definition["LogConfiguration"]["LogDriver"] == "awslogs"


def test_workers_start_at_zero_on_spot_with_on_demand_in_the_strategy(poc: Synthesized) -> None:
    services = of_type(poc, "AWS::ECS::Service").values()
    assert len(services) == 2
    for service in services:
        properties = service["Properties"]
        assert properties["DesiredCount"] == 0
        assert properties["CapacityProviderStrategy"] == [
            {"CapacityProvider": "FARGATE_SPOT", "Weight": 4},
            {"CapacityProvider": "FARGATE", "Weight": 1},
        ]
        assert properties["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
            "Enable": True, "Rollback": True,
        }  # fmt: skip


def test_spot_can_be_turned_off(retain: Synthesized) -> None:
    for service in of_type(retain, "AWS::ECS::Service").values():
        assert service["Properties"]["CapacityProviderStrategy"] == [
            {"CapacityProvider": "FARGATE", "Weight": 1}
        ]


def test_workers_scale_from_zero_on_the_first_message_on_visible_plus_in_flight(
    poc: Synthesized,
) -> None:
    targets = of_type(poc, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert sorted(
        (t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"]) for t in targets
    ) == [(0, 4), (0, 4)]
    policies = of_type(poc, "AWS::ApplicationAutoScaling::ScalingPolicy")
    upper = [p["Properties"] for i, p in policies.items() if "QueueDepthUpperPolicy" in i]
    assert len(upper) == 2
    for policy in upper:
        config = policy["StepScalingPolicyConfiguration"]
        assert config["AdjustmentType"] == "ExactCapacity"
        # the alarm fires at depth >= 1; the first step (lower bound 0 above it) means 1 task
        assert config["StepAdjustments"][0] == {
            "MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 9, "ScalingAdjustment": 1,
        }  # fmt: skip
    # no scale-in on the queue's depth alone: that alarm would stay in ALARM while the service
    # idles at zero and undo every scale-from-zero nudge (see the idle test below)
    assert not [i for i in policies if "QueueDepthLower" in i]
    alarms = [
        a["Properties"]
        for a in of_type(poc, "AWS::CloudWatch::Alarm").values()
        if "Metrics" in a["Properties"]
    ]
    scale_out = [a for a in alarms if a.get("AlarmDescription") == "Upper threshold scaling alarm"]
    assert len(scale_out) == 2
    for alarm in scale_out:
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["Threshold"] == 1
        expressions = [m.get("Expression") for m in alarm["Metrics"]]
        assert "visible + inflight" in expressions
        names = {
            m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m
        }
        assert names == {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
        }


def test_workers_scale_in_to_zero_only_while_tasks_idle(poc: Synthesized) -> None:
    """The scale-in alarm is in ALARM only while the service runs tasks (their CPU metric has
    data) with an empty queue, so it is OK again once the service is at zero, and a
    scale-from-zero nudge is not undone a minute later."""
    policies = of_type(poc, "AWS::ApplicationAutoScaling::ScalingPolicy")
    alarms = of_type(poc, "AWS::CloudWatch::Alarm")
    for role in ("Train", "Predict"):
        (policy_id,) = [i for i in policies if i.startswith(f"Workers{role}ScaleIn")]
        assert policies[policy_id]["Properties"]["StepScalingPolicyConfiguration"] == {
            "AdjustmentType": "ExactCapacity",
            "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 0}],
        }
        (alarm,) = [
            a["Properties"] for i, a in alarms.items() if i.startswith(f"Workers{role}Idle")
        ]
        assert alarm["AlarmActions"] == [{"Ref": policy_id}]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "GreaterThanOrEqualToThreshold", 1,
        )  # fmt: skip
        assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (2, "notBreaching")
        metrics = {m["Id"]: m for m in alarm["Metrics"]}
        assert metrics["expr_1"]["Expression"] == (
            "IF(FILL(tasks, 0) > 0, IF(FILL(depth, 0) <= 0, 1, 0), 0)"
        )
        assert metrics["tasks"]["MetricStat"]["Metric"]["Namespace"] == "AWS/ECS"
        assert metrics["tasks"]["MetricStat"]["Stat"] == "SampleCount"
        assert metrics["depth"]["Expression"] == "visible + inflight"


def test_the_producers_may_raise_a_worker_service_from_zero_and_nothing_more(
    poc: Synthesized,
) -> None:
    services = sorted(of_type(poc, "AWS::ECS::Service"))
    nudges = [
        (policy_id, statement)
        for policy_id, policy in of_type(poc, "AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(str(a).startswith("ecs:") for a in _listed(statement["Action"]))
        and "UpdateService" in str(statement["Action"])
    ]
    assert {i.split("Role")[0] for i, _ in nudges} == {"ApiInstance", "DatasetUploaded"}
    for _, statement in nudges:
        assert statement["Action"] == ["ecs:DescribeServices", "ecs:UpdateService"]
        assert sorted(r["Ref"] for r in statement["Resource"]) == services
    # AND both producers are told which services those are
    (function,) = [
        f
        for i, f in of_type(poc, "AWS::Lambda::Function").items()
        if i.startswith("DatasetUploaded")
    ]
    variables = function["Properties"]["Environment"]["Variables"]
    assert {"MLPOC_WORKER_CLUSTER", "MLPOC_TRAIN_SERVICE", "MLPOC_PREDICT_SERVICE"} <= set(
        variables
    )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(synth: Synthesized) -> list[dict[str, Any]]:
    found = []
    for policy in of_type(synth, "AWS::IAM::Policy").values():
        found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def test_no_statement_grants_data_access_on_a_star_resource(poc: Synthesized) -> None:
    for statement in statements(poc):
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if "*" in resources:
            # the two calls AWS offers no resource-level permission for
            assert statement["Action"] in {
                "ecr:GetAuthorizationToken",
                "ec2:DescribeManagedPrefixLists",
            }, statement


def test_the_predict_worker_cannot_write_models_or_train_jobs(poc: Synthesized) -> None:
    role = next(
        k
        for k, v in of_type(poc, "AWS::IAM::Role").items()
        if k.startswith("WorkersPredictTaskRole")
    )
    (policy,) = [
        p
        for p in of_type(poc, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    actions = set()
    puts = []
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        listed = (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        actions.update(listed)
        if "s3:PutObject" in listed:
            puts.append(json.dumps(statement["Resource"]))
    # it puts objects only under the monitor's two prefixes: its samples and its reports
    (put,) = puts
    assert "/input-samples/*" in put and "/monitor/*" in put
    assert "/models/*" not in put and "/datasets/" not in put and "/inputs/" not in put
    assert "sqs:SendMessage" in actions  # its own dead-letter queue, for rejected messages
    assert "dynamodb:BatchWriteItem" in actions


def test_the_upload_function_reports_partial_batch_failures(poc: Synthesized) -> None:
    poc.service.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumBatchingWindowInSeconds": 5,
        },
    )


def test_functions_time_out_well_within_the_events_visibility(poc: Synthesized) -> None:
    functions = of_type(poc, "AWS::Lambda::Function")
    ours = [
        f["Properties"] for k, f in functions.items() if k.startswith(("DatasetUploaded", "Notify"))
    ]
    assert len(ours) == 2
    for function in ours:
        assert function["Runtime"] == "python3.14"
        assert function["Architectures"] == ["arm64"]
        assert 6 * function["Timeout"] <= EVENTS_VISIBILITY.to_seconds()
        assert set(function["LoggingConfig"]["LogGroup"]) == {"Ref"}


def test_every_log_group_has_a_retention_and_is_deleted_in_poc(poc: Synthesized) -> None:
    groups = of_type(poc, "AWS::Logs::LogGroup")
    # flow logs, two workers, two functions, and CDK's two helper functions
    assert len(groups) == 7
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == 30, logical_id
        assert group["DeletionPolicy"] == "Delete", logical_id


@pytest.mark.parametrize("stack", ["data", "service"])
def test_every_function_logs_to_a_declared_group_with_a_retention(
    poc: Synthesized, stack: str
) -> None:
    template = poc.data_json if stack == "data" else poc.service_json
    resources = template["Resources"]
    named = {
        json.dumps(g["Properties"]["LogGroupName"]["Fn::Join"][1][1]): logical_id
        for logical_id, g in resources.items()
        if g["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in g["Properties"]
    }
    for logical_id, function in resources.items():
        if function["Type"] != "AWS::Lambda::Function":
            continue
        if "LoggingConfig" in function["Properties"]:  # the kit's own functions
            continue
        # CDK's helpers: /aws/lambda/<function> declared before any custom resource runs them
        group = named[json.dumps({"Ref": logical_id})]
        assert resources[group]["Properties"]["RetentionInDays"] == 30
        for resource in resources.values():
            if resource["Type"].startswith("Custom::"):
                assert group in resource["DependsOn"]


def test_poc_service_stack_leaves_nothing_behind(poc: Synthesized) -> None:
    for logical_id, resource in poc.service_json["Resources"].items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id


def test_alerts_go_to_an_encrypted_tls_only_topic(poc: Synthesized) -> None:
    (topic,) = of_type(poc, "AWS::SNS::Topic").values()
    assert "Fn::ImportValue" in topic["Properties"]["KmsMasterKeyId"]
    policy = next(iter(of_type(poc, "AWS::SNS::TopicPolicy").values()))["Properties"][
        "PolicyDocument"
    ]
    assert any(
        s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} and s["Effect"] == "Deny"
        for s in policy["Statement"]
    )


def test_dead_letters_raise_an_alarm_at_the_first_message(poc: Synthesized) -> None:
    alarms = [a["Properties"] for a in of_type(poc, "AWS::CloudWatch::Alarm").values()]
    dead = [
        a
        for a in alarms
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and "dead-letter" in a.get("AlarmDescription", "")
    ]
    # train, predict and events DLQs, the alerts the notify function could not deliver, and
    # the schedules' (the monitor's schedule, mlpoc:monitor)
    assert len(dead) == 5
    for alarm in dead:
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        (action,) = alarm["AlarmActions"]
        assert action["Ref"].startswith("AlertsTopic")
    ages = [a for a in alarms if a.get("MetricName") == "ApproximateAgeOfOldestMessage"]
    assert sorted(a["Threshold"] for a in ages) == [900, 1800, 7200]


def test_failed_worker_tasks_are_reported(poc: Synthesized) -> None:
    (rule,) = of_type(poc, "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert pattern["detail"]["containers"] == {"exitCode": [{"anything-but": 0}]}


def test_the_budget_warns_at_80_percent_actual_and_100_percent_forecast(poc: Synthesized) -> None:
    (budget,) = of_type(poc, "AWS::Budgets::Budget").values()
    properties = budget["Properties"]
    assert properties["Budget"]["BudgetLimit"] == {"Amount": 50, "Unit": "USD"}
    assert properties["Budget"]["TimeUnit"] == "MONTHLY"
    assert sorted(
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in properties["NotificationsWithSubscribers"]
    ) == [("ACTUAL", 80), ("FORECASTED", 100)]


def test_email_and_slack_are_wired_when_configured(retain: Synthesized) -> None:
    retain.service.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "team@example.com"}
    )
    notify = next(
        f["Properties"]
        for k, f in of_type(retain, "AWS::Lambda::Function").items()
        if k.startswith("Notify")
    )
    assert "MLPOC_SLACK_SECRET_ARN" in notify["Environment"]["Variables"]
    assert any(
        "secretsmanager:GetSecretValue"
        in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        for s in statements(retain)
    )


# -- the API on Elastic Beanstalk, behind CloudFront -------------------------------------------
def eb_options(synth: Synthesized) -> dict[tuple[str, str], Any]:
    (environment,) = of_type(synth, "AWS::ElasticBeanstalk::Environment").values()
    return {
        (o["Namespace"], o["OptionName"]): o["Value"]
        for o in environment["Properties"]["OptionSettings"]
    }


def test_the_api_environment_is_one_instance_updated_without_downtime(poc: Synthesized) -> None:
    options = eb_options(poc)
    expected = {
        ("aws:elasticbeanstalk:environment", "EnvironmentType"): "SingleInstance",
        ("aws:elasticbeanstalk:command", "DeploymentPolicy"): "Immutable",
        ("aws:elasticbeanstalk:managedactions", "ManagedActionsEnabled"): "true",
        ("aws:elasticbeanstalk:managedactions:platformupdate", "UpdateLevel"): "minor",
        ("aws:elasticbeanstalk:healthreporting:system", "SystemType"): "enhanced",
        ("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs"): "true",
        ("aws:elasticbeanstalk:cloudwatch:logs", "RetentionInDays"): "30",
        ("aws:elasticbeanstalk:cloudwatch:logs", "DeleteOnTerminate"): "true",
        ("aws:ec2:instances", "InstanceTypes"): "t4g.micro",
        ("aws:autoscaling:launchconfiguration", "DisableIMDSv1"): "true",
        # Beanstalk's default instance group admits port 80 from anywhere: not attached
        ("aws:autoscaling:launchconfiguration", "DisableDefaultEC2SecurityGroup"): "true",
        ("aws:ec2:vpc", "AssociatePublicIpAddress"): "true",
    }
    assert {k: options[k] for k in expected} == expected
    health = json.loads(options[("aws:elasticbeanstalk:healthreporting:system", "ConfigDocument")])
    assert health["CloudWatchMetrics"]["Environment"] == {
        "ApplicationRequests5xx": 60,
        "ApplicationLatencyP99": 60,
    }
    (environment,) = of_type(poc, "AWS::ElasticBeanstalk::Environment").values()
    assert "Docker" in environment["Properties"]["SolutionStackName"]
    assert "Amazon Linux 2023" in environment["Properties"]["SolutionStackName"]


def test_the_cname_is_unique_per_stack_and_cloudfront_points_at_it(poc: Synthesized) -> None:
    (environment,) = of_type(poc, "AWS::ElasticBeanstalk::Environment").values()
    prefix = environment["Properties"]["CNAMEPrefix"]
    # "<project>-api-" + the first group of the stack id's UUID: never the same for two stacks
    suffix = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
    first = {"Fn::Select": [0, {"Fn::Split": ["-", suffix]}]}
    assert prefix == {"Fn::Join": ["", ["mlpoc-api-", first]]}
    (distribution,) = of_type(poc, "AWS::CloudFront::Distribution").values()
    (origin,) = distribution["Properties"]["DistributionConfig"]["Origins"]
    assert origin["DomainName"] == {
        "Fn::Join": [
            "",
            ["mlpoc-api-", first, ".", {"Ref": "AWS::Region"}, ".elasticbeanstalk.com"],
        ]
    }


def test_retain_keeps_the_api_logs(retain: Synthesized) -> None:
    assert (
        eb_options(retain)[("aws:elasticbeanstalk:cloudwatch:logs", "DeleteOnTerminate")] == "false"
    )


def test_the_api_gets_names_and_the_secret_arn_never_the_key(poc: Synthesized) -> None:
    properties = {
        name for (namespace, name) in eb_options(poc)
        if namespace == "aws:elasticbeanstalk:application:environment"
    }  # fmt: skip
    assert ENV_NAMES | {"MLPOC_IMAGE", "MLPOC_API_KEY_SECRET_ARN", "AWS_REGION"} <= properties
    assert "MLPOC_API_KEY" not in properties
    secret = next(
        s
        for k, s in of_type(poc, "AWS::SecretsManager::Secret").items()
        if k.startswith("ApiApiKey")
    )
    assert secret["Properties"]["GenerateSecretString"] == {
        "ExcludePunctuation": True,
        "PasswordLength": 40,
    }
    assert secret["DeletionPolicy"] == "Delete"


def test_the_instance_admits_http_from_cloudfront_only(poc: Synthesized) -> None:
    (group_id,) = [
        k for k in of_type(poc, "AWS::EC2::SecurityGroup") if k.startswith("ApiInstance")
    ]
    group = poc.service_json["Resources"][group_id]["Properties"]
    assert "SecurityGroupIngress" not in group  # nothing inline: the one rule is below
    rules = [
        r["Properties"]
        for r in of_type(poc, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    (rule,) = rules
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 80, 80)
    assert "CidrIp" not in rule
    assert rule["SourcePrefixListId"]["Fn::GetAtt"][1] == "PrefixLists.0.PrefixListId"
    (lookup,) = [
        r["Properties"]
        for r in poc.service_json["Resources"].values()
        if r["Type"] == "Custom::AWS"
    ]
    assert "com.amazonaws.global.cloudfront.origin-facing" in json.dumps(lookup)


def test_the_api_is_served_over_https_only(poc: Synthesized) -> None:
    (distribution,) = of_type(poc, "AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["AllowedMethods"] == [
        "GET",
        "HEAD",
        "OPTIONS",
        "PUT",
        "PATCH",
        "POST",
        "DELETE",
    ]
    (origin,) = config["Origins"]
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "http-only"
    assert "elasticbeanstalk.com" in json.dumps(origin["DomainName"])
    assert "https://" in json.dumps(poc.service_json["Outputs"]["ApiUrl"]["Value"])


def test_api_server_errors_raise_an_alarm(poc: Synthesized) -> None:
    alarms = [a["Properties"] for a in of_type(poc, "AWS::CloudWatch::Alarm").values()]
    (errors,) = [a for a in alarms if a.get("MetricName") == "ApplicationRequests5xx"]
    assert (errors["Namespace"], errors["Threshold"]) == ("AWS/ElasticBeanstalk", 0)


def dashboard(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    """The dashboard's name and body, with each CloudFormation reference shown as <Ref:Id>."""
    (resource,) = of_type(synth, "AWS::CloudWatch::Dashboard").values()
    parts = resource["Properties"]["DashboardBody"]["Fn::Join"][1]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<Ref:{part['Ref']}>"
        if "Fn::ImportValue" in part:
            return f"<Import:{part['Fn::ImportValue'].split(':', 1)[1]}>"
        if "Fn::GetAtt" in part:
            return f"<GetAtt:{'.'.join(part['Fn::GetAtt'])}>"
        raise AssertionError(f"unexpected token in the dashboard body: {part}")

    body: dict[str, Any] = json.loads("".join(text(p) for p in parts))
    return resource["Properties"]["DashboardName"], body


def widget(body: dict[str, Any], title: str) -> dict[str, Any]:
    found = [w for w in body["widgets"] if w["properties"].get("title") == title]
    assert len(found) == 1, [w["properties"].get("title") for w in body["widgets"]]
    return found[0]["properties"]


def metric_names(properties: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(namespace, metric, label) of every line of a graph widget."""
    return [(m[0], m[1], m[-1]["label"]) for m in properties["metrics"]]


def test_the_dashboard_shows_queue_depth_and_age_for_every_queue(poc: Synthesized) -> None:
    name, body = dashboard(poc)
    assert name == "mlpoc-pipeline"
    depth = widget(body, "Queue depth (visible messages)")
    assert metric_names(depth) == [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", role)
        for role in ("train", "predict", "events")
    ]
    queue_names = [m[3] for m in depth["metrics"]]
    assert queue_names == [
        "<Import:ExportsOutputFnGetAttTrainQueue7742BAB9QueueName505DF9E4>",
        "<Import:ExportsOutputFnGetAttPredictQueueF6966F18QueueNameE8E224FE>",
        "<Import:ExportsOutputFnGetAttEventsQueue7396B467QueueNameB3837C48>",
    ]
    dead = widget(body, "Dead-letter queues (messages)")
    assert [m[3] for m in dead["metrics"]] == [
        "<Import:ExportsOutputFnGetAttTrainDeadLetterE07D5F83QueueName18B75AAD>",
        "<Import:ExportsOutputFnGetAttPredictDeadLetterB00F165CQueueNameB7AA301C>",
        "<Import:ExportsOutputFnGetAttEventsDeadLetterAD9E9907QueueName71445E97>",
    ]
    age = widget(body, "Oldest message age (seconds)")
    assert {m[1] for m in age["metrics"]} == {"ApproximateAgeOfOldestMessage"}
    assert all(m[-1]["stat"] == "Maximum" and m[-1]["period"] == 60 for m in age["metrics"])


def test_the_dashboard_counts_running_tasks_of_both_worker_services(poc: Synthesized) -> None:
    _, body = dashboard(poc)
    tasks = widget(body, "Running worker tasks")
    assert metric_names(tasks) == [
        ("ECS/ContainerInsights", "RunningTaskCount", "train"),
        ("ECS/ContainerInsights", "RunningTaskCount", "predict"),
    ]
    assert [(m[3], m[5]) for m in tasks["metrics"]] == [
        ("<Ref:WorkerCluster>", "<GetAtt:WorkersTrainService2365DA1F.Name>"),
        ("<Ref:WorkerCluster>", "<GetAtt:WorkersPredictService5F19ED1B.Name>"),
    ]


def test_the_dashboard_reads_job_durations_and_failures_from_the_worker_logs(
    poc: Synthesized,
) -> None:
    _, body = dashboard(poc)
    sources = "SOURCE '<Ref:WorkersTrainLogs18AF895A>' | SOURCE '<Ref:WorkersPredictLogsD2235882>'"
    durations = widget(body, "Job durations (seconds, succeeded jobs, by worker log group)")
    assert durations["query"] == (
        f"{sources} | fields duration_ms / 1000 as seconds\n"
        "| filter event = 'job.succeeded'\n"
        "| stats avg(seconds) as avg_s, max(seconds) as max_s by bin(15m), @log"
    )
    failures = widget(body, "Job failures (failed, gave up, rejected, lease lost)")
    assert failures["query"] == (
        f"{sources} | fields @timestamp, event, job_id, reason\n"
        "| filter event in ['job.failed', 'job.gave_up', 'job.rejected', 'job.lease_lost']\n"
        "| sort @timestamp desc\n"
        "| limit 50"
    )


def test_the_dashboard_shows_api_latency_and_5xx_from_enhanced_health(poc: Synthesized) -> None:
    _, body = dashboard(poc)
    environment = next(iter(of_type(poc, "AWS::ElasticBeanstalk::Environment")))
    latency = widget(body, "API latency, p99 (seconds)")
    errors = widget(body, "API 5xx answers")
    assert latency["metrics"] == [
        [
            "AWS/ElasticBeanstalk", "ApplicationLatencyP99", "EnvironmentName",
            f"<Ref:{environment}>", {"label": "p99", "period": 60, "stat": "Maximum"},
        ]
    ]  # fmt: skip
    assert errors["metrics"] == [
        [
            "AWS/ElasticBeanstalk", "ApplicationRequests5xx", "EnvironmentName",
            f"<Ref:{environment}>", {"label": "5xx", "period": 60, "stat": "Sum"},
        ]
    ]  # fmt: skip


def test_the_stack_outputs_the_dashboards_address(poc: Synthesized) -> None:
    url = poc.service_json["Outputs"]["DashboardUrl"]["Value"]
    assert "#dashboards:name=" in json.dumps(url)


RUNTIME_ROLE_IDS = {
    "train": "WorkersTrainTaskRole",
    "predict": "WorkersPredictTaskRole",
    "api": "ApiInstanceRole",
    "upload": "DatasetUploadedRole",
}


def role_statements(synth: Synthesized, runtime_role: str) -> list[dict[str, Any]]:
    role = next(
        k
        for k in of_type(synth, "AWS::IAM::Role")
        if k.startswith(RUNTIME_ROLE_IDS[runtime_role]) and "Default" not in k
    )
    return [
        s
        for p in of_type(synth, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def object_patterns(statement: dict[str, Any], export: str) -> set[str]:
    """The key patterns a statement names in one bucket (``datasets/*``) by its ARN export."""
    found = set()
    for resource in as_list(statement["Resource"]):
        parts = resource.get("Fn::Join", ["", []])[1] if isinstance(resource, dict) else []
        if parts and export in json.dumps(parts[0]):
            found.add(parts[1].lstrip("/"))
    return found


@pytest.mark.parametrize("runtime_role", bucket_layout.RUNTIME_ROLES)
def test_bucket_grants_are_exactly_the_layouts(poc: Synthesized, runtime_role: str) -> None:
    exports = {"data": "DataBucketArn", "models": "ModelBucketArn"}
    reads: set[tuple[str, str]] = set()
    writes: set[tuple[str, str]] = set()
    for statement in role_statements(poc, runtime_role):
        actions = as_list(statement["Action"])
        for bucket, export in exports.items():
            for pattern in object_patterns(statement, export):
                if "s3:GetObject*" in actions:
                    reads.add((bucket, pattern))
                if "s3:PutObject" in actions:
                    writes.add((bucket, pattern))
                # grant_put, never grant_read_write: no runtime role deletes an object
                assert not any(a.startswith("s3:DeleteObject") for a in actions), statement
    assert reads == {
        (p.bucket, p.pattern) for p in bucket_layout.PREFIXES if runtime_role in p.read_by
    }
    assert writes == {
        (p.bucket, p.pattern) for p in bucket_layout.PREFIXES if runtime_role in p.written_by
    }


@pytest.mark.parametrize("runtime_role", bucket_layout.RUNTIME_ROLES)
def test_table_grants_are_exactly_the_actions_the_code_calls(
    poc: Synthesized, runtime_role: str
) -> None:
    exports = {
        "jobs": "JobsTableArn",
        "models": "ModelsTableArn",
        "predictions": "PredictionsTableArn",
        "annotations": "AnnotationsTableArn",
        "features": "FeaturesTableArn",
    }
    granted: dict[str, set[str]] = {}
    for statement in role_statements(poc, runtime_role):
        actions = [a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")]
        for table, export in exports.items():
            if actions and export in json.dumps(statement["Resource"]):
                granted.setdefault(table, set()).update(a.split(":")[1] for a in actions)
    expected = {
        table: set(by_role[runtime_role])  # type: ignore[index]
        for table, by_role in TABLE_ACTIONS.items()
        if runtime_role in by_role
    }
    assert granted == expected


def test_functions_carry_powertools_in_their_code_not_a_layer_looked_up_at_deploy(
    poc: Synthesized,
) -> None:
    # an SSM parameter for the layer that a region lacks would fail the whole deploy
    for function in of_type(poc, "AWS::Lambda::Function").values():
        assert "Layers" not in function["Properties"]
    parameters = poc.service_json.get("Parameters", {})
    assert not [p for p in parameters.values() if "powertools" in json.dumps(p)]


def test_alarms_budgets_and_the_task_rule_may_publish_and_only_from_this_account(
    poc: Synthesized,
) -> None:
    (policy,) = of_type(poc, "AWS::SNS::TopicPolicy").values()
    allows = {
        s["Principal"]["Service"]: s["Condition"]
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    }
    # the policy replaces SNS's default one: CloudWatch must be named or no alarm is delivered
    assert set(allows) == {
        "cloudwatch.amazonaws.com",
        "budgets.amazonaws.com",
        "events.amazonaws.com",
    }
    for condition in allows.values():
        assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(allows["cloudwatch.amazonaws.com"]["ArnLike"])
    assert ":budgets::" in json.dumps(allows["budgets.amazonaws.com"]["ArnLike"])
    rule_arn = allows["events.amazonaws.com"]["ArnEquals"]["aws:SourceArn"]
    assert rule_arn["Fn::GetAtt"][0].startswith("AlertsWorkerTaskFailures")


def test_the_key_admits_service_principals_only_for_this_accounts_sources(
    poc: Synthesized,
) -> None:
    (key,) = [r for r in poc.data_json["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    services = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"] if "Service" in s["Principal"]
    ]
    by_sid = {s["Sid"]: s for s in services}
    assert set(by_sid) == {
        "AllowS3EventNotificationsToEncryptedQueues",
        "AllowCloudWatchAlarmsToEncryptedTopics",
        "AllowBudgetsToEncryptedTopics",
        "AllowEventBridgeRulesToEncryptedTopics",
        "AllowCloudWatchLogsOfThisAccount",
    }
    # CloudWatch Logs: this account's and region's log groups only, by encryption context
    logs_statement = by_sid.pop("AllowCloudWatchLogsOfThisAccount")
    assert logs_statement["Principal"]["Service"] == {
        "Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
    }
    assert logs_statement["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": {
                "Fn::Join": [
                    "",
                    [
                        "arn:", {"Ref": "AWS::Partition"}, ":logs:", {"Ref": "AWS::Region"},
                        ":", {"Ref": "AWS::AccountId"}, ":log-group:*",
                    ],
                ]
            }
        }
    }  # fmt: skip
    for sid, statement in by_sid.items():
        if sid == "AllowEventBridgeRulesToEncryptedTopics":
            # EventBridge sends no source keys to KMS; the topic policy names the rule instead
            assert "Condition" not in statement
            continue
        assert statement["Condition"]["StringEquals"] == {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"}
        }
    for sid in ("AllowCloudWatchAlarmsToEncryptedTopics", "AllowBudgetsToEncryptedTopics"):
        assert "aws:SourceArn" in by_sid[sid]["Condition"]["ArnLike"]


def of_type_in(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_every_log_group_and_secret_is_encrypted_with_the_project_key(poc: Synthesized) -> None:
    # the workers', the functions', the flow logs', aws-cdk-lib's helpers' log groups and the
    # two generated secrets: none is left on a service-owned default key
    data_groups = of_type_in(poc.data_json, "AWS::Logs::LogGroup")
    assert data_groups  # the data stack's helpers (auto-delete, bucket notifications)
    for group in data_groups.values():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["ProjectKey", "Arn"]}
    service_kinds = ("AWS::Logs::LogGroup", "AWS::SecretsManager::Secret")
    found = {k: v for kind in service_kinds for k, v in of_type(poc, kind).items()}
    assert len(found) >= 8
    for name, resource in found.items():
        key = resource["Properties"].get("KmsKeyId", {})
        assert key.get("Fn::ImportValue", "").startswith(
            "mlpoc-data:ExportsOutputFnGetAttProjectKeyArn"
        ), name


def test_an_alert_the_notify_function_cannot_deliver_is_kept_and_raises_an_alarm(
    poc: Synthesized,
) -> None:
    (config,) = of_type(poc, "AWS::Lambda::EventInvokeConfig").values()
    properties = config["Properties"]
    assert properties["FunctionName"]["Ref"].startswith("NotifyFunction")
    assert properties["MaximumRetryAttempts"] == 2
    queue = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert queue.startswith("UndeliveredAlerts")
    stored = poc.service_json["Resources"][queue]["Properties"]
    assert "Fn::ImportValue" in json.dumps(stored["KmsMasterKeyId"])  # the project key
    assert stored["MessageRetentionPeriod"] == 14 * 24 * 3600
    alarms = [a["Properties"] for a in of_type(poc, "AWS::CloudWatch::Alarm").values()]
    assert any(
        a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        for a in alarms
        if "Dimensions" in a
    )


def test_the_images_are_built_from_what_they_need_only(poc: Synthesized) -> None:
    # a README, Makefile, cdk.json or test edit must not rebuild the images and redeploy it all
    assets = json.loads((poc.outdir / "mlpoc-service.assets.json").read_text())
    images = assets["dockerImages"].values()
    # the workers' and the API's, each for ARM64 (Graviton: t4g by default)
    assert sorted((i["source"]["dockerBuildTarget"], i["source"]["platform"]) for i in images) == [
        ("api", "linux/arm64"),
        ("worker", "linux/arm64"),
    ]
    for image in images:
        context = poc.outdir / image["source"]["directory"]
        staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
        assert "containers/mlpoc/worker/loop.py" in staged
        outside = {p for p in staged if not p.startswith("containers/mlpoc/")}
        # the model plugins' packages, without their tests or an editable install's metadata
        plugins = {p for p in outside if p.startswith("containers/plugins/")}
        assert {
            "containers/plugins/lightgbm/pyproject.toml",
            "containers/plugins/lightgbm/mlpoc_lightgbm/__init__.py",
        } <= plugins
        assert not [p for p in plugins if "test_" in p or ".egg-info" in p]
        assert outside - plugins == {
            "pyproject.toml", "containers/Dockerfile", "containers/extras.py", ".dockerignore"
        }  # fmt: skip
        assert not [p for p in staged if "__pycache__" in p]
    # mlpoc:plugins reaches the worker's build (part of its hash), never the API's
    args = {i["source"]["dockerBuildTarget"]: i["source"].get("dockerBuildArgs") for i in images}
    assert args == {"worker": {"PLUGINS": "lightgbm"}, "api": None}


def test_cloudfront_proves_itself_to_the_api_with_a_generated_secret(poc: Synthesized) -> None:
    secrets = of_type(poc, "AWS::SecretsManager::Secret")
    (origin_secret,) = [k for k in secrets if k.startswith("ApiOriginSecret")]
    assert secrets[origin_secret]["Properties"]["GenerateSecretString"]["PasswordLength"] == 48
    (distribution,) = of_type(poc, "AWS::CloudFront::Distribution").values()
    (origin,) = distribution["Properties"]["DistributionConfig"]["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "X-Origin-Verify"
    # a dynamic reference: CloudFormation puts the value in at deploy, the template holds none
    assert header["HeaderValue"] == {
        "Fn::Join": [
            "",
            ["{{resolve:secretsmanager:", {"Ref": origin_secret}, ":SecretString:::}}"],
        ]
    }
    options = eb_options(poc)
    env = "aws:elasticbeanstalk:application:environment"
    assert options[(env, "MLPOC_ORIGIN_SECRET_ARN")] == {"Ref": origin_secret}  # the ARN only
    assert options[(env, "MLPOC_API_DOCS")] == "off"
    reads = [
        s
        for s in role_statements(poc, "api")
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
    ]
    readable = {json.dumps(r) for s in reads for r in as_list(s["Resource"])}
    assert json.dumps({"Ref": origin_secret}) in readable


def test_the_smoke_test_can_find_its_alarm_and_the_notify_log(poc: Synthesized) -> None:
    outputs = poc.service_json["Outputs"]
    alarm = outputs["SmokeAlarmName"]["Value"]["Ref"]
    assert alarm.startswith("AlertsTrainDeadLetters")
    assert poc.service_json["Resources"][alarm]["Type"] == "AWS::CloudWatch::Alarm"
    group = outputs["NotifyLogGroup"]["Value"]["Ref"]
    (function,) = [
        f for k, f in of_type(poc, "AWS::Lambda::Function").items() if k.startswith("Notify")
    ]
    assert function["Properties"]["LoggingConfig"]["LogGroup"] == {"Ref": group}


def test_the_predict_role_may_publish_the_monitors_alerts_with_the_project_key(
    poc: Synthesized,
) -> None:
    policy = role_policy_statements(poc, "WorkersPredictTaskRole")
    publish = [st for st in policy if st["Action"] == "sns:Publish"]
    assert publish == [{"Action": "sns:Publish", "Effect": "Allow", "Resource": {"Ref": next(
        k for k in poc.service_json["Resources"] if k.startswith("AlertsTopic")
        and poc.service_json["Resources"][k]["Type"] == "AWS::SNS::Topic")}}]  # fmt: skip
    # the topic is encrypted with the project key: publishing needs a data key from it
    (kms,) = [st for st in policy if "kms:GenerateDataKey*" in st["Action"]]
    assert kms["Resource"]["Fn::ImportValue"].startswith(
        "mlpoc-data:ExportsOutputFnGetAttProjectKey"
    )
    assert "kms:Decrypt" in kms["Action"]
    env = next(
        r["Properties"]["ContainerDefinitions"][0]["Environment"]
        for k, r in poc.service_json["Resources"].items()
        if k.startswith("WorkersPredictTask") and r["Type"] == "AWS::ECS::TaskDefinition"
    )
    names = {e["Name"]: e["Value"] for e in env}
    assert names["MLPOC_ALERTS_TOPIC_ARN"] == publish[0]["Resource"]
    assert (names["MLPOC_DRIFT_PSI"], names["MLPOC_DRIFT_SHARE"]) == ("0.2", "0.3")


def role_policy_statements(poc: Synthesized, prefix: str) -> list[dict[str, Any]]:
    role = next(k for k, v in of_type(poc, "AWS::IAM::Role").items() if k.startswith(prefix))
    return [
        statement
        for p in of_type(poc, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for statement in p["Properties"]["PolicyDocument"]["Statement"]
    ]

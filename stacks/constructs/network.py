"""A VPC for the workers (and the API): public subnets only, no NAT gateway.

Tasks get a public IP (no inbound rule admits anything) to reach ECR, CloudWatch and SQS;
S3 and DynamoDB, the bulk of the traffic, go through free gateway endpoints. A NAT gateway
would cost more than the whole idle PoC.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs

from constructs import Construct


class Network(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, log_retention: logs.RetentionDays
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        self.flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

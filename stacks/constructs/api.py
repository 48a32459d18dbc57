"""The API on Elastic Beanstalk (Docker on Amazon Linux 2023), reachable only over HTTPS.

* One instance (single-instance environment, no load balancer: the cheapest always-on piece),
  running ``containers/docker-compose.yml`` with the same image as the workers.
* HTTPS for a PoC without a domain: a CloudFront distribution with its default certificate in
  front. The instance's security group admits port 80 only from CloudFront's origin-facing
  managed prefix list (looked up at deploy time), so nobody reaches the API around CloudFront.
  The leg from CloudFront to the instance is plain HTTP; a team with a domain should put a
  certificate on the origin (see the README).
* The API key is generated into Secrets Manager; the instance reads it at start (the environment
  only carries the secret's ARN).
* Managed platform updates, immutable deployments (a new instance must be healthy before the old
  one goes), enhanced health with the 5xx count published as a metric, logs streamed to
  CloudWatch with a retention.
"""

from __future__ import annotations

import json

from aws_cdk import BundlingOptions, DockerImage, Fn, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_elasticbeanstalk as beanstalk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr

from constructs import Construct
from stacks.config import Config
from stacks.constructs.bundling import REPO_ROOT, CopyFiles
from stacks.constructs.nag import acknowledge

LOG_RETENTION_DAYS = 30
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"
AWS_CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"


class ApiService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vpc: ec2.IVpc,
        image: ecr_assets.DockerImageAsset,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.api_key = secretsmanager.Secret(
            self,
            "ApiKey",
            description=f"{config.project}: the API key (header X-API-Key)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=40, exclude_punctuation=True
            ),
            removal_policy=removal,
        )
        acknowledge(
            self.api_key,
            "AwsSolutions-SMG4",
            "A PoC's single API key: rotate it by putting a new value and restarting the API "
            "(README); an automatic rotation Lambda would cut off every client without notice.",
        )

        # -- who may reach the instance: CloudFront only ----------------------------------------
        prefix_list = cr.AwsCustomResource(
            self,
            "CloudFrontPrefixList",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={
                    "Filters": [{"Name": "prefix-list-name", "Values": [CLOUDFRONT_PREFIX_LIST]}]
                },
                physical_resource_id=cr.PhysicalResourceId.of(CLOUDFRONT_PREFIX_LIST),
                output_paths=["PrefixLists.0.PrefixListId"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
        )
        acknowledge(
            prefix_list.node.find_child("CustomResourcePolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeManagedPrefixLists has no resource-level permissions; the call only "
            "reads the id of AWS's CloudFront origin-facing prefix list.",
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=vpc,
            description="API instance: HTTP from the CloudFront origin-facing addresses only",
            allow_all_outbound=True,
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.prefix_list(prefix_list.get_response_field("PrefixLists.0.PrefixListId")),
            ec2.Port.tcp(80),
            "CloudFront origin-facing",
        )

        # -- roles ------------------------------------------------------------------------------
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AWSElasticBeanstalkWebTier")
            ],
        )
        acknowledge(
            self.instance_role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "AWSElasticBeanstalkWebTier]",
            "The instance policy Elastic Beanstalk documents for its agents (log streaming, "
            "health reporting); the API's own data access is granted separately, resource by "
            "resource.",
        )
        image.repository.grant_pull(self.instance_role)
        acknowledge(
            self.instance_role.node.find_child("DefaultPolicy"),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the image pull in the "
            "same policy is limited to the one repository.",
        )
        self.api_key.grant_read(self.instance_role)
        profile = iam.CfnInstanceProfile(
            self, "InstanceProfile", roles=[self.instance_role.role_name]
        )
        service_role = iam.Role(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal("elasticbeanstalk.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSElasticBeanstalkEnhancedHealth"
                ),
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy"
                ),
            ],
        )
        for policy in (
            "service-role/AWSElasticBeanstalkEnhancedHealth",
            "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy",
        ):
            acknowledge(
                service_role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
                "The service-role policies Elastic Beanstalk requires for enhanced health and "
                "managed platform updates; AWS maintains them with the platform.",
            )

        # -- the application --------------------------------------------------------------------
        bundle = s3_assets.Asset(
            self,
            "Bundle",
            path=str(REPO_ROOT / "containers"),
            bundling=BundlingOptions(
                image=DockerImage.from_registry("public.ecr.aws/docker/library/alpine:3"),
                local=CopyFiles({"containers/docker-compose.yml": "docker-compose.yml"}),  # type: ignore[arg-type]
                command=["false"],  # never used: the local bundler always succeeds
            ),
        )
        application = beanstalk.CfnApplication(
            self, "Application", description=f"{config.project} API"
        )
        version = beanstalk.CfnApplicationVersion(
            self,
            "Version",
            application_name=application.ref,
            source_bundle=beanstalk.CfnApplicationVersion.SourceBundleProperty(
                s3_bucket=bundle.s3_bucket_name, s3_key=bundle.s3_object_key
            ),
        )
        # Beanstalk CNAMEs are global per region: a suffix from the stack's own id (a UUID made
        # at creation) keeps every deployer's different; it never changes for the stack's life
        stack_uuid = Fn.select(2, Fn.split("/", stack.stack_id))
        self.cname_prefix = Fn.join(
            "", [f"{config.project}-api-", Fn.select(0, Fn.split("-", stack_uuid))]
        )
        properties = {
            **environment,
            "MLPOC_IMAGE": image.image_uri,
            "AWS_REGION": stack.region,
            "MLPOC_API_KEY_SECRET_ARN": self.api_key.secret_arn,
        }

        def option(
            namespace: str, name: str, value: str
        ) -> beanstalk.CfnEnvironment.OptionSettingProperty:
            return beanstalk.CfnEnvironment.OptionSettingProperty(
                namespace=namespace, option_name=name, value=value
            )

        health_config = {
            "Version": 1,
            # the dashboard's two API graphs (each is a custom metric: 0.30 USD a month)
            "CloudWatchMetrics": {
                "Environment": {"ApplicationRequests5xx": 60, "ApplicationLatencyP99": 60}
            },
        }
        self.environment = beanstalk.CfnEnvironment(
            self,
            "Environment",
            application_name=application.ref,
            version_label=version.ref,
            solution_stack_name=config.eb_solution_stack,
            cname_prefix=self.cname_prefix,
            description=f"{config.project} API (Docker compose, single instance)",
            option_settings=[
                option("aws:elasticbeanstalk:environment", "EnvironmentType", "SingleInstance"),
                option("aws:elasticbeanstalk:environment", "ServiceRole", service_role.role_arn),
                option("aws:autoscaling:launchconfiguration", "IamInstanceProfile", profile.ref),
                option(
                    "aws:autoscaling:launchconfiguration",
                    "SecurityGroups",
                    self.security_group.security_group_id,
                ),
                # only this group: Beanstalk's default one would admit port 80 from anywhere,
                # around CloudFront
                option(
                    "aws:autoscaling:launchconfiguration", "DisableDefaultEC2SecurityGroup", "true"
                ),
                option("aws:autoscaling:launchconfiguration", "DisableIMDSv1", "true"),
                option("aws:autoscaling:launchconfiguration", "RootVolumeType", "gp3"),
                option("aws:ec2:instances", "InstanceTypes", config.api_instance_type),
                option("aws:ec2:vpc", "VPCId", vpc.vpc_id),
                option("aws:ec2:vpc", "Subnets", ",".join(s.subnet_id for s in vpc.public_subnets)),
                option("aws:ec2:vpc", "AssociatePublicIpAddress", "true"),
                option("aws:elasticbeanstalk:command", "DeploymentPolicy", "Immutable"),
                option("aws:elasticbeanstalk:managedactions", "ManagedActionsEnabled", "true"),
                option("aws:elasticbeanstalk:managedactions", "PreferredStartTime", "Sun:03:00"),
                option(
                    "aws:elasticbeanstalk:managedactions:platformupdate", "UpdateLevel", "minor"
                ),
                option("aws:elasticbeanstalk:healthreporting:system", "SystemType", "enhanced"),
                option(
                    "aws:elasticbeanstalk:healthreporting:system",
                    "ConfigDocument",
                    json.dumps(health_config),
                ),
                option("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs", "true"),
                option(
                    "aws:elasticbeanstalk:cloudwatch:logs",
                    "RetentionInDays",
                    str(LOG_RETENTION_DAYS),
                ),
                option(
                    "aws:elasticbeanstalk:cloudwatch:logs",
                    "DeleteOnTerminate",
                    str(not config.retain_data).lower(),
                ),
                *(
                    option("aws:elasticbeanstalk:application:environment", k, v)
                    for k, v in properties.items()
                ),
            ],
        )

        # -- HTTPS in front -----------------------------------------------------------------------
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.project} API (HTTPS)",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.HttpOrigin(
                    Fn.join("", [self.cname_prefix, f".{stack.region}.elasticbeanstalk.com"]),
                    protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
                    http_port=80,
                    origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
        )
        reasons = {
            "AwsSolutions-CFR1": "A PoC's users can be anywhere; no country is excluded.",
            "AwsSolutions-CFR2": "WAF costs at least 5 USD a month, a quarter of the PoC's idle "
            "budget; every route but /healthz needs the API key, and bodies are size-limited.",
            "AwsSolutions-CFR3": "Standard CloudFront logs need an ACL-enabled bucket; the kit's "
            "buckets enforce bucket-owner ownership (no ACLs). The API logs every request.",
            "AwsSolutions-CFR5": "The origin leg is HTTP to an instance that admits only "
            "CloudFront's origin-facing addresses (no TLS protocol is in use on it at all); "
            "with a domain, give the origin a certificate and switch the origin to HTTPS.",
            "AwsSolutions-CFR4": "Without a custom domain CloudFront serves its default "
            "*.cloudfront.net certificate, whose minimum TLS version cannot be raised; add a "
            "domain and an ACM certificate to enforce TLS 1.2.",
        }
        for finding, reason in reasons.items():
            acknowledge(self.distribution, finding, reason)
        acknowledge(
            self.environment,
            "AwsSolutions-EB4",
            "Instance logs stream to CloudWatch Logs with a 30-day retention (StreamLogs); "
            "rotating them to Elastic Beanstalk's account-wide S3 bucket would outlive destroy.",
        )
        # the singleton function behind AwsCustomResource (one per stack, id fixed by the library)
        provider = stack.node.find_child(AWS_CUSTOM_RESOURCE_PROVIDER).node.find_child(
            "ServiceRole"
        )
        acknowledge(
            provider,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "aws-cdk-lib's AwsCustomResource function writes only its own logs with this "
            "policy; its one call (DescribeManagedPrefixLists) is in a separate inline policy.",
        )

    @property
    def url(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"

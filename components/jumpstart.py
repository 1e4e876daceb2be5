"""A SageMaker JumpStart real-time endpoint: role, log group, model, endpoint config, endpoint, autoscaling, and the
schedule that deletes the endpoint at the stack's expiry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from planner.targets.jumpstart import (
    SELF_END_RETRY_ATTEMPTS,
    SELF_END_RETRY_MAX_AGE_S,
    EndpointSelfEnd,
    JumpStartEndpointPlan,
)

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"
SCHEDULER_SERVICE = "scheduler.amazonaws.com"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
# SageMaker creates ENIs in your subnets with the execution role when the model runs in a VPC. These EC2 calls take
# no resource-level scoping for Describe*; they are the set AWS documents for SageMaker VPC access.
VPC_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
               "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
               "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups")


@dataclass(frozen=True)
class JumpStartEndpointArgs:
    """`endpoint`: the planner's decisions (`plan.jumpstart`, planner/targets/jumpstart.py); `tags`: its tags."""

    endpoint: JumpStartEndpointPlan
    tags: Mapping[str, str]


class JumpStartEndpoint(pulumi.ComponentResource):
    """The hub content resolve recorded, served on a real-time endpoint that scales between min and max instances.

    The model reads the artifact prefix with ModelAccessConfig.AcceptEula exactly as configured (never set on the
    user's behalf). The execution role can read exactly that prefix, pull exactly the image's repository and write
    exactly the endpoint's log group; the log group is created here so it is tagged and goes with the stack. The
    endpoint config carries the planner's startup timeouts and volume decision; Application Auto Scaling tracks
    invocations per instance. At the stack's expiry a one-time EventBridge Scheduler schedule deletes the endpoint
    (`_self_end`), so its instances stop even when no reaper runs. Every taggable resource carries the stack's tags.
    """

    endpoint_name: pulumi.Output[str]
    endpoint_arn: pulumi.Output[str]
    role_arn: pulumi.Output[str]
    self_end_schedule_arn: pulumi.Output[str]

    def __init__(self, name: str, args: JumpStartEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("nemotron-deploy:index:JumpStartEndpoint", name, None, opts)
        spec, tags = args.endpoint, dict(args.tags)
        if spec.min_capacity > spec.max_capacity:
            raise ValueError(f"{spec.stack}: minCapacity {spec.min_capacity} > maxCapacity {spec.max_capacity}")
        child = pulumi.ResourceOptions(parent=self)

        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=spec.log_group_name, retention_in_days=30, tags=tags,
                                       opts=child)
        role = aws.iam.Role(
            f"{name}-role", description=f"nemotron-deploy {spec.stack}: SageMaker execution role of the endpoint",
            tags=tags, opts=child,
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": SAGEMAKER_SERVICE}, "Action": "sts:AssumeRole"}]}))
        access = aws.iam.RolePolicy(f"{name}-access", role=role.id, opts=child,
                                    policy=execution_policy(spec, logs.arn))
        # Declared before the endpoint and independent of it: the end is in place while the endpoint takes its
        # half hour to start, so an interrupted `pulumi up` does not leave an endpoint without one.
        end_role = self._self_end(name, spec.self_end, tags)

        container: dict = {
            "image": spec.image.uri,
            "mode": "SingleModel",
            "environment": dict(spec.environment),
            "model_data_source": {"s3_data_sources": [{
                "s3_uri": spec.artifact_s3_uri, "s3_data_type": spec.artifact_s3_data_type,
                "compression_type": spec.artifact_compression,
                "model_access_config": {"accept_eula": spec.accept_eula}}]},
        }
        model_args: dict = {"primary_container": container, "execution_role_arn": role.arn,
                            "enable_network_isolation": spec.network_isolation, "tags": tags}
        if spec.subnet_ids:
            model_args["vpc_config"] = {"subnets": list(spec.subnet_ids),
                                        "security_group_ids": list(spec.security_group_ids)}
        # SageMaker checks the role's access when the model is created: the policy must exist first.
        model = aws.sagemaker.Model(f"{name}-model", opts=pulumi.ResourceOptions(parent=self, depends_on=[access]),
                                    **model_args)

        variant: dict = {
            "variant_name": spec.variant_name, "model_name": model.name, "instance_type": spec.instance_type,
            "initial_instance_count": spec.initial_instance_count, "initial_variant_weight": 1,
            "model_data_download_timeout_in_seconds": spec.timeouts.download_s,
            "container_startup_health_check_timeout_in_seconds": spec.timeouts.startup_health_check_s,
        }
        if spec.volume.size_gb is not None:
            variant["volume_size_in_gb"] = spec.volume.size_gb
        config_args: dict = {"production_variants": [variant], "tags": tags}
        if spec.data_capture_s3_uri:
            config_args["data_capture_config"] = {
                "enable_capture": True, "initial_sampling_percentage": spec.data_capture_percentage,
                "destination_s3_uri": spec.data_capture_s3_uri,
                "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
                "capture_content_type_header": {"json_content_types": ["application/json"]}}
        config = aws.sagemaker.EndpointConfiguration(f"{name}-config", opts=child, **config_args)
        endpoint = aws.sagemaker.Endpoint(f"{name}-endpoint", name=spec.endpoint_name,
                                          endpoint_config_name=config.name, tags=tags,
                                          opts=pulumi.ResourceOptions(parent=self, depends_on=[logs]))

        target = aws.appautoscaling.Target(
            f"{name}-scaling-target", service_namespace="sagemaker", scalable_dimension=SCALABLE_DIMENSION,
            resource_id=pulumi.Output.concat("endpoint/", endpoint.name, f"/variant/{spec.variant_name}"),
            min_capacity=spec.min_capacity, max_capacity=spec.max_capacity, tags=tags, opts=child)
        aws.appautoscaling.Policy(
            f"{name}-scaling-policy", policy_type="TargetTrackingScaling", service_namespace=target.service_namespace,
            resource_id=target.resource_id, scalable_dimension=target.scalable_dimension, opts=child,
            target_tracking_scaling_policy_configuration={
                "target_value": spec.target_invocations_per_instance,
                "predefined_metric_specification": {"predefined_metric_type": SCALING_METRIC},
                "scale_in_cooldown": spec.scale_in_cooldown_s, "scale_out_cooldown": spec.scale_out_cooldown_s})
        # Deleting the endpoint deregisters its scalable target only when the caller may (SageMaker's "Delete
        # endpoints configured for auto scaling"): the end role may do that to exactly this target.
        aws.iam.RolePolicy(f"{name}-end-deregister", role=end_role.id, opts=child,
                           policy=deregister_policy(target.arn))

        self.endpoint_name = endpoint.name
        self.endpoint_arn = endpoint.arn
        self.role_arn = role.arn
        self.register_outputs({"endpoint_name": self.endpoint_name, "endpoint_arn": self.endpoint_arn,
                               "role_arn": self.role_arn, "self_end_schedule_arn": self.self_end_schedule_arn})

    def _self_end(self, name: str, end: EndpointSelfEnd, tags: dict[str, str]) -> aws.iam.Role:
        """The schedule group (tagged: schedules take no tags), the role Scheduler assumes and the one-time schedule.

        The account id comes from the group's ARN, so the trust condition and the endpoint ARN need no lookup.
        """
        child = pulumi.ResourceOptions(parent=self)
        group = aws.scheduler.ScheduleGroup(f"{name}-end-group", name=end.group_name, tags=tags, opts=child)
        account = group.arn.apply(lambda arn: arn.split(":")[4])
        role = aws.iam.Role(
            f"{name}-end-role", description=f"nemotron-deploy {end.endpoint_name}: EventBridge Scheduler deletes the "
                                            "endpoint at the stack's expiry", tags=tags, opts=child,
            assume_role_policy=scheduler_trust_policy(account, group.arn))
        delete = aws.iam.RolePolicy(f"{name}-end-delete", role=role.id, opts=child,
                                    policy=delete_endpoint_policy(end, account))
        schedule = aws.scheduler.Schedule(
            f"{name}-end", name=end.schedule_name, group_name=group.name,
            description=f"nemotron-deploy: delete endpoint {end.endpoint_name} at the stack's expiry",
            schedule_expression=end.schedule_expression, schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"}, action_after_completion="DELETE",
            target={"arn": end.target_arn, "role_arn": role.arn, "input": end.target_input,
                    "retry_policy": {"maximum_retry_attempts": SELF_END_RETRY_ATTEMPTS,
                                     "maximum_event_age_in_seconds": SELF_END_RETRY_MAX_AGE_S}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delete]))  # the role may act once it fires
        self.self_end_schedule_arn = schedule.arn
        return role


def scheduler_trust_policy(account: pulumi.Input[str], group_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """EventBridge Scheduler may assume the role, for schedules of this account's group only (confused deputy)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": SCHEDULER_SERVICE}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}, "ArnEquals": {"aws:SourceArn": group_arn}}}]})


def delete_endpoint_policy(end: EndpointSelfEnd, account: pulumi.Input[str]) -> pulumi.Output[str]:
    """One action on one resource: sagemaker:DeleteEndpoint on this stack's endpoint."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DeleteTheEndpoint", "Effect": "Allow", "Action": "sagemaker:DeleteEndpoint",
        "Resource": pulumi.Output.from_input(account).apply(end.endpoint_arn)}]})


def deregister_policy(scalable_target_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """One action on one resource: deregister this endpoint's scalable target (what DeleteEndpoint asks for)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DeregisterTheScalableTarget", "Effect": "Allow",
        "Action": "application-autoscaling:DeregisterScalableTarget", "Resource": scalable_target_arn}]})


def execution_policy(spec: JumpStartEndpointPlan, log_group_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Least privilege: the artifact prefix, the image's repository, the endpoint's log group; no wildcard action.

    ecr:GetAuthorizationToken and cloudwatch:PutMetricData take no resource by AWS design, so they have Resource "*"
    (the metrics one limited to the endpoint namespace).
    """
    p, artifact = spec.partition, spec.artifact
    bucket = f"arn:{p}:s3:::{artifact.bucket}"
    objects = f"{bucket}/{artifact.prefix}/*" if artifact.prefix else f"{bucket}/*"
    listing = [artifact.prefix, f"{artifact.prefix}/*"] if artifact.prefix else ["*"]
    statements: list[dict] = [
        {"Sid": "ArtifactList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
         "Condition": {"StringLike": {"s3:prefix": listing}}},
        {"Sid": "ArtifactRead", "Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
        {"Sid": "ImagePull", "Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                                             "ecr:BatchCheckLayerAvailability"],
         "Resource": spec.image.repository_arn(p)},
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        # The group and its streams: IAM names a group both with and without the ":*" suffix.
        {"Sid": "EndpointLogs", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream",
                                                               "logs:DescribeLogStreams", "logs:PutLogEvents"],
         "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":*")]},
        # Instance metrics (GPU memory, disk) go to the endpoint namespace; PutMetricData takes no resource.
        {"Sid": "EndpointMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}},
    ]
    if spec.data_capture_s3_uri:
        capture_bucket, _, capture_prefix = spec.data_capture_s3_uri.removeprefix("s3://").partition("/")
        capture_prefix = capture_prefix.strip("/")
        target = f"arn:{p}:s3:::{capture_bucket}/{capture_prefix}/*" if capture_prefix else \
            f"arn:{p}:s3:::{capture_bucket}/*"
        statements.append({"Sid": "DataCaptureWrite", "Effect": "Allow", "Action": "s3:PutObject",
                           "Resource": target})
    if spec.subnet_ids:
        statements.append({"Sid": "VpcInterfaces", "Effect": "Allow", "Action": list(VPC_ACTIONS), "Resource": "*"})
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})

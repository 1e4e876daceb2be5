"""The JumpStart endpoint the shipped `jumpstart` stack plans, created in moto as the component's API calls would."""

from __future__ import annotations

import json

from tests.jumpstart.stacks import STACKS_DIR, plan_of

PLAN = plan_of(STACKS_DIR, "jumpstart")
SPEC = PLAN.jumpstart


def deploy(session, name: str = SPEC.endpoint_name) -> dict:
    """What the component declares, as the SageMaker API calls Pulumi makes (moto validates the request shapes)."""
    sm = session.client("sagemaker")
    tags = [{"Key": k, "Value": v} for k, v in PLAN.tags.items()]
    role = session.client("iam").create_role(RoleName="js-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    sm.create_model(ModelName=f"{name}-model", ExecutionRoleArn=role, EnableNetworkIsolation=SPEC.network_isolation,
                    PrimaryContainer={"Image": SPEC.image.uri, "Mode": "SingleModel", "Environment": SPEC.environment,
                                      "ModelDataSource": {"S3DataSource": {
                                          "S3Uri": SPEC.artifact_s3_uri, "S3DataType": SPEC.artifact_s3_data_type,
                                          "CompressionType": SPEC.artifact_compression,
                                          "ModelAccessConfig": {"AcceptEula": True}}}}, Tags=tags)
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", Tags=tags, ProductionVariants=[{
        "VariantName": SPEC.variant_name, "ModelName": f"{name}-model", "InstanceType": SPEC.instance_type,
        "InitialInstanceCount": SPEC.initial_instance_count, "InitialVariantWeight": 1.0,
        "ModelDataDownloadTimeoutInSeconds": SPEC.timeouts.download_s,
        "ContainerStartupHealthCheckTimeoutInSeconds": SPEC.timeouts.startup_health_check_s}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config", Tags=tags)
    return {"sagemaker": sm, "runtime": session.client("sagemaker-runtime"),
            "autoscaling": session.client("application-autoscaling")}

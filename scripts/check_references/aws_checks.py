"""The online checks of the AWS kinds: managed policies, SSM parameters, public JumpStart models and EKS versions,
through read-only calls in us-east-1 (scripts/aws clients with short timeouts and no retries)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from planner.reference_checks import (
    ReferenceCheck,
    addon_check,
    aws_error,
    jumpstart_check,
    kubernetes_check,
    parameter_check,
    policy_check,
    unchecked,
)
from planner.references import Reference, reference
from scripts.aws import AwsClients, session_for, token_pages
from scripts.check_references.web import CONNECT_S, REQUEST_S, _describe

AWS_REGION = "us-east-1"  # public SSM parameters, the public hub and EKS versions are asked here
PUBLIC_HUB = "SageMakerPublicHub"


def _policy(client: Any, reference: Reference) -> ReferenceCheck:
    return policy_check(reference, client.get_policy(PolicyArn=reference.name)["Policy"])


def _parameter(client: Any, reference: Reference) -> ReferenceCheck:
    return parameter_check(reference, client.get_parameter(Name=reference.name)["Parameter"])


def _hub_models(client: Any, reference: Reference) -> ReferenceCheck:
    summaries = token_pages(client.list_hub_contents, "HubContentSummaries", most_pages=20, HubName=PUBLIC_HUB,
                            HubContentType="Model", NameContains=reference.name)
    return jumpstart_check(reference, summaries)


def _cluster_versions(client: Any, reference: Reference) -> ReferenceCheck:
    versions: list[dict] = []
    for page in client.get_paginator("describe_cluster_versions").paginate():
        versions += page.get("clusterVersions", [])
    return kubernetes_check(reference, versions)


def _addon_versions(client: Any, ref: Reference) -> ReferenceCheck:
    kubernetes = reference("eks-kubernetes-version").name
    addons: list[dict] = []
    for page in client.get_paginator("describe_addon_versions").paginate(addonName=ref.name,
                                                                         kubernetesVersion=kubernetes):
        addons += page.get("addons", [])
    return addon_check(ref, kubernetes, addons)


# kind -> (service, the IAM action the read-only role needs, the call)
AWS_CHECKS: dict[str, tuple[str, str, Callable[[Any, Reference], ReferenceCheck]]] = {
    "managed-policy": ("iam", "iam:GetPolicy", _policy),
    "ssm-parameter": ("ssm", "ssm:GetParameter", _parameter),
    "jumpstart-model": ("sagemaker", "sagemaker:ListHubContents", _hub_models),
    "kubernetes-version": ("eks", "eks:DescribeClusterVersions", _cluster_versions),
    "eks-addon": ("eks", "eks:DescribeAddonVersions", _addon_versions),
}


def check_aws(clients: AwsClients, reference: Reference) -> ReferenceCheck:
    """The AWS kinds, through read-only calls; a not-found error code means the name is gone."""
    service, action, call = AWS_CHECKS[reference.kind]
    client = clients.client(service)
    if reference.kind == "kubernetes-version" and not hasattr(client, "describe_cluster_versions"):
        return unchecked(reference, f"this botocore lacks {action}")
    try:
        return call(client, reference)
    except ClientError as err:
        error = err.response.get("Error", {})
        return aws_error(reference, action, error.get("Code", "Error"), error.get("Message", ""))


def _aws_host(clients: AwsClients, reference: Reference) -> str:
    return urlsplit(clients.client(AWS_CHECKS[reference.kind][0]).meta.endpoint_url).hostname or ""


def aws_clients_from_environment() -> tuple[AwsClients | None, str]:
    """Clients in us-east-1 with short timeouts and no retries, or None and why (no credentials, a bad profile)."""
    try:
        session = session_for(AWS_REGION)
        if session.get_credentials() is None:
            return None, "no AWS credentials"
    except BotoCoreError as err:
        return None, f"no AWS credentials ({_describe(err)})"
    config = Config(connect_timeout=CONNECT_S, read_timeout=REQUEST_S, retries={"total_max_attempts": 1})
    return AwsClients(session, config=config), ""



"""Offline checks against botocore's own service models: the instance types the catalogue names exist in the
API's enums, and the API calls the scripts make exist with the parameters they pass."""

from __future__ import annotations

import botocore.session
import pytest

from planner.hardware import GPUS, INSTANCE_TYPES

SESSION = botocore.session.get_session()


def enum(service: str, shape: str) -> set[str]:
    return set(SESSION.get_service_model(service).shape_for(shape).enum)


@pytest.mark.parametrize("name", [n for n, i in INSTANCE_TYPES.items() if i.platform == "ec2"])
def test_ec2_instance_types_are_in_the_ec2_api(name):
    assert name in enum("ec2", "InstanceType")


@pytest.mark.parametrize("name", [n for n, i in INSTANCE_TYPES.items() if i.platform == "sagemaker"])
def test_sagemaker_instance_types_are_endpoint_instance_types(name):
    assert name in enum("sagemaker", "ProductionVariantInstanceType")


@pytest.mark.parametrize("name", [n for n, i in INSTANCE_TYPES.items() if i.platform == "ec2" and i.usd_per_hour])
def test_each_priced_ec2_type_has_its_sagemaker_counterpart_where_sagemaker_hosts_it(name):
    """docs/sources.md#aws-gpu-instances: the catalogue models ml. types for endpoints; where SageMaker offers the
    on-demand EC2 type for hosting, the catalogue carries it too."""
    if f"ml.{name}" in enum("sagemaker", "ProductionVariantInstanceType"):
        assert f"ml.{name}" in INSTANCE_TYPES


def test_every_catalogue_gpu_type_names_a_catalogue_gpu():
    assert {i.gpu for i in INSTANCE_TYPES.values()} <= set(GPUS)


@pytest.mark.parametrize(("service", "operation", "members"), [
    ("sagemaker", "ListHubContents", {"HubName", "HubContentType", "NameContains", "MaxResults", "NextToken"}),
    ("sagemaker", "DescribeHubContent", {"HubName", "HubContentType", "HubContentName", "HubContentVersion"}),
    ("iam", "GetPolicy", {"PolicyArn"}),
    ("ssm", "GetParameter", {"Name"}),
])
def test_the_calls_the_scripts_make_exist_with_their_parameters(service, operation, members):
    shape = SESSION.get_service_model(service).operation_model(operation).input_shape
    assert members <= set(shape.members)

"""Offline checks against botocore's own service models: the instance types the catalogue names exist in the
API's enums, and the API calls the scripts make exist with the parameters they pass."""

from __future__ import annotations

import botocore.session
import pytest

from planner.hardware import INSTANCE_TYPES

SESSION = botocore.session.get_session()


def enum(service: str, shape: str) -> set[str]:
    return set(SESSION.get_service_model(service).shape_for(shape).enum)


@pytest.mark.parametrize("name", [n for n, i in INSTANCE_TYPES.items() if i.platform == "ec2"])
def test_ec2_instance_types_are_in_the_ec2_api(name):
    assert name in enum("ec2", "InstanceType")


@pytest.mark.parametrize("name", [n for n, i in INSTANCE_TYPES.items() if i.platform == "sagemaker"])
def test_sagemaker_instance_types_are_endpoint_instance_types(name):
    assert name in enum("sagemaker", "ProductionVariantInstanceType")


@pytest.mark.parametrize(("service", "operation", "members"), [
    ("sagemaker", "ListHubContents", {"HubName", "HubContentType", "NameContains", "MaxResults", "NextToken"}),
    ("sagemaker", "DescribeHubContent", {"HubName", "HubContentType", "HubContentName", "HubContentVersion"}),
    ("iam", "GetPolicy", {"PolicyArn"}),
    ("ssm", "GetParameter", {"Name"}),
])
def test_the_calls_the_scripts_make_exist_with_their_parameters(service, operation, members):
    shape = SESSION.get_service_model(service).operation_model(operation).input_shape
    assert members <= set(shape.members)

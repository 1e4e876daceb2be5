"""The only places the tests reach into another library's private state, each because no public way exists.

Everything else goes through public interfaces: moto's own HTTP API (`/moto-api/...`) for canned SageMaker answers,
boto3 clients against moto for AWS state, Pulumi's documented mocks for the program. Keep this list short; when a
library grows a public way, use it and delete the entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest


def allow_every_sagemaker_instance_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto refuses endpoint configs on instance types missing from its own list (ml.p5*, ml.p6* among them); AWS
    offers them. No setting changes moto's list, so its check is switched off for the test."""
    from moto.sagemaker.models import FakeEndpointConfig

    monkeypatch.setattr(FakeEndpointConfig, "validate_instance_type", lambda self, instance_type: None)


def publish_public_ssm_parameter(name: str, value: str, data_type: str, account_id: str, region: str) -> None:
    """AWS itself publishes the /aws/service/* parameters (the Deep Learning AMI ids); PutParameter refuses names
    under /aws, in AWS and in moto alike, so the parameter is written into moto's SSM backend directly."""
    from moto.ssm.models import Parameter, ssm_backends

    backend = ssm_backends[account_id][region]
    backend._parameters[name].append(Parameter(
        account_id=account_id, name=name, value=value, parameter_type="String", description=None,
        allowed_pattern=None, keyid=None, last_modified_date=datetime.now(UTC), version=1, data_type=data_type))


def policy_validate(policy) -> Callable:
    """The function the Pulumi policy engine calls for a ResourceValidationPolicy. pulumi_policy keeps it in a
    name-mangled attribute and offers no way to run a policy outside the engine (which needs the Pulumi CLI)."""
    return policy._ResourceValidationPolicy__validate

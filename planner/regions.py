"""The AWS regions a stack may name, and where the catalogue knows an instance type is not offered.

The list is botocore's EC2 endpoints data (partitions aws and aws-us-gov), kept here because the planner imports no
AWS library; tests/badinput/test_corpus.py checks that it still equals botocore's.
"""

from __future__ import annotations

from planner.hardware import INSTANCE_TYPES

AWS_REGIONS: tuple[str, ...] = (
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1",
    "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
    "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    "us-gov-east-1", "us-gov-west-1",
)
BOTOCORE_PARTITIONS = ("aws", "aws-us-gov")


def not_offered_in(instance_type: str, region: str) -> str | None:
    """What to use instead when the catalogue knows `instance_type` is not offered in `region`, else None."""
    known = INSTANCE_TYPES.get(instance_type)
    if known is None or region not in known.not_offered_in:
        return None
    return f"a type offered in {region} ({instance_type} is not; {known.note or 'see planner/hardware.py'})"

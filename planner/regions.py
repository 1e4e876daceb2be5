"""The AWS regions a stack may name, and where the catalogue knows an instance type is not offered.

The list is botocore's EC2 endpoints data (partitions aws and aws-us-gov), kept here because the planner imports no
AWS library; tests/badinput/test_corpus.py checks that it still equals botocore's.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Offering:
    """The regions where public data shows an instance family offered (docs/sources.md#aws-gpu-instances).

    `complete` is True only when AWS itself lists every region of the family: then the planner refuses the others.
    Otherwise the list is what third parties were seen running or pricing, and a region outside it is a caution
    (`offering_caution`), never a refusal: a family is often offered in more regions than anyone has published.
    """

    regions: tuple[str, ...]
    complete: bool
    source: str


# Keyed by family (the part before the dot, without SageMaker's "ml."). Families not listed: no regional data.
FAMILY_OFFERINGS: dict[str, Offering] = {
    "p6-b300": Offering(("us-west-2", "us-east-1", "us-gov-east-1"), False,
                        "unconfirmed: us-west-2 from a third-party price table (2025-12) and run logs; us-east-1 "
                        "from a third-party Capacity Block record (2026-09); us-gov-east-1 from a third-party article"),
    "p4de": Offering(("us-east-1", "us-west-2"), False,
                     "unconfirmed: the regions of AWS's 2022 launch announcement as recalled, not re-read"),
}


def family(instance_type: str) -> str:
    """The instance family of an EC2 or SageMaker type name: p6-b300 for p6-b300.48xlarge and ml.p6-b300.48xlarge."""
    return instance_type.removeprefix("ml.").split(".")[0]


def not_offered_in(instance_type: str, region: str) -> str | None:
    """What to use instead when the catalogue knows `instance_type` is not offered in `region`, else None: the
    type's own list of regions without it, or a family whose complete list of regions lacks `region`."""
    known = INSTANCE_TYPES.get(instance_type)
    if known is None:
        return None
    if region in known.not_offered_in:
        return f"a type offered in {region} ({instance_type} is not; {known.note or 'see planner/hardware.py'})"
    offering = FAMILY_OFFERINGS.get(family(instance_type))
    if offering is not None and offering.complete and region not in offering.regions:
        return (f"a type offered in {region} ({instance_type} is offered only in {', '.join(offering.regions)}; "
                f"{offering.source})")
    return None


def offering_caution(instance_type: str, region: str) -> str | None:
    """A caution when public data has not shown `instance_type` in `region` (an incomplete list), else None."""
    offering = FAMILY_OFFERINGS.get(family(instance_type))
    if offering is None or offering.complete or region in offering.regions:
        return None
    return (f"{instance_type} in {region}: not confirmed; public data shows the family in "
            f"{', '.join(offering.regions)} ({offering.source})")

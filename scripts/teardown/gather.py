"""The teardown's view of the account: every kind listed on its own (a listing that fails hides only its kind),
then linked (who holds what) and, for the global kinds, read once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from planner.reaper import GLOBAL_REGION, FoundResource
from planner.reaper_links import budgets_last
from scripts.teardown.common import PAGE_SIZE, Inventory, RegionListing
from scripts.teardown.links import link
from scripts.teardown.listings_ec2 import (
    _list_elastic_ips,
    _list_instances,
    _list_internet_gateways,
    _list_launch_templates,
    _list_nat_gateways,
    _list_network_interfaces,
    _list_placement_groups,
    _list_route_tables,
    _list_security_groups,
    _list_subnets,
    _list_volumes,
    _list_vpc_endpoints,
    _list_vpcs,
)
from scripts.teardown.listings_services import (
    _gather_eks,
    _gather_scalable_targets,
    _gather_secrets,
    _list_load_balancers,
    _list_sagemaker_endpoint_configs,
    _list_sagemaker_endpoints,
    _list_sagemaker_models,
    gather_budgets,
    gather_iam,
)

# Kinds whose holders only another kind's listing names, and that AWS would delete while still held (SageMaker
# deletes a config or a model that an endpoint uses): when that listing fails, they stay until a complete run.
HOLDERS_LISTED_BY = {"sagemaker:endpoint-config": ("sagemaker:endpoint",),
                     "sagemaker:model": ("sagemaker:endpoint",)}


def gather(clients,  regions: Iterable[str], page_size: int = PAGE_SIZE,
           stack: str | None = None) -> Inventory:
    """List every resource carrying an expires-at tag (and what holds it) in `regions`, and the global ones (IAM,
    AWS Budgets) once, through the first region. Each kind is listed on its own: a listing that fails, whatever the
    reason (a denied permission, an API the endpoint lacks, an unreadable answer), is recorded against its kind
    and hides nothing else. `stack` helps find an instance profile that lost its role."""
    inventory = Inventory()
    regions = list(regions)
    for region in regions:
        listing = RegionListing(clients, region, page_size)
        for kinds, operation, lister in REGIONAL_LISTINGS:
            try:
                found = lister(listing)
            except Exception as err:  # noqa: BLE001 - any failure hides only its own kinds
                inventory.failed(region, kinds, err, operation)
                found = []
            for kind in kinds:
                listing.found[kind] = [r for r in found if r.kind == kind]
        resources = [r for group in listing.found.values() for r in group]
        for kind, holder_kinds in HOLDERS_LISTED_BY.items():
            missing = [k for k in holder_kinds if (region, k) in inventory.unlisted]
            if missing:
                keep = f"{', '.join(missing)} could not be listed, so what uses it is unknown: kept until a " \
                       "complete run"
                resources = [replace(r, keep=keep) if r.kind == kind else r for r in resources]
        inventory.resources += link(region, resources, clients, page_size, inventory)
    if regions:
        stacks = {r.stack for r in inventory.resources if r.stack} | ({stack} if stack else set())
        for kinds, operation, lister in (((("iam:instance-profile", "iam:role"), "iam:GetAccountAuthorizationDetails",
                                           gather_iam),
                                          (("budgets:budget",), "budgets:DescribeBudgets", gather_budgets))):
            try:
                inventory.resources += lister(clients, regions[0], stacks)
            except Exception as err:  # noqa: BLE001 - any failure hides only its own kinds
                inventory.failed(GLOBAL_REGION, kinds, err, operation)
        inventory.resources = budgets_last(inventory.resources, inventory.listing_errors)
    return inventory


# is most likely to come from. EKS clusters and node groups, IAM roles and instance profiles, are read together.
REGIONAL_LISTINGS: tuple[tuple[tuple[str, ...], str, Callable[[RegionListing], list[FoundResource]]], ...] = (
    (("ec2:instance",), "ec2:DescribeInstances", _list_instances),
    (("ec2:volume",), "ec2:DescribeVolumes", _list_volumes),
    (("ec2:network-interface",), "ec2:DescribeNetworkInterfaces", _list_network_interfaces),
    (("ec2:security-group",), "ec2:DescribeSecurityGroups", _list_security_groups),
    (("ec2:launch-template",), "ec2:DescribeLaunchTemplates", _list_launch_templates),
    (("ec2:placement-group",), "ec2:DescribePlacementGroups", _list_placement_groups),
    (("ec2:vpc",), "ec2:DescribeVpcs", _list_vpcs),
    (("ec2:subnet",), "ec2:DescribeSubnets", _list_subnets),
    (("ec2:route-table",), "ec2:DescribeRouteTables", _list_route_tables),
    (("ec2:internet-gateway",), "ec2:DescribeInternetGateways", _list_internet_gateways),
    (("ec2:natgateway",), "ec2:DescribeNatGateways", _list_nat_gateways),
    (("ec2:elastic-ip",), "ec2:DescribeAddresses", _list_elastic_ips),
    (("ec2:vpc-endpoint",), "ec2:DescribeVpcEndpoints", _list_vpc_endpoints),
    (("sagemaker:endpoint",), "sagemaker:ListEndpoints", _list_sagemaker_endpoints),
    (("sagemaker:endpoint-config",), "sagemaker:ListEndpointConfigs", _list_sagemaker_endpoint_configs),
    (("sagemaker:model",), "sagemaker:ListModels", _list_sagemaker_models),
    (("elbv2:load-balancer",), "elasticloadbalancing:DescribeLoadBalancers", _list_load_balancers),
    (("eks:cluster", "eks:nodegroup"), "eks:ListClusters", _gather_eks),
    (("application-autoscaling:scalable-target",), "application-autoscaling:DescribeScalableTargets",
     _gather_scalable_targets),
    (("secretsmanager:secret",), "secretsmanager:ListSecrets", _gather_secrets),
)

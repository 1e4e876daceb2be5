"""`python -m scripts.teardown`: end a deployment, and reap whatever a destroy left behind, by tag.

  --stack S     run `pulumi destroy --yes -s S` (when the Pulumi CLI is on PATH), then sweep every resource tagged
                nemotron-deploy:stack=S
  --expired     sweep every toolkit resource whose nemotron-deploy:expires-at is past (the hourly reaper)

A dry run by default: it lists what it found and what it would do; `--yes` acts. It never touches a resource that
lacks any of the tags nemotron-deploy:stack, nemotron-deploy:owner and nemotron-deploy:expires-at, nor one whose
expiry does not parse. Credentials come from the standard chain (none found: one line naming what was checked);
boto3 honours AWS_ENDPOINT_URL.

Gather facts (paginated, tag-filtered listings, one kind at a time: a kind that cannot be listed is reported and
hides nothing else) -> plan (planner/reaper.py) -> act in dependency order, with bounded retries and waits (a line
on stderr at most every 30 s says what it waits for) -> gather again and verify.

Exit status: 0 when the dry run listed everything (whatever it found), or when --yes left no selected resource
behind; 1 when something selected remains (blocked, failed, still deleting at the wait bound), a kind could not be
listed (the view is incomplete; the rest is still reaped), no credentials were found, or `pulumi destroy` failed;
2 on bad input (one line naming the flag), nothing changed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.budget import BUDGET_NAME_PREFIX
from planner.cli import OneLineParser, PipeConsole, number, run_main
from planner.errors import PlanInputError, one_of
from planner.plan import TAG_EXPIRES_AT
from planner.reaper import (
    GLOBAL_REGION,
    TOOLKIT_TAGS,
    WAIT_AFTER,
    Deletion,
    FoundResource,
    ReapPlan,
    parse_expires_at,
    plan_reap,
)
from planner.stack_config import load_stack, stack_names
from scripts._aws import describe_error, missing_credentials, name_html_error_pages

PROG = "python -m scripts.teardown"
REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
REGION_PATTERN = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
PAGE_SIZE = 100  # EC2 describe_* accept 5..1000; smaller pages keep each answer quick
FILTER_CHUNK = 200  # values per EC2 filter
PULUMI_TIMEOUT_S = 3600
TAG_KEY_FILTER = [{"Name": "tag-key", "Values": [TAG_EXPIRES_AT]}]
IAM_PAGE_SIZE = 1000  # GetAccountAuthorizationDetails and ListInstanceProfiles: the most one page holds
TAGGING_TYPES = ["sagemaker:endpoint", "sagemaker:endpoint-config", "sagemaker:model",
                 "elasticloadbalancing:loadbalancer"]

# A delete that meets one of these is retried with backoff (bounded): something is still letting go.
RETRY_CODES = frozenset({
    "DependencyViolation", "ResourceInUse", "ResourceInUseException", "InvalidNetworkInterface.InUse", "VolumeInUse",
    "IncorrectState", "IncorrectInstanceState", "InvalidPlacementGroup.InUse", "RequestLimitExceeded", "Throttling",
    "ThrottlingException", "ResourceContention", "ConcurrentUpdateException", "OperationInProgress",
    "InvalidIPAddress.InUse", "DeleteConflict", "ConcurrentModification",
})
# A delete that meets one of these finds the resource already gone.
GONE_CODES = frozenset({
    "InvalidInstanceID.NotFound", "InvalidNetworkInterfaceID.NotFound", "InvalidVolume.NotFound",
    "InvalidGroup.NotFound", "InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateId.Malformed",
    "InvalidPlacementGroup.Unknown", "ResourceNotFoundException", "LoadBalancerNotFound", "ObjectNotFoundException",
    "InvalidVpcID.NotFound", "InvalidSubnetID.NotFound", "InvalidRouteTableID.NotFound",
    "InvalidInternetGatewayID.NotFound", "NatGatewayNotFound", "InvalidNatGatewayID.NotFound",
    "InvalidAllocationID.NotFound", "InvalidVpcEndpointId.NotFound", "InvalidVpcEndpoint.NotFound", "NoSuchEntity",
    "NotFoundException",
})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries and waits: how many attempts, how long between them, how long to wait for a deletion, and
    where the waits report their progress (a line on stderr at most every `progress_every_s`)."""

    attempts: int = 6
    first_delay_s: float = 2.0
    max_delay_s: float = 30.0
    wait_timeout_s: float = 900.0
    poll_interval_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    progress: Callable[[str], None] = field(default=lambda line: _say(line))
    progress_every_s: float = 30.0


def _say(line: str) -> None:
    """A progress line on stderr (stdout carries the report, or the JSON)."""
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _few(ids: list[str], shown: int = 3) -> str:
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class RegionalClients:
    """boto3 clients of one session, one per (service, region), made on first use.

    No endpoint_url is ever passed, so boto3's own AWS_ENDPOINT_URL handling applies; botocore retries throttling
    and 5xx answers in standard mode (bounded), and our own retries cover dependency errors.
    """

    def __init__(self, session: boto3.Session | None = None):
        self.session = session or boto3.Session()
        name_html_error_pages(self.session)  # an HTML error page is a one-line error, never a table cell
        self._config = Config(retries={"mode": "standard", "max_attempts": 5})
        self._clients: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self.session.client(service, region_name=region, config=self._config)
        return self._clients[key]


# ---- facts: what is there ---------------------------------------------------------------------------------------

@dataclass
class Inventory:
    """One listing of the regions: every resource found with its tags and links, and the listings that failed
    (`listing_errors`, one line each, and `unlisted`, the (region, kind) pairs they hid)."""

    resources: list[FoundResource] = field(default_factory=list)
    listing_errors: list[str] = field(default_factory=list)
    unlisted: list[tuple[str, str]] = field(default_factory=list)

    def failed(self, region: str, kinds: tuple[str, ...], err: BaseException, operation: str | None = None,
               what: str = "") -> None:
        """Record one failed listing: the kinds it hid, and why, in one line."""
        self.listing_errors.append(f"{region} {', '.join(kinds)}{what}: {describe_error(err, operation)}")
        self.unlisted += [(region, kind) for kind in kinds if (region, kind) not in self.unlisted]


def _tags(pairs: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in pairs or ()}


def _pages(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, ())


def _chunks(values: list[str], size: int = FILTER_CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


@dataclass
class RegionListing:
    """What one region's listings share: the clients, the page size, what the earlier listings found (by kind) and
    the tagging API's answer, read once for the kinds that take their tags from it."""

    clients: Any
    region: str
    page_size: int
    found: dict[str, list[FoundResource]] = field(default_factory=dict)
    _tagged: dict[str, dict[str, str]] | Exception | None = None

    def ec2(self) -> Any:
        return self.clients("ec2", self.region)

    def paging(self, most: int, **kwargs) -> dict:
        """Each describe call has its own MaxResults range; EC2's is 5 at least."""
        return {**kwargs, "PaginationConfig": {"PageSize": max(5, min(self.page_size, most))}}

    def tags_by_arn(self) -> dict[str, dict[str, str]]:
        """Tags of the SageMaker and ELBv2 resources carrying an expires-at tag (one paginated GetResources);
        its failure is every such kind's failure, and the call is not repeated for each."""
        if self._tagged is None:
            try:
                self._tagged = {_clean_arn(m["ResourceARN"]): _tags(m.get("Tags")) for m in _pages(
                    self.clients("resourcegroupstaggingapi", self.region), "get_resources",
                    "ResourceTagMappingList", TagFilters=[{"Key": TAG_EXPIRES_AT}], ResourceTypeFilters=TAGGING_TYPES,
                    ResourcesPerPage=min(self.page_size, 100))}
            except Exception as err:  # noqa: BLE001 - recorded by each kind that needed it
                self._tagged = err
        if isinstance(self._tagged, Exception):
            raise self._tagged
        return self._tagged


# Kinds whose holders only another kind's listing names, and that AWS would delete while still held (SageMaker
# deletes a config or a model that an endpoint uses): when that listing fails, they stay until a complete run.
HOLDERS_LISTED_BY = {"sagemaker:endpoint-config": ("sagemaker:endpoint",),
                     "sagemaker:model": ("sagemaker:endpoint",)}


def gather(clients: RegionalClients, regions: Iterable[str], page_size: int = PAGE_SIZE,
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
        inventory.resources += _link(region, resources, clients, page_size, inventory)
    if regions:
        stacks = {r.stack for r in inventory.resources if r.stack} | ({stack} if stack else set())
        for kinds, operation, lister in (((("iam:instance-profile", "iam:role"), "iam:GetAccountAuthorizationDetails",
                                           _gather_iam),
                                          (("budgets:budget",), "budgets:DescribeBudgets", _gather_budgets))):
            try:
                inventory.resources += lister(clients, regions[0], stacks)
            except Exception as err:  # noqa: BLE001 - any failure hides only its own kinds
                inventory.failed(GLOBAL_REGION, kinds, err, operation)
        inventory.resources = _budgets_last(inventory.resources, inventory.listing_errors)
    return inventory


def _list_instances(listing: RegionListing) -> list[FoundResource]:
    found = []
    for reservation in _pages(listing.ec2(), "describe_instances", "Reservations",
                              **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        for inst in reservation.get("Instances", ()):
            found.append(FoundResource(
                "ec2:instance", inst["InstanceId"], listing.region, _tags(inst.get("Tags")), inst["State"]["Name"],
                instance_type=inst.get("InstanceType"),
                attributes={"placement_group": (inst.get("Placement") or {}).get("GroupName", "")}))
    return found


def _list_volumes(listing: RegionListing) -> list[FoundResource]:
    found = []
    for volume in _pages(listing.ec2(), "describe_volumes", "Volumes", **listing.paging(500, Filters=TAG_KEY_FILTER)):
        holders = tuple(a["InstanceId"] for a in volume.get("Attachments", ()) if a.get("State") != "detached")
        found.append(FoundResource("ec2:volume", volume["VolumeId"], listing.region, _tags(volume.get("Tags")),
                                   volume.get("State"), in_use_by=holders))
    return found


def _list_network_interfaces(listing: RegionListing) -> list[FoundResource]:
    found = []
    for eni in _pages(listing.ec2(), "describe_network_interfaces", "NetworkInterfaces",
                      **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        attachment = eni.get("Attachment") or {}
        holders = (attachment["InstanceId"],) if attachment.get("InstanceId") else ()
        found.append(FoundResource("ec2:network-interface", eni["NetworkInterfaceId"], listing.region,
                                   _tags(eni.get("TagSet")), eni.get("Status"), in_use_by=holders,
                                   attributes={"description": eni.get("Description", "")}))
    return found


def _list_security_groups(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:security-group", group["GroupId"], listing.region, _tags(group.get("Tags")),
                          attributes={"name": group.get("GroupName", ""), "vpc": group.get("VpcId", "")})
            for group in _pages(listing.ec2(), "describe_security_groups", "SecurityGroups",
                                **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_launch_templates(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:launch-template", template["LaunchTemplateId"], listing.region,
                          _tags(template.get("Tags")), attributes={"name": template.get("LaunchTemplateName", "")})
            for template in _pages(listing.ec2(), "describe_launch_templates", "LaunchTemplates",
                                   **listing.paging(200, Filters=TAG_KEY_FILTER))]


def _list_placement_groups(listing: RegionListing) -> list[FoundResource]:
    # DescribePlacementGroups has no pagination: one call answers for the region
    return [FoundResource("ec2:placement-group", group.get("GroupId") or group["GroupName"], listing.region,
                          _tags(group.get("Tags")), group.get("State"), attributes={"name": group["GroupName"]})
            for group in listing.ec2().describe_placement_groups(Filters=TAG_KEY_FILTER).get("PlacementGroups", ())]


# What a stack's network is made of (VPCs, subnets, route tables, internet and NAT gateways, Elastic IPs and VPC
# endpoints): each a describe call filtered by tag-key=expires-at and paginated (DescribeAddresses has no pagination:
# one call answers for the region). The EC2 describes are used rather than the tagging API because they filter by
# tag on the server just as well and also return the state and links the plan needs.

def _list_vpcs(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:vpc", vpc["VpcId"], listing.region, _tags(vpc.get("Tags")), vpc.get("State"),
                          keep="the region's default VPC: never deleted" if vpc.get("IsDefault") else "")
            for vpc in _pages(listing.ec2(), "describe_vpcs", "Vpcs", **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_subnets(listing: RegionListing) -> list[FoundResource]:
    return [FoundResource("ec2:subnet", subnet["SubnetId"], listing.region, _tags(subnet.get("Tags")),
                          subnet.get("State"), attributes={"vpc": subnet.get("VpcId", "")})
            for subnet in _pages(listing.ec2(), "describe_subnets", "Subnets",
                                 **listing.paging(1000, Filters=TAG_KEY_FILTER))]


def _list_route_tables(listing: RegionListing) -> list[FoundResource]:
    found = []
    for table in _pages(listing.ec2(), "describe_route_tables", "RouteTables",
                        **listing.paging(100, Filters=TAG_KEY_FILTER)):
        links = [a for a in table.get("Associations", ())
                 if (a.get("AssociationState") or {}).get("State", "associated") in ("associated", "associating")]
        main = any(a.get("Main") for a in links)
        explicit = [a for a in links if not a.get("Main")]
        # the main route table goes with its VPC (it cannot be deleted on its own)
        found.append(FoundResource(
            "ec2:route-table", table["RouteTableId"], listing.region, _tags(table.get("Tags")),
            managed_by=table.get("VpcId") if main else None,
            attached_to=tuple(a.get("SubnetId") or a.get("GatewayId") for a in explicit
                              if a.get("SubnetId") or a.get("GatewayId")),
            attributes={"vpc": table.get("VpcId", ""),
                        "associations": tuple(a["RouteTableAssociationId"] for a in explicit)}))
    return found


def _list_internet_gateways(listing: RegionListing) -> list[FoundResource]:
    found = []
    for gateway in _pages(listing.ec2(), "describe_internet_gateways", "InternetGateways",
                          **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        vpcs = tuple(a["VpcId"] for a in gateway.get("Attachments", ()) if a.get("State") != "detached")
        found.append(FoundResource("ec2:internet-gateway", gateway["InternetGatewayId"], listing.region,
                                   _tags(gateway.get("Tags")), attached_to=vpcs, attributes={"vpcs": vpcs}))
    return found


def _list_nat_gateways(listing: RegionListing) -> list[FoundResource]:
    found = []
    for nat in _pages(listing.ec2(), "describe_nat_gateways", "NatGateways",
                      **listing.paging(1000, Filter=TAG_KEY_FILTER)):
        addresses = nat.get("NatGatewayAddresses", ())
        found.append(FoundResource(
            "ec2:natgateway", nat["NatGatewayId"], listing.region, _tags(nat.get("Tags")), nat.get("State"),
            attributes={"vpc": nat.get("VpcId", ""), "subnet": nat.get("SubnetId", ""),
                        "allocations": tuple(a["AllocationId"] for a in addresses if a.get("AllocationId")),
                        "interfaces": tuple(a["NetworkInterfaceId"] for a in addresses
                                            if a.get("NetworkInterfaceId"))}))
    return found


def _list_elastic_ips(listing: RegionListing) -> list[FoundResource]:
    found = []
    for address in listing.ec2().describe_addresses(Filters=TAG_KEY_FILTER).get("Addresses", ()):
        if not address.get("AllocationId"):
            continue  # EC2-Classic addresses no longer exist; nothing the toolkit made
        holder = address.get("InstanceId") or address.get("NetworkInterfaceId")
        found.append(FoundResource("ec2:elastic-ip", address["AllocationId"], listing.region,
                                   _tags(address.get("Tags")), in_use_by=(holder,) if holder else (),
                                   attributes={"public_ip": address.get("PublicIp", ""),
                                               "interface": address.get("NetworkInterfaceId") or ""}))
    return found


def _list_vpc_endpoints(listing: RegionListing) -> list[FoundResource]:
    found = []
    for endpoint in _pages(listing.ec2(), "describe_vpc_endpoints", "VpcEndpoints",
                           **listing.paging(1000, Filters=TAG_KEY_FILTER)):
        kind = endpoint.get("VpcEndpointType", "")
        found.append(FoundResource(
            "ec2:vpc-endpoint", endpoint["VpcEndpointId"], listing.region, _tags(endpoint.get("Tags")),
            (endpoint.get("State") or "").lower(),  # the API documents "Available", answers "available"
            instance_count=len(endpoint.get("SubnetIds") or ()) if kind == "Interface" else 0,
            attributes={"vpc": endpoint.get("VpcId", ""), "endpoint_type": kind,
                        "service": endpoint.get("ServiceName", ""),
                        "interfaces": tuple(endpoint.get("NetworkInterfaceIds") or ()),
                        "subnets": tuple(endpoint.get("SubnetIds") or ()),
                        "route_tables": tuple(endpoint.get("RouteTableIds") or ())}))
    return found


def _gather_secrets(listing: RegionListing) -> list[FoundResource]:
    """Secrets Manager secrets: one paginated ListSecrets filtered by tag key (a prefix match: the tags decide),
    including those already scheduled for deletion, whose name stays taken until they are deleted for good."""
    found = []
    for secret in _pages(listing.clients("secretsmanager", listing.region), "list_secrets", "SecretList",
                         Filters=[{"Key": "tag-key", "Values": [TAG_EXPIRES_AT]}], IncludePlannedDeletion=True,
                         PaginationConfig={"PageSize": min(listing.page_size, 100)}):
        found.append(FoundResource("secretsmanager:secret", secret["ARN"], listing.region, _tags(secret.get("Tags")),
                                   "scheduled-deletion" if secret.get("DeletedDate") else None,
                                   attributes={"name": secret["Name"]}))
    return found


def _gather_iam(clients, region: str, stacks: set[str]) -> list[FoundResource]:
    """IAM roles and instance profiles (global). The tagging API does not return IAM roles, and ListRoles returns
    no tags (one ListRoleTags per role would make calls grow with the account's roles), so one paginated
    GetAccountAuthorizationDetails(Filter=[Role]) reads every role with its tags, inline policy names, attached
    policies and instance profiles at once. An instance profile that lost its role is not in that answer:
    ListInstanceProfiles (paginated) finds it, and one GetInstanceProfile reads its tags, only for a profile
    without a role whose name starts with a known stack's name. Calls grow with pages, plus profiles of that kind.
    """
    iam = clients("iam", region)
    roles: list[dict] = []
    profiles: dict[str, dict] = {}  # ARN -> profile, with its roles
    for role in _pages(iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"],
                       PaginationConfig={"PageSize": IAM_PAGE_SIZE}):
        if TAG_EXPIRES_AT in _tags(role.get("Tags")):  # the tag-key filter EC2 applies server-side
            roles.append(role)
            for profile in role.get("InstanceProfileList", ()):
                profiles.setdefault(profile["Arn"], profile)
    prefixes = tuple(f"{name}-" for name in sorted(stacks))
    for profile in _pages(iam, "list_instance_profiles", "InstanceProfiles",
                          PaginationConfig={"PageSize": IAM_PAGE_SIZE}):
        if not profile.get("Roles") and prefixes and profile["InstanceProfileName"].startswith(prefixes):
            profiles.setdefault(profile["Arn"], profile)

    global_ = {"api_region": region}
    found: list[FoundResource] = []
    holders: dict[str, list[str]] = {}  # role name -> instance profiles it is in
    for arn, profile in sorted(profiles.items()):
        if "Tags" not in profile:  # listings may leave tags out; GetInstanceProfile has them
            profile = iam.get_instance_profile(InstanceProfileName=profile["InstanceProfileName"])["InstanceProfile"]
        role_names = tuple(r["RoleName"] for r in profile.get("Roles", ()))
        for name in role_names:
            holders.setdefault(name, []).append(arn)
        found.append(FoundResource("iam:instance-profile", arn, GLOBAL_REGION, _tags(profile.get("Tags")),
                                   attributes={**global_, "name": profile["InstanceProfileName"],
                                               "roles": role_names}))
    for role in roles:
        found.append(FoundResource(
            "iam:role", role["Arn"], GLOBAL_REGION, _tags(role.get("Tags")),
            in_use_by=tuple(holders.get(role["RoleName"], ())),
            attributes={**global_, "name": role["RoleName"],
                        "inline_policies": tuple(p["PolicyName"] for p in role.get("RolePolicyList", ())),
                        "managed_policies": tuple(p["PolicyArn"] for p in role.get("AttachedManagedPolicies", ()))}))
    return found


def _gather_budgets(clients, region: str, _stacks) -> list[FoundResource]:
    """AWS Budgets (global, per account): DescribeBudgets (paginated), then one ListTagsForResource for each budget
    named like the toolkit's (BUDGET_NAME_PREFIX); the tags decide, the name only spares the other budgets a call.
    Needs the account id: one GetCallerIdentity."""
    identity = clients("sts", region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    budgets = clients("budgets", region)
    found: list[FoundResource] = []
    try:
        listed = list(_pages(budgets, "describe_budgets", "Budgets", AccountId=account,
                             PaginationConfig={"PageSize": 100}))
    except ClientError as err:
        if _error_code(err) == "NotFoundException":  # an account without budgets answers so
            return found
        raise
    for budget in listed:
        name = budget["BudgetName"]
        if not name.startswith(BUDGET_NAME_PREFIX):
            continue
        arn = f"arn:{partition}:budgets::{account}:budget/{name}"
        tags = _tags(budgets.list_tags_for_resource(ResourceARN=arn).get("ResourceTags"))
        found.append(FoundResource("budgets:budget", arn, GLOBAL_REGION, tags,
                                   attributes={"api_region": region, "name": name, "account": account}))
    return found


def _budgets_last(resources: list[FoundResource], listing_errors: list[str]) -> list[FoundResource]:
    """A stack's budget goes only after everything else of that stack: it is what still watches the spend of
    whatever could not be deleted. Every other resource of its stack holds it (toolkit resources only: one whose
    expiry does not parse is not ours and holds nothing), and after a failed listing no budget goes at all: what
    the listing missed may still be running."""
    if listing_errors:
        keep = "a listing failed, so what is left of its stack is unknown: kept until a complete run"
        return [replace(r, keep=keep) if r.kind == "budgets:budget" else r for r in resources]
    by_stack: dict[str, list[str]] = {}
    for r in resources:
        if r.kind != "budgets:budget" and all(str(r.tags.get(key, "")).strip() for key in TOOLKIT_TAGS) \
                and parse_expires_at(r.tags[TAG_EXPIRES_AT]) is not None:
            by_stack.setdefault(r.stack, []).append(r.id)
    return [replace(r, in_use_by=tuple(sorted(by_stack.get(r.stack, ())))) if r.kind == "budgets:budget" and r.stack
            else r for r in resources]


_SAGEMAKER_ARN = re.compile(r"arn:[\w-]+:sagemaker:[\w-]*:\d*:(endpoint|endpoint-config|model)/([A-Za-z0-9-]+)")


def _clean_arn(text: str) -> str:
    # moto renders endpoint-config ARNs as "('arn:...',)"; real AWS does not. Take the ARN out either way.
    match = re.search(r"arn:[^'\"\s,()]+", text)
    return match.group(0) if match else text


def _sagemaker_key(arn: str) -> tuple[str, str]:
    """(kind, lower-case name): SageMaker lower-cases names in ARNs, so names are compared that way."""
    match = _SAGEMAKER_ARN.search(arn)
    return (match.group(1), match.group(2).lower()) if match else ("", arn)


def _sagemaker_tags(listing: RegionListing, kind: str) -> dict[str, dict[str, str]]:
    """Tags of the toolkit-tagged SageMaker resources of one kind (`endpoint`, ...), by lower-case name."""
    return {name: tags for arn, tags in listing.tags_by_arn().items() if ":sagemaker:"
            in arn for k, name in (_sagemaker_key(arn),) if k == kind}


def _list_sagemaker_endpoints(listing: RegionListing) -> list[FoundResource]:
    """Toolkit-tagged endpoints, each described (two calls) for its config, the config's models and its size."""
    tags = _sagemaker_tags(listing, "endpoint")
    if not tags:
        return []
    sm = listing.clients("sagemaker", listing.region)
    endpoints = []
    for summary in _pages(sm, "list_endpoints", "Endpoints", PaginationConfig={"PageSize": 100}):
        name = summary["EndpointName"].lower()
        if name not in tags:
            continue
        try:
            described = sm.describe_endpoint(EndpointName=summary["EndpointName"])
        except ClientError as err:
            if _is_gone(err):  # deleted between the listing and now
                continue
            raise
        instance_type, count, config, models = None, 0, {}, ()
        config_name = described.get("EndpointConfigName")
        if config_name:
            try:
                config = sm.describe_endpoint_config(EndpointConfigName=config_name)
            except ClientError:
                config = {}
            variants = config.get("ProductionVariants", [])
            current = {v["VariantName"]: v.get("CurrentInstanceCount", 0)
                       for v in described.get("ProductionVariants", ())}
            if variants:
                instance_type = variants[0].get("InstanceType")
                count = sum(current.get(v["VariantName"], v.get("InitialInstanceCount", 0)) for v in variants
                            if v.get("InstanceType") == instance_type)
            models = tuple(v["ModelName"].lower() for v in variants if v.get("ModelName"))
        endpoints.append(FoundResource(
            "sagemaker:endpoint", summary["EndpointArn"], listing.region, tags[name], summary.get("EndpointStatus"),
            instance_type=instance_type, instance_count=count,
            attributes={"name": summary["EndpointName"], "config": (config_name or "").lower(),
                        "config_arn": config.get("EndpointConfigArn", ""), "models": models}))
    return endpoints


def _list_sagemaker_endpoint_configs(listing: RegionListing) -> list[FoundResource]:
    """Toolkit-tagged endpoint configs, held by the endpoints found that use them."""
    tags = _sagemaker_tags(listing, "endpoint-config")
    if not tags:
        return []
    holders: dict[str, list[str]] = {}
    for endpoint in listing.found.get("sagemaker:endpoint", ()):
        holders.setdefault(endpoint.attributes["config"], []).append(endpoint.id)
    return [FoundResource("sagemaker:endpoint-config", summary["EndpointConfigArn"], listing.region,
                          tags[name], in_use_by=tuple(holders.get(name, ())),
                          attributes={"name": summary["EndpointConfigName"]})
            for summary in _pages(listing.clients("sagemaker", listing.region), "list_endpoint_configs",
                                  "EndpointConfigs", PaginationConfig={"PageSize": 100})
            for name in (summary["EndpointConfigName"].lower(),) if name in tags]


def _list_sagemaker_models(listing: RegionListing) -> list[FoundResource]:
    """Toolkit-tagged models, held by the configs of the endpoints found."""
    tags = _sagemaker_tags(listing, "model")
    if not tags:
        return []
    holders: dict[str, list[str]] = {}
    for endpoint in listing.found.get("sagemaker:endpoint", ()):
        for model in endpoint.attributes["models"]:
            if endpoint.attributes["config_arn"]:
                holders.setdefault(model, []).append(endpoint.attributes["config_arn"])
    return [FoundResource("sagemaker:model", summary["ModelArn"], listing.region, tags[name],
                          in_use_by=tuple(holders.get(name, ())), attributes={"name": summary["ModelName"]})
            for summary in _pages(listing.clients("sagemaker", listing.region), "list_models", "Models",
                                  PaginationConfig={"PageSize": 100})
            for name in (summary["ModelName"].lower(),) if name in tags]


def _list_load_balancers(listing: RegionListing) -> list[FoundResource]:
    """ELBv2 load balancers: tags from the tagging API, existence and state from DescribeLoadBalancers (the tagging
    API can still list what was just deleted)."""
    lb_tags = {arn: tags for arn, tags in listing.tags_by_arn().items() if ":elasticloadbalancing:" in arn}
    if not lb_tags:
        return []
    return [FoundResource("elbv2:load-balancer", lb["LoadBalancerArn"], listing.region, lb_tags[lb["LoadBalancerArn"]],
                          (lb.get("State") or {}).get("Code"), attributes={"name": lb.get("LoadBalancerName", "")})
            for lb in _pages(listing.clients("elbv2", listing.region), "describe_load_balancers", "LoadBalancers",
                             PaginationConfig={"PageSize": min(listing.page_size * 4, 400)})
            if lb["LoadBalancerArn"] in lb_tags]


def _gather_eks(listing: RegionListing) -> list[FoundResource]:
    """EKS clusters and node groups. The tagging API never returns EKS resources, and EKS has no tag filter: every
    cluster and node group is described (calls grow with the number of clusters and node groups)."""
    eks, region, page_size = listing.clients("eks", listing.region), listing.region, listing.page_size
    found: list[FoundResource] = []
    for name in _pages(eks, "list_clusters", "clusters", PaginationConfig={"PageSize": min(page_size, 100)}):
        cluster = eks.describe_cluster(name=name)["cluster"]
        nodegroup_arns = []
        for ng_name in _pages(eks, "list_nodegroups", "nodegroups", clusterName=name,
                              PaginationConfig={"PageSize": min(page_size, 100)}):
            ng = eks.describe_nodegroup(clusterName=name, nodegroupName=ng_name)["nodegroup"]
            nodegroup_arns.append(ng["nodegroupArn"])
            template = (ng.get("launchTemplate") or {}).get("id", "")
            found.append(FoundResource(
                "eks:nodegroup", ng["nodegroupArn"], region, ng.get("tags") or {}, ng.get("status"),
                instance_type=(ng.get("instanceTypes") or [None])[0],
                instance_count=int((ng.get("scalingConfig") or {}).get("desiredSize", 0)),
                attributes={"name": ng_name, "cluster": name, "launch_template": template}))
        found.append(FoundResource("eks:cluster", cluster["arn"], region, cluster.get("tags") or {},
                                   cluster.get("status"), in_use_by=tuple(nodegroup_arns), attributes={"name": name}))
    return found


def _gather_scalable_targets(listing: RegionListing) -> list[FoundResource]:
    """SageMaker variant scalable targets of the toolkit-tagged endpoints found; their own tags decide."""
    endpoints = {r.attributes["name"].lower() for r in listing.found.get("sagemaker:endpoint", ())}
    if not endpoints:
        return []
    aas, region, page_size = listing.clients("application-autoscaling", listing.region), listing.region, \
        listing.page_size
    targets = []
    for target in _pages(aas, "describe_scalable_targets", "ScalableTargets", ServiceNamespace="sagemaker",
                         PaginationConfig={"PageSize": min(page_size, 50)}):
        parts = target["ResourceId"].split("/")
        if len(parts) < 2 or parts[0] != "endpoint" or parts[1].lower() not in endpoints:
            continue
        arn = target.get("ScalableTargetARN")
        tags = aas.list_tags_for_resource(ResourceARN=arn).get("Tags", {}) if arn else {}
        targets.append(FoundResource(
            "application-autoscaling:scalable-target", arn or f"sagemaker/{target['ResourceId']}", region, tags,
            attributes={"name": target["ResourceId"], "resource_id": target["ResourceId"],
                        "dimension": target["ScalableDimension"], "namespace": "sagemaker"}))
    return targets


# Each kind's own listing, in order (a later one may read what an earlier one found), with the operation a failure
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


def _link(region: str, resources: list[FoundResource], clients, page_size: int,
          inventory: Inventory) -> list[FoundResource]:
    """Add the links one listing cannot see alone: who uses a security group, a subnet, a VPC or a placement
    group, which NAT gateway holds an Elastic IP, which gateway endpoint uses a route table, which node group
    launches an instance or uses a launch template. Each link listing is filtered by the ids found (200 per filter)
    and paginated, so calls grow with pages, not resources; none is made when there is nothing to link. A link
    listing that fails keeps its kind (what uses it is unknown) and is recorded in `inventory`."""
    clusters = {r.attributes["name"]: r.id for r in resources if r.kind == "eks:cluster"}
    nodegroups = {(r.attributes["cluster"], r.attributes["name"]): r.id for r in resources if r.kind == "eks:nodegroup"}
    load_balancers = {r.id.split(":loadbalancer/", 1)[-1]: r.id for r in resources if r.kind == "elbv2:load-balancer"}
    # interfaces AWS creates for a NAT gateway or an interface endpoint belong to it
    owners = {eni: r.id for r in resources if r.kind in ("ec2:natgateway", "ec2:vpc-endpoint")
              for eni in r.attributes.get("interfaces", ())}
    ec2 = clients("ec2", region)
    linked_kinds = ("ec2:security-group", "ec2:subnet", "ec2:vpc")
    ids = {kind: [r.id for r in resources if r.kind == kind] for kind in linked_kinds}
    holders: dict[str, set[str]] = {rid: set() for kind in linked_kinds for rid in ids[kind]}
    pg_names = [r.attributes["name"] for r in resources if r.kind == "ec2:placement-group"]
    pg_holders: dict[str, set[str]] = {n: set() for n in pg_names}

    def listing(operation: str, key: str, name: str, values: list[str]) -> Iterator[dict]:
        for chunk in _chunks(values):
            yield from _pages(ec2, operation, key, Filters=[{"Name": name, "Values": chunk}],
                              PaginationConfig={"PageSize": max(5, min(page_size, 100 if key == "RouteTables"
                                                                       else 1000))})

    def security_group_users() -> None:
        for eni in listing("describe_network_interfaces", "NetworkInterfaces", "group-id", ids["ec2:security-group"]):
            holder = eni_holder(eni, load_balancers, clusters, owners)
            for group in eni.get("Groups", ()):
                if group["GroupId"] in holders:
                    holders[group["GroupId"]].add(holder)

    def subnet_users() -> None:
        for eni in listing("describe_network_interfaces", "NetworkInterfaces", "subnet-id", ids["ec2:subnet"]):
            holders[eni["SubnetId"]].add(eni_holder(eni, load_balancers, clusters, owners))

    def vpc_contents() -> None:
        # whatever else lives in a toolkit VPC, toolkit or not, must go before it (the default security group and
        # the main route table go with it)
        for subnet in listing("describe_subnets", "Subnets", "vpc-id", ids["ec2:vpc"]):
            holders[subnet["VpcId"]].add(subnet["SubnetId"])
        for group in listing("describe_security_groups", "SecurityGroups", "vpc-id", ids["ec2:vpc"]):
            if group.get("GroupName") != "default":
                holders[group["VpcId"]].add(group["GroupId"])
        for table in listing("describe_route_tables", "RouteTables", "vpc-id", ids["ec2:vpc"]):
            if not any(a.get("Main") for a in table.get("Associations", ())):
                holders[table["VpcId"]].add(table["RouteTableId"])
        for gateway in listing("describe_internet_gateways", "InternetGateways", "attachment.vpc-id", ids["ec2:vpc"]):
            for attachment in gateway.get("Attachments", ()):
                if attachment.get("VpcId") in holders:
                    holders[attachment["VpcId"]].add(gateway["InternetGatewayId"])

    def placement_group_members() -> None:
        for chunk in _chunks(pg_names):
            for reservation in _pages(ec2, "describe_instances", "Reservations",
                                      Filters=[{"Name": "placement-group-name", "Values": chunk}],
                                      PaginationConfig={"PageSize": page_size}):
                for inst in reservation.get("Instances", ()):
                    if inst["State"]["Name"] != "terminated":
                        pg_holders[inst["Placement"]["GroupName"]].add(inst["InstanceId"])

    unlinked: dict[str, str] = {}  # kind -> why its resources stay: what uses them is unknown
    for kind, operation, find_users in (
            ("ec2:security-group", "ec2:DescribeNetworkInterfaces", security_group_users),
            ("ec2:subnet", "ec2:DescribeNetworkInterfaces", subnet_users),
            ("ec2:vpc", "ec2:DescribeSubnets", vpc_contents),
            ("ec2:placement-group", "ec2:DescribeInstances", placement_group_members)):
        try:
            find_users()
        except Exception as err:  # noqa: BLE001 - any failure holds back only this kind
            inventory.failed(region, (kind,), err, operation, what=" (what uses it)")
            unlinked[kind] = "what uses it could not be listed: kept until a complete run"
    templates_in_use: dict[str, set[str]] = {}
    for r in resources:
        if r.kind == "eks:nodegroup" and r.attributes.get("launch_template"):
            templates_in_use.setdefault(r.attributes["launch_template"], set()).add(r.id)
    nat_of_allocation = {a: r.id for r in resources if r.kind == "ec2:natgateway"
                         for a in r.attributes.get("allocations", ())}
    for r in resources:  # what the network's own listings already say: NAT gateways and endpoints in subnets
        if r.kind == "ec2:natgateway" and r.attributes.get("subnet") in holders:
            holders[r.attributes["subnet"]].add(r.id)
        elif r.kind == "ec2:vpc-endpoint":
            for subnet in r.attributes.get("subnets", ()):
                if subnet in holders:
                    holders[subnet].add(r.id)
    endpoints_of_table: dict[str, set[str]] = {}
    for r in resources:
        if r.kind == "ec2:vpc-endpoint":
            for table in r.attributes.get("route_tables", ()):
                endpoints_of_table.setdefault(table, set()).add(r.id)
    nats_in_vpc: dict[str, set[str]] = {}
    for r in resources:
        if r.kind == "ec2:natgateway":
            nats_in_vpc.setdefault(r.attributes.get("vpc", ""), set()).add(r.id)

    linked = []
    for r in resources:
        if r.kind in unlinked and not r.keep:
            r = replace(r, keep=unlinked[r.kind])
        if r.kind in ("ec2:security-group", "ec2:subnet", "ec2:vpc"):
            r = replace(r, in_use_by=tuple(sorted(holders.get(r.id, set()) - {r.id})))
            if r.kind == "ec2:security-group" and r.attributes.get("name") == "default":
                r = replace(r, managed_by=r.attributes.get("vpc") or None)  # goes with its VPC
        elif r.kind == "ec2:placement-group":
            r = replace(r, in_use_by=tuple(sorted(pg_holders.get(r.attributes["name"], ()))))
        elif r.kind == "ec2:launch-template":
            r = replace(r, in_use_by=tuple(sorted(templates_in_use.get(r.id, ()))))
        elif r.kind == "ec2:instance":
            r = replace(r, managed_by=instance_manager(r.tags, nodegroups))
        elif r.kind == "ec2:elastic-ip" and r.id in nat_of_allocation:
            r = replace(r, in_use_by=(nat_of_allocation[r.id],))
        elif r.kind == "ec2:elastic-ip" and r.attributes.get("interface") in owners:
            r = replace(r, in_use_by=(owners[r.attributes["interface"]],))
        elif r.kind == "ec2:route-table":
            r = replace(r, in_use_by=tuple(sorted(endpoints_of_table.get(r.id, ()))))
        elif r.kind == "ec2:internet-gateway":
            # a NAT gateway's public address keeps the gateway attached (detaching it first is refused)
            r = replace(r, in_use_by=tuple(sorted(n for v in r.attributes["vpcs"] for n in nats_in_vpc.get(v, ()))))
        linked.append(r)
    return linked


def eni_holder(eni: dict, load_balancers: dict[str, str], clusters: dict[str, str],
               owners: dict[str, str] | None = None) -> str:
    """What keeps a network interface (and so its security groups and subnet) in use: the instance it goes with,
    the NAT gateway, VPC endpoint, load balancer or EKS cluster that manages it, or the interface itself."""
    if owners and eni.get("NetworkInterfaceId") in owners:
        return owners[eni["NetworkInterfaceId"]]
    attachment = eni.get("Attachment") or {}
    # primary interfaces (device 0) and delete-on-termination ones go with their instance
    if attachment.get("InstanceId") and (attachment.get("DeleteOnTermination") or attachment.get("DeviceIndex") == 0):
        return attachment["InstanceId"]
    description = eni.get("Description") or ""
    if description.startswith("ELB "):  # "ELB app/<name>/<id>": the load balancer's ARN ends in the same
        suffix = description[4:]
        return load_balancers.get(suffix, f"load balancer {suffix}")
    if description.startswith("Amazon EKS "):
        name = description[len("Amazon EKS "):]
        return clusters.get(name, f"EKS cluster {name}")
    for prefix in ("Interface for NAT Gateway ", "VPC Endpoint Interface "):  # "... nat-0abc", "... vpce-0abc"
        if description.startswith(prefix):
            return description[len(prefix):].strip()
    return eni["NetworkInterfaceId"]


def instance_manager(tags: dict[str, str], nodegroups: dict[tuple[str, str], str]) -> str | None:
    """The node group or Auto Scaling group that launched an instance (terminating it directly would be undone)."""
    cluster, nodegroup = tags.get("eks:cluster-name"), tags.get("eks:nodegroup-name")
    if cluster and nodegroup:
        return nodegroups.get((cluster, nodegroup), f"EKS node group {cluster}/{nodegroup}")
    if tags.get("aws:autoscaling:groupName"):
        return f"Auto Scaling group {tags['aws:autoscaling:groupName']}"
    return None


# ---- act: delete in order, bounded ------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened to one planned deletion."""

    status: str  # deleted, already gone, removed with manager, failed, timed out waiting
    detail: str = ""


def _error_code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _is_gone(err: ClientError) -> bool:
    message = err.response.get("Error", {}).get("Message", "")
    return _error_code(err) in GONE_CODES or (
        _error_code(err) == "ValidationException" and ("Could not find" in message or "does not exist" in message))


def with_retries(call: Callable[[], Any], policy: RetryPolicy) -> Outcome:
    """Run one delete call; retry (bounded, doubling delay) while something still holds the resource."""
    delay = policy.first_delay_s
    for attempt in range(1, policy.attempts + 1):
        try:
            call()
            return Outcome("deleted")
        except ClientError as err:
            if _is_gone(err):
                return Outcome("already gone")
            if _error_code(err) not in RETRY_CODES or attempt == policy.attempts:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                return Outcome("failed", describe_error(err) + suffix)
        except BotoCoreError as err:
            if attempt == policy.attempts:
                return Outcome("failed", describe_error(err))
        except Exception as err:  # noqa: BLE001 - not an answer worth retrying; one resource fails, not the run
            return Outcome("failed", describe_error(err))
        policy.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)
    return Outcome("failed", "no attempt made")


def _api_region(r: FoundResource) -> str:
    """The region whose endpoint answers for a resource: its own, or for a global one the region it was listed in."""
    return r.attributes.get("api_region", r.region)


def _unless(codes: frozenset[str] | set[str], call: Callable[[], Any]) -> None:
    """Run a preliminary step of a deletion; an answer in `codes` means it is already done."""
    try:
        call()
    except ClientError as err:
        if _error_code(err) not in codes:
            raise


def _delete_vpc_endpoint(ec2, endpoint_id: str) -> None:
    """DeleteVpcEndpoints answers 200 and lists failures in Unsuccessful: raise them like any other error."""
    for item in ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint_id]).get("Unsuccessful", ()):
        error = item.get("Error") or {}
        raise ClientError({"Error": {"Code": error.get("Code", "Unsuccessful"), "Message": error.get("Message", "")}},
                          "DeleteVpcEndpoints")


def _delete_internet_gateway(ec2, r: FoundResource) -> None:
    for vpc in r.attributes.get("vpcs", ()):
        _unless({"Gateway.NotAttached"}, lambda vpc=vpc: ec2.detach_internet_gateway(
            InternetGatewayId=r.id, VpcId=vpc))
    ec2.delete_internet_gateway(InternetGatewayId=r.id)


def _delete_route_table(ec2, r: FoundResource) -> None:
    for association in r.attributes.get("associations", ()):
        _unless({"InvalidAssociationID.NotFound"}, lambda a=association: ec2.disassociate_route_table(
            AssociationId=a))
    ec2.delete_route_table(RouteTableId=r.id)


def _delete_instance_profile(iam, r: FoundResource) -> None:
    name = r.attributes["name"]
    for role in r.attributes.get("roles", ()):
        _unless({"NoSuchEntity"}, lambda role=role: iam.remove_role_from_instance_profile(
            InstanceProfileName=name, RoleName=role))
    iam.delete_instance_profile(InstanceProfileName=name)


def _delete_role(iam, r: FoundResource) -> None:
    """Detach the managed policies, delete the inline ones, then the role (IAM refuses while any remain)."""
    name = r.attributes["name"]
    for arn in r.attributes.get("managed_policies", ()):
        _unless({"NoSuchEntity"}, lambda arn=arn: iam.detach_role_policy(RoleName=name, PolicyArn=arn))
    for policy in r.attributes.get("inline_policies", ()):
        _unless({"NoSuchEntity"}, lambda policy=policy: iam.delete_role_policy(RoleName=name, PolicyName=policy))
    iam.delete_role(RoleName=name)


def _delete_call(clients, r: FoundResource) -> Callable[[], Any]:
    """The API calls that delete one resource (several where AWS needs a detach first), safe to repeat."""
    a, region = r.attributes, _api_region(r)
    ec2 = lambda: clients("ec2", region)  # noqa: E731 - made on first use, like every client
    calls: dict[str, Callable[[], Any]] = {
        "application-autoscaling:scalable-target": lambda: clients("application-autoscaling", region)
        .deregister_scalable_target(ServiceNamespace=a["namespace"], ResourceId=a["resource_id"],
                                    ScalableDimension=a["dimension"]),
        "sagemaker:endpoint": lambda: clients("sagemaker", region).delete_endpoint(EndpointName=a["name"]),
        "sagemaker:endpoint-config": lambda: clients("sagemaker", region)
        .delete_endpoint_config(EndpointConfigName=a["name"]),
        "sagemaker:model": lambda: clients("sagemaker", region).delete_model(ModelName=a["name"]),
        "eks:nodegroup": lambda: clients("eks", region).delete_nodegroup(clusterName=a["cluster"],
                                                                          nodegroupName=a["name"]),
        "eks:cluster": lambda: clients("eks", region).delete_cluster(name=a["name"]),
        "elbv2:load-balancer": lambda: clients("elbv2", region).delete_load_balancer(LoadBalancerArn=r.id),
        "ec2:instance": lambda: ec2().terminate_instances(InstanceIds=[r.id]),
        "ec2:natgateway": lambda: ec2().delete_nat_gateway(NatGatewayId=r.id),
        "ec2:elastic-ip": lambda: ec2().release_address(AllocationId=r.id),
        "ec2:vpc-endpoint": lambda: _delete_vpc_endpoint(ec2(), r.id),
        "ec2:network-interface": lambda: ec2().delete_network_interface(NetworkInterfaceId=r.id),
        "ec2:volume": lambda: ec2().delete_volume(VolumeId=r.id),
        "ec2:launch-template": lambda: ec2().delete_launch_template(LaunchTemplateId=r.id),
        "ec2:placement-group": lambda: ec2().delete_placement_group(GroupName=a["name"]),
        "ec2:security-group": lambda: ec2().delete_security_group(GroupId=r.id),
        "ec2:internet-gateway": lambda: _delete_internet_gateway(ec2(), r),
        "ec2:route-table": lambda: _delete_route_table(ec2(), r),
        "ec2:subnet": lambda: ec2().delete_subnet(SubnetId=r.id),
        "ec2:vpc": lambda: ec2().delete_vpc(VpcId=r.id),
        "secretsmanager:secret": lambda: clients("secretsmanager", region).delete_secret(
            SecretId=r.id, ForceDeleteWithoutRecovery=True),
        "iam:instance-profile": lambda: _delete_instance_profile(clients("iam", region), r),
        "iam:role": lambda: _delete_role(clients("iam", region), r),
        "budgets:budget": lambda: clients("budgets", region).delete_budget(AccountId=a["account"],
                                                                           BudgetName=a["name"]),
    }
    return calls[r.kind]


def _terminate_instances(clients, region: str, deletions: list[Deletion], policy: RetryPolicy,
                         outcomes: dict[str, Outcome]) -> None:
    """Terminate in batches of 1,000; a batch that fails is retried one instance at a time to isolate the cause."""
    ec2 = clients("ec2", region)
    ids = [d.resource.id for d in deletions]
    for chunk in (ids[i:i + 1000] for i in range(0, len(ids), 1000)):
        batch = with_retries(lambda chunk=chunk: ec2.terminate_instances(InstanceIds=chunk), policy)
        if batch.status == "deleted":
            outcomes.update({i: Outcome("deleted") for i in chunk})
            continue
        for instance_id in chunk:
            outcomes[instance_id] = with_retries(
                lambda instance_id=instance_id: ec2.terminate_instances(InstanceIds=[instance_id]), policy)


def _revoke_cross_references(clients, region: str, deletions: list[Deletion], outcomes: dict[str, Outcome]) -> None:
    """Remove the rules of the security groups about to go that point at other groups: a group another group's rule
    references cannot be deleted. Only the doomed groups' own rules are touched."""
    ec2 = clients("ec2", region)
    ids = [d.resource.id for d in deletions]
    for chunk in _chunks(ids):
        try:
            groups = list(_pages(ec2, "describe_security_groups", "SecurityGroups",
                                 Filters=[{"Name": "group-id", "Values": chunk}]))
        except Exception as err:  # noqa: BLE001 - these groups fail; the rest of the run goes on
            for gid in chunk:
                outcomes.setdefault(gid, Outcome("failed", f"listing rules: {describe_error(err)}"))
            continue
        for group in groups:
            for direction, revoke in (("IpPermissions", ec2.revoke_security_group_ingress),
                                      ("IpPermissionsEgress", ec2.revoke_security_group_egress)):
                referencing = [_group_pairs_only(p) for p in group.get(direction, ()) if p.get("UserIdGroupPairs")]
                if referencing:
                    try:
                        revoke(GroupId=group["GroupId"], IpPermissions=referencing)
                    except ClientError as err:
                        if not _is_gone(err):
                            outcomes.setdefault(group["GroupId"], Outcome("failed",
                                                                          f"revoking rules: {describe_error(err)}"))


def _group_pairs_only(permission: dict) -> dict:
    keep = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
    keep["UserIdGroupPairs"] = [{k: v for k, v in pair.items() if k in ("GroupId", "UserId")}
                                for pair in permission["UserIdGroupPairs"]]
    return keep


def _still_there(clients, region: str, kind: str, resources: list[FoundResource]) -> set[str]:
    """Ids among `resources` that still exist (not terminated, not deleted)."""
    if kind == "ec2:instance":
        ec2, ids, left = clients("ec2", region), [r.id for r in resources], set()
        for chunk in _chunks(ids):
            for reservation in _pages(ec2, "describe_instances", "Reservations",
                                      Filters=[{"Name": "instance-id", "Values": chunk}]):
                left |= {i["InstanceId"] for i in reservation["Instances"] if i["State"]["Name"] != "terminated"}
        return left
    if kind == "ec2:natgateway":  # deleted NAT gateways stay listed for about an hour, as "deleted"
        ec2, left = clients("ec2", region), set()
        for chunk in _chunks([r.id for r in resources]):
            for nat in _pages(ec2, "describe_nat_gateways", "NatGateways",
                              Filter=[{"Name": "nat-gateway-id", "Values": chunk}]):
                if nat.get("State") != "deleted":
                    left.add(nat["NatGatewayId"])
        return left
    left = set()
    for r in resources:
        try:
            if kind == "eks:nodegroup":
                clients("eks", region).describe_nodegroup(clusterName=r.attributes["cluster"],
                                                          nodegroupName=r.attributes["name"])
            elif kind == "eks:cluster":
                clients("eks", region).describe_cluster(name=r.attributes["name"])
            elif kind == "sagemaker:endpoint":
                clients("sagemaker", region).describe_endpoint(EndpointName=r.attributes["name"])
            elif kind == "ec2:vpc-endpoint":
                answer = clients("ec2", region).describe_vpc_endpoints(VpcEndpointIds=[r.id])["VpcEndpoints"]
                if all((e.get("State") or "").lower() == "deleted" for e in answer):
                    continue
            left.add(r.id)
        except ClientError as err:
            if not _is_gone(err):
                left.add(r.id)
    return left


def wait_until_gone(clients, region: str, kind: str, resources: list[FoundResource], policy: RetryPolicy) -> set[str]:
    """Poll (bounded by policy.wait_timeout_s) until the resources are gone; returns the ids still there. Says what
    it waits for and for how long through policy.progress, at most once every policy.progress_every_s."""
    started = policy.clock()
    deadline = started + policy.wait_timeout_s
    said_at: float | None = None
    while True:
        try:
            left = _still_there(clients, region, kind, resources)
        except Exception:  # noqa: BLE001 - an unanswered poll proves nothing gone; the bound still holds
            left = {r.id for r in resources}
        if not left or policy.clock() >= deadline:
            return left
        waited = policy.clock() - started
        if said_at is None or waited - said_at >= policy.progress_every_s:
            policy.progress(f"waiting for {len(left)} {kind} in {region} to go ({_few(sorted(left))}): "
                            f"{waited:.0f} s of at most {policy.wait_timeout_s:g} s")
            said_at = waited
        policy.sleep(min(policy.poll_interval_s, max(deadline - policy.clock(), 0)))
        resources = [r for r in resources if r.id in left]


def act(plan: ReapPlan, clients, policy: RetryPolicy) -> dict[str, Outcome]:
    """Carry out the plan step by step; every planned resource gets an outcome. A resource whose holder could not
    be deleted is not tried (AWS would refuse it, after the retries): it is reported with that holder."""
    outcomes: dict[str, Outcome] = {}
    for region, kind, action, deletions in plan.steps():
        deletions = [d for d in deletions if not _held_by_a_failure(d, outcomes)]
        if action == "with-manager":
            outcomes.update({d.resource.id: Outcome("removed with manager", d.note) for d in deletions})
            continue
        if action != "wait":
            if kind == "ec2:instance":
                _terminate_instances(clients, region, deletions, policy, outcomes)
            else:
                if kind == "ec2:security-group":
                    _revoke_cross_references(clients, region, deletions, outcomes)
                for d in deletions:
                    if d.resource.id not in outcomes:
                        outcomes[d.resource.id] = with_retries(_delete_call(clients, d.resource), policy)
        else:
            outcomes.update({d.resource.id: Outcome("deleted", f"was {d.resource.state}") for d in deletions})
        if kind in WAIT_AFTER:
            pending = [d.resource for d in deletions if outcomes[d.resource.id].status == "deleted"]
            for rid in wait_until_gone(clients, region, kind, pending, policy) if pending else ():
                outcomes[rid] = Outcome("timed out waiting", f"still there after {policy.wait_timeout_s:g} s")
    return outcomes


def _held_by_a_failure(d: Deletion, outcomes: dict[str, Outcome]) -> bool:
    """Record "not tried" for a deletion whose holder or manager was planned but did not go."""
    r = d.resource
    failed = sorted(h for h in (*r.in_use_by, *((r.managed_by,) if r.managed_by else ()))
                    if h in outcomes and outcomes[h].status not in ("deleted", "already gone", "removed with manager"))
    if failed:
        shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        outcomes[r.id] = Outcome("not tried", f"{shown} did not go")
    return bool(failed)


# ---- pulumi ----------------------------------------------------------------------------------------------------

def pulumi_destroy(stack: str, dry_run: bool, runner=subprocess.run) -> dict:
    """`pulumi destroy --yes -s STACK` when the CLI is on PATH; its output goes to stderr as it runs."""
    command = ["pulumi", "destroy", "--yes", "--non-interactive", "-s", stack]
    executable = shutil.which("pulumi")
    if executable is None:
        return {"ran": False, "command": command, "exit_code": None,
                "note": "pulumi CLI not on PATH: skipped `pulumi destroy`; sweeping by tag only"}
    if dry_run:
        return {"ran": False, "command": command, "exit_code": None, "note": "dry run: would run " + " ".join(command)}
    try:
        stream = sys.stderr.fileno()  # pulumi's progress goes straight to the terminal
    except (AttributeError, ValueError, OSError):
        stream = None  # stderr is not a file (captured): relay the output afterwards
    try:
        completed = runner([executable, *command[1:]], cwd=REPO, timeout=PULUMI_TIMEOUT_S, check=False,
                           stdout=stream if stream is not None else subprocess.PIPE,
                           stderr=stream if stream is not None else subprocess.STDOUT,
                           text=stream is None)
    except subprocess.TimeoutExpired:
        return {"ran": True, "command": command, "exit_code": None,
                "note": f"pulumi destroy still running after {PULUMI_TIMEOUT_S} s: stopped; sweeping by tag"}
    if stream is None and completed.stdout:
        sys.stderr.write(completed.stdout)
    note = "pulumi destroy finished" if completed.returncode == 0 else \
        f"pulumi destroy failed (exit {completed.returncode}); sweeping by tag"
    return {"ran": True, "command": command, "exit_code": completed.returncode, "note": note}


# ---- the command -----------------------------------------------------------------------------------------------

def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="destroy this stack and sweep what carries its tag")
    which.add_argument("--expired", action="store_true", help="sweep every toolkit resource past its expiry")
    parser.add_argument("--region", action="append", default=[], help="region to sweep (repeatable; default: the "
                                                                       "stack's, or the AWS config's)")
    parser.add_argument("--yes", action="store_true", help="act (default: dry run, list only)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--wait-timeout", type=number, default=900.0,
                        help="seconds to wait for each kind of deletion to finish (default 900)")
    parser.add_argument("--now", help="judge expiry as of this ISO 8601 time with a zone (default: now)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR)
    return parser


@dataclass(frozen=True)
class Request:
    """The validated command line."""

    stack: str | None
    regions: tuple[str, ...]
    profile: str | None
    dry_run: bool
    now: datetime
    wait_timeout_s: float


def validate(args, session_region: str | None) -> Request:
    """Check the flags; raises PlanInputError naming the flag and what is allowed."""
    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError
    except ValueError:
        raise PlanInputError("--now", args.now, "an ISO 8601 time with a zone, e.g. 2026-12-01T18:00:00Z") from None
    if not 1 <= args.wait_timeout <= 7200:
        raise PlanInputError("--wait-timeout", args.wait_timeout, "seconds from 1 to 7200")
    for region in args.region:
        if not REGION_PATTERN.fullmatch(region):
            raise PlanInputError("--region", region, "an AWS region name such as us-east-1")
    regions, profile = tuple(dict.fromkeys(args.region)), None
    if args.stack is not None:
        try:
            stack = load_stack(args.stacks_dir, args.stack)
        except PlanInputError as err:
            # a stack whose file is gone or broken can still be swept, given the region
            if not regions:
                allowed = (f"{one_of(stack_names(args.stacks_dir))} (or any name, with --region)"
                           if err.field == "stack" else f"a readable stack ({err}), or any name with --region")
                raise PlanInputError("--stack", args.stack, allowed) from None
        else:
            regions, profile = regions or (stack.region,), stack.aws_profile
    if not regions:
        if not session_region:
            raise PlanInputError("--region", None, "a region such as us-east-1 (none given and no default region "
                                                   "in the AWS configuration)")
        regions = (session_region,)
    return Request(args.stack, regions, profile, not args.yes, now.astimezone(UTC), args.wait_timeout)


def _money(value: float | None) -> str:
    """Dollars per hour as a person reads them: cents, or tenths of a cent below a dollar (an Elastic IP, $0.005)."""
    if value is None:
        return "n/a"
    return "-" if value == 0 else f"${value:,.3f}" if value < 1 else f"${value:,.2f}"


def _label(r: FoundResource) -> str:
    """EC2 ids read well; other kinds are known by name (their ids are ARNs)."""
    if r.kind.startswith("ec2:"):
        return r.id
    return r.attributes.get("name") or r.id


def report_json(request: Request, plan: ReapPlan, inventory: Inventory, outcomes: dict[str, Outcome],
                left: list[dict], pulumi: dict | None, exit_code: int) -> dict:
    document = plan.to_json()
    for entry in document["deletions"]:
        outcome = outcomes.get(entry["id"])
        entry["outcome"] = outcome.status if outcome else (_would(entry) if request.dry_run else None)
        entry["detail"] = outcome.detail if outcome else ""
    stopped = sum(d.usd_per_hour or 0 for d in plan.deletions
                  if outcomes.get(d.resource.id) and outcomes[d.resource.id].status in ("deleted", "already gone"))
    return {"mode": "stack" if request.stack else "expired", "dry_run": request.dry_run,
            "regions": list(request.regions), "pulumi": pulumi, **document,
            "usd_per_hour_stopped": round(stopped if not request.dry_run else plan.usd_per_hour_stopped, 3),
            "listing_errors": list(inventory.listing_errors),
            "unlisted": [{"region": region, "kind": kind} for region, kind in inventory.unlisted],
            "left": left, "exit_code": exit_code}


def _would(entry: dict) -> str:
    if entry["action"] == "with-manager":
        return f"would go: {entry['note']}"
    if entry["action"] == "wait":
        return f"would wait: {entry['note']}"
    return f"would {entry['action']}"


def print_report(document: dict, console: Console) -> None:
    mode = f"stack {document['stack']}" if document["mode"] == "stack" else "expired resources"
    found = document["found"]
    console.print(f"[bold]teardown[/] of {mode} in {', '.join(document['regions'])} as of {document['now']}"
                  f"{'  (dry run: nothing changed; --yes to act)' if document['dry_run'] else ''}")
    if document.get("pulumi"):
        console.print(f"  {escape(document['pulumi']['note'])}", highlight=False)
    console.print(f"  listed {found['total']} with an expires-at tag: {found['expired']} expired, {found['live']} "
                  f"live, {found['foreign']} foreign (left alone), {found['malformed']} with an unreadable expiry",
                  highlight=False)
    if document["deletions"]:
        table = Table(title_justify="left")
        for header in ("region", "kind", "resource", "stack", "expires-at", "state", "action", "$/h"):
            table.add_column(header, justify="right" if header == "$/h" else "left")
        for d in document["deletions"]:
            outcome = d["outcome"] or d["action"]
            if d.get("detail"):
                outcome += f": {d['detail']}"
            table.add_row(d["region"], d["kind"], escape(d["label"]), escape(d["stack"] or ""), d["expires_at"],
                          d["state"] or "", escape(outcome), _money(d["usd_per_hour"]))
        console.print(table)
    else:
        console.print("  nothing to delete", highlight=False)
    verb = "would stop" if document["dry_run"] else "stopped"
    unpriced = f" (n/a for {len(document['unpriced'])} of unknown price)" if document["unpriced"] else ""
    console.print(f"  {verb} {_money(document['usd_per_hour_stopped']) if document['usd_per_hour_stopped'] else '$0'}"
                  f"/hour of compute and network{unpriced}", highlight=False)
    for b in document["blocked"]:
        console.print(f"  [yellow]left:[/] {b['kind']} {escape(b['id'])}: {escape(b['reason'])}", highlight=False,
                      soft_wrap=True)
    for m in document["malformed"]:
        console.print(f"  [yellow]not ours:[/] {m['kind']} {escape(m['id'])}: {escape(m['reason'])}", highlight=False,
                      soft_wrap=True)
    for error in document["listing_errors"]:
        console.print(f"  [red]could not list[/] {escape(error)}", highlight=False, soft_wrap=True)
    for item in document["left"]:
        console.print(f"  [red]still there:[/] {item['kind']} {escape(item['id'])} ({escape(item['why'])})",
                      highlight=False, soft_wrap=True)


def still_selected(again: ReapPlan, outcomes: dict[str, Outcome]) -> list[dict]:
    """What the verifying listing still selects, with why: the outcome of its deletion, or the reason it was left."""
    left = []
    for d in again.deletions:
        outcome = outcomes.get(d.resource.id)
        why = (f"{outcome.status}: {outcome.detail}" if outcome and outcome.detail else outcome.status) if outcome \
            else "found only after the sweep"
        left.append({"region": d.resource.region, "kind": d.resource.kind, "id": d.resource.id, "why": why})
    left += [{"region": b.resource.region, "kind": b.resource.kind, "id": b.resource.id, "why": b.reason}
             for b in again.blocked]
    return left


def main(argv: list[str] | None = None, session: boto3.Session | None = None,
         policy: RetryPolicy | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        base = session or boto3.Session()
        request = validate(args, base.region_name)
    except PlanInputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    try:
        if session is None and request.profile:
            base = boto3.Session(profile_name=request.profile)
        problem = missing_credentials(base)
    except ProfileNotFound as err:
        problem = f"no AWS credentials: {err} (the stack's aws:profile)"
    if problem:  # one line, before anything is called: not "nothing to delete" and a credential error per listing
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 1
    clients = RegionalClients(base)
    policy = policy or RetryPolicy(wait_timeout_s=request.wait_timeout_s)
    pulumi = pulumi_destroy(request.stack, request.dry_run) if request.stack else None

    inventory = gather(clients, request.regions, stack=request.stack)
    plan = plan_reap(inventory.resources, request.now, request.stack)
    outcomes: dict[str, Outcome] = {}
    left: list[dict] = []
    if not request.dry_run:
        outcomes = act(plan, clients, policy)
        after = gather(clients, request.regions, stack=request.stack)
        inventory.listing_errors += [f"(verify) {e}" for e in after.listing_errors]
        inventory.unlisted += [u for u in after.unlisted if u not in inventory.unlisted]
        left = still_selected(plan_reap(after.resources, request.now, request.stack), outcomes)
    failed_pulumi = bool(pulumi and pulumi["ran"] and pulumi["exit_code"] != 0)
    exit_code = 1 if left or inventory.listing_errors or failed_pulumi else 0
    document = report_json(request, plan, inventory, outcomes, left, pulumi, exit_code)
    labels = {d.resource.id: _label(d.resource) for d in plan.deletions}
    for entry in document["deletions"]:
        entry["label"] = labels[entry["id"]]
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_report(document, PipeConsole(highlight=False, width=200))
    return exit_code


if __name__ == "__main__":
    sys.exit(run_main(main))

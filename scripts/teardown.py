"""`python -m scripts.teardown`: end a deployment, and reap whatever a destroy left behind, by tag.

  --stack S     run `pulumi destroy --yes -s S` (when the Pulumi CLI is on PATH), then sweep every resource tagged
                nemotron-deploy:stack=S
  --expired     sweep every toolkit resource whose nemotron-deploy:expires-at is past (the hourly reaper)

A dry run by default: it lists what it found and what it would do; `--yes` acts. It never touches a resource that
lacks any of the tags nemotron-deploy:stack, nemotron-deploy:owner and nemotron-deploy:expires-at, nor one whose
expiry does not parse. Credentials come from the standard chain; boto3 honours AWS_ENDPOINT_URL.

Gather facts (paginated, tag-filtered listings) -> plan (planner/reaper.py) -> act in dependency order, with bounded
retries and waits -> gather again and verify.

Exit status: 0 when the dry run listed everything (whatever it found), or when --yes left no selected resource
behind; 1 when something selected remains (blocked, failed, still deleting at the wait bound), a listing failed
(the view is incomplete) or `pulumi destroy` failed; 2 on bad input (one line naming the flag), nothing changed.
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
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planner.__main__ import OneLineParser
from planner.errors import PlanInputError, one_of
from planner.plan import TAG_EXPIRES_AT
from planner.reaper import WAIT_AFTER, Deletion, FoundResource, ReapPlan, plan_reap
from planner.stack_config import load_stack, stack_names

PROG = "python -m scripts.teardown"
REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"
REGION_PATTERN = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
PAGE_SIZE = 100  # EC2 describe_* accept 5..1000; smaller pages keep each answer quick
FILTER_CHUNK = 200  # values per EC2 filter
PULUMI_TIMEOUT_S = 3600
TAG_KEY_FILTER = [{"Name": "tag-key", "Values": [TAG_EXPIRES_AT]}]
TAGGING_TYPES = ["sagemaker:endpoint", "sagemaker:endpoint-config", "sagemaker:model",
                 "elasticloadbalancing:loadbalancer"]

# A delete that meets one of these is retried with backoff (bounded): something is still letting go.
RETRY_CODES = frozenset({
    "DependencyViolation", "ResourceInUse", "ResourceInUseException", "InvalidNetworkInterface.InUse", "VolumeInUse",
    "IncorrectState", "IncorrectInstanceState", "InvalidPlacementGroup.InUse", "RequestLimitExceeded", "Throttling",
    "ThrottlingException", "ResourceContention", "ConcurrentUpdateException", "OperationInProgress",
})
# A delete that meets one of these finds the resource already gone.
GONE_CODES = frozenset({
    "InvalidInstanceID.NotFound", "InvalidNetworkInterfaceID.NotFound", "InvalidVolume.NotFound",
    "InvalidGroup.NotFound", "InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateId.Malformed",
    "InvalidPlacementGroup.Unknown", "ResourceNotFoundException", "LoadBalancerNotFound", "ObjectNotFoundException",
})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries and waits: how many attempts, how long between them, how long to wait for a deletion."""

    attempts: int = 6
    first_delay_s: float = 2.0
    max_delay_s: float = 30.0
    wait_timeout_s: float = 900.0
    poll_interval_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


class RegionalClients:
    """boto3 clients of one session, one per (service, region), made on first use.

    No endpoint_url is ever passed, so boto3's own AWS_ENDPOINT_URL handling applies; botocore retries throttling
    in standard mode (bounded), and our own retries cover dependency errors.
    """

    def __init__(self, session: boto3.Session | None = None):
        self.session = session or boto3.Session()
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
    """One listing of the regions: every resource found with its tags and links, and the listings that failed."""

    resources: list[FoundResource] = field(default_factory=list)
    listing_errors: list[str] = field(default_factory=list)


def _tags(pairs: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in pairs or ()}


def _pages(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, ())


def _chunks(values: list[str], size: int = FILTER_CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def gather(clients: RegionalClients, regions: Iterable[str], page_size: int = PAGE_SIZE) -> Inventory:
    """List every resource carrying an expires-at tag (and what holds it) in `regions`; a failing listing is
    recorded, not fatal, so one missing permission does not hide the rest."""
    inventory = Inventory()
    for region in regions:
        found: dict[str, list[FoundResource]] = {}
        for name, lister in (("ec2", _gather_ec2), ("tagged", _gather_tagged), ("eks", _gather_eks),
                             ("application-autoscaling", _gather_scalable_targets)):
            try:
                found[name] = lister(clients, region, page_size, found)
            except (ClientError, BotoCoreError, NotImplementedError) as err:
                inventory.listing_errors.append(f"{region} {name}: {_describe_error(err)}")
                found[name] = []
        inventory.resources += _link(region, [r for group in found.values() for r in group], clients, page_size,
                                     inventory.listing_errors)
    return inventory


def _gather_ec2(clients, region: str, page_size: int, _found) -> list[FoundResource]:
    ec2 = clients("ec2", region)
    def paging(most: int) -> dict:  # each describe call has its own MaxResults range
        return {"Filters": TAG_KEY_FILTER, "PaginationConfig": {"PageSize": max(5, min(page_size, most))}}

    found: list[FoundResource] = []
    for reservation in _pages(ec2, "describe_instances", "Reservations", **paging(1000)):
        for inst in reservation.get("Instances", ()):
            found.append(FoundResource(
                "ec2:instance", inst["InstanceId"], region, _tags(inst.get("Tags")), inst["State"]["Name"],
                instance_type=inst.get("InstanceType"),
                attributes={"placement_group": (inst.get("Placement") or {}).get("GroupName", "")}))
    for volume in _pages(ec2, "describe_volumes", "Volumes", **paging(500)):
        holders = tuple(a["InstanceId"] for a in volume.get("Attachments", ()) if a.get("State") != "detached")
        found.append(FoundResource("ec2:volume", volume["VolumeId"], region, _tags(volume.get("Tags")),
                                   volume.get("State"), in_use_by=holders))
    for eni in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces", **paging(1000)):
        attachment = eni.get("Attachment") or {}
        holders = (attachment["InstanceId"],) if attachment.get("InstanceId") else ()
        found.append(FoundResource("ec2:network-interface", eni["NetworkInterfaceId"], region,
                                   _tags(eni.get("TagSet")), eni.get("Status"), in_use_by=holders,
                                   attributes={"description": eni.get("Description", "")}))
    for group in _pages(ec2, "describe_security_groups", "SecurityGroups", **paging(1000)):
        found.append(FoundResource("ec2:security-group", group["GroupId"], region, _tags(group.get("Tags")),
                                   attributes={"name": group.get("GroupName", ""), "vpc": group.get("VpcId", "")}))
    for template in _pages(ec2, "describe_launch_templates", "LaunchTemplates", **paging(200)):
        found.append(FoundResource("ec2:launch-template", template["LaunchTemplateId"], region,
                                   _tags(template.get("Tags")),
                                   attributes={"name": template.get("LaunchTemplateName", "")}))
    # DescribePlacementGroups has no pagination: one call answers for the region
    for group in ec2.describe_placement_groups(Filters=TAG_KEY_FILTER).get("PlacementGroups", ()):
        found.append(FoundResource("ec2:placement-group", group.get("GroupId") or group["GroupName"], region,
                                   _tags(group.get("Tags")), group.get("State"),
                                   attributes={"name": group["GroupName"]}))
    return found


def _gather_tagged(clients, region: str, page_size: int, _found) -> list[FoundResource]:
    """SageMaker endpoints, configs and models and ELBv2 load balancers: tags from the tagging API (one paginated
    listing), existence and state from each service's own paginated listing (the tagging API can still list what
    was just deleted). Toolkit-tagged endpoints are described (two calls each) for their config, models and size."""
    tags_by_arn: dict[str, dict[str, str]] = {}
    for mapping in _pages(clients("resourcegroupstaggingapi", region), "get_resources", "ResourceTagMappingList",
                          TagFilters=[{"Key": TAG_EXPIRES_AT}], ResourceTypeFilters=TAGGING_TYPES,
                          ResourcesPerPage=min(page_size, 100)):
        tags_by_arn[_clean_arn(mapping["ResourceARN"])] = _tags(mapping.get("Tags"))
    sm_tags = {_sagemaker_key(arn): tags for arn, tags in tags_by_arn.items() if ":sagemaker:" in arn}
    found: list[FoundResource] = []
    if sm_tags:
        found += _gather_sagemaker(clients("sagemaker", region), region, sm_tags)
    lb_tags = {arn: tags for arn, tags in tags_by_arn.items() if ":elasticloadbalancing:" in arn}
    if lb_tags:
        elbv2 = clients("elbv2", region)
        for lb in _pages(elbv2, "describe_load_balancers", "LoadBalancers",
                         PaginationConfig={"PageSize": min(page_size * 4, 400)}):
            if lb["LoadBalancerArn"] in lb_tags:
                found.append(FoundResource("elbv2:load-balancer", lb["LoadBalancerArn"], region,
                                           lb_tags[lb["LoadBalancerArn"]], (lb.get("State") or {}).get("Code"),
                                           attributes={"name": lb.get("LoadBalancerName", "")}))
    return found


_SAGEMAKER_ARN = re.compile(r"arn:[\w-]+:sagemaker:[\w-]*:\d*:(endpoint|endpoint-config|model)/([A-Za-z0-9-]+)")


def _clean_arn(text: str) -> str:
    # moto renders endpoint-config ARNs as "('arn:...',)"; real AWS does not. Take the ARN out either way.
    match = re.search(r"arn:[^'\"\s,()]+", text)
    return match.group(0) if match else text


def _sagemaker_key(arn: str) -> tuple[str, str]:
    """(kind, lower-case name): SageMaker lower-cases names in ARNs, so names are compared that way."""
    match = _SAGEMAKER_ARN.search(arn)
    return (match.group(1), match.group(2).lower()) if match else ("", arn)


def _gather_sagemaker(sm, region: str, tags: dict[tuple[str, str], dict]) -> list[FoundResource]:
    listed = {
        "endpoint": {e["EndpointName"].lower(): e for e in _pages(sm, "list_endpoints", "Endpoints",
                                                                    PaginationConfig={"PageSize": 100})},
        "endpoint-config": {c["EndpointConfigName"].lower(): c for c in _pages(
            sm, "list_endpoint_configs", "EndpointConfigs", PaginationConfig={"PageSize": 100})},
        "model": {m["ModelName"].lower(): m for m in _pages(sm, "list_models", "Models",
                                                             PaginationConfig={"PageSize": 100})},
    }
    config_holders: dict[str, list[str]] = {}
    model_holders: dict[str, list[str]] = {}
    endpoints = []
    for name, summary in listed["endpoint"].items():
        if ("endpoint", name) not in tags:
            continue
        try:
            described = sm.describe_endpoint(EndpointName=summary["EndpointName"])
        except ClientError as err:
            if _is_gone(err):  # deleted between the listing and now
                continue
            raise
        instance_type, count = None, 0
        config_name = described.get("EndpointConfigName")
        if config_name:
            config_holders.setdefault(config_name.lower(), []).append(summary["EndpointArn"])
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
            for v in variants:
                if v.get("ModelName"):
                    model_holders.setdefault(v["ModelName"].lower(), []).append(config.get("EndpointConfigArn", ""))
        endpoints.append(FoundResource("sagemaker:endpoint", summary["EndpointArn"], region, tags[("endpoint", name)],
                                       summary.get("EndpointStatus"), instance_type=instance_type,
                                       instance_count=count, attributes={"name": summary["EndpointName"]}))
    found = endpoints
    for name, summary in listed["endpoint-config"].items():
        if ("endpoint-config", name) in tags:
            found.append(FoundResource("sagemaker:endpoint-config", summary["EndpointConfigArn"], region,
                                       tags[("endpoint-config", name)],
                                       in_use_by=tuple(config_holders.get(name, ())),
                                       attributes={"name": summary["EndpointConfigName"]}))
    for name, summary in listed["model"].items():
        if ("model", name) in tags:
            found.append(FoundResource("sagemaker:model", summary["ModelArn"], region, tags[("model", name)],
                                       in_use_by=tuple(h for h in model_holders.get(name, ()) if h),
                                       attributes={"name": summary["ModelName"]}))
    return found


def _gather_eks(clients, region: str, page_size: int, _found) -> list[FoundResource]:
    """EKS clusters and node groups. The tagging API never returns EKS resources, and EKS has no tag filter: every
    cluster and node group is described (calls grow with the number of clusters and node groups)."""
    eks = clients("eks", region)
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


def _gather_scalable_targets(clients, region: str, page_size: int, found) -> list[FoundResource]:
    """SageMaker variant scalable targets of the toolkit-tagged endpoints found; their own tags decide."""
    endpoints = {r.attributes["name"].lower() for r in found.get("tagged", ()) if r.kind == "sagemaker:endpoint"}
    if not endpoints:
        return []
    aas = clients("application-autoscaling", region)
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


def _link(region: str, resources: list[FoundResource], clients, page_size: int,
          errors: list[str]) -> list[FoundResource]:
    """Add the links one listing cannot see alone: who uses a security group or a placement group, which node
    group launches an instance or uses a launch template."""
    clusters = {r.attributes["name"]: r.id for r in resources if r.kind == "eks:cluster"}
    nodegroups = {(r.attributes["cluster"], r.attributes["name"]): r.id for r in resources if r.kind == "eks:nodegroup"}
    load_balancers = {r.id.split(":loadbalancer/", 1)[-1]: r.id for r in resources if r.kind == "elbv2:load-balancer"}
    ec2 = clients("ec2", region)
    sg_ids = [r.id for r in resources if r.kind == "ec2:security-group"]
    sg_holders: dict[str, set[str]] = {g: set() for g in sg_ids}
    pg_names = [r.attributes["name"] for r in resources if r.kind == "ec2:placement-group"]
    pg_holders: dict[str, set[str]] = {n: set() for n in pg_names}
    try:
        for chunk in _chunks(sg_ids):
            for eni in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces",
                              Filters=[{"Name": "group-id", "Values": chunk}],
                              PaginationConfig={"PageSize": page_size}):
                holder = eni_holder(eni, load_balancers, clusters)
                for group in eni.get("Groups", ()):
                    if group["GroupId"] in sg_holders:
                        sg_holders[group["GroupId"]].add(holder)
        for chunk in _chunks(pg_names):
            for reservation in _pages(ec2, "describe_instances", "Reservations",
                                      Filters=[{"Name": "placement-group-name", "Values": chunk}],
                                      PaginationConfig={"PageSize": page_size}):
                for inst in reservation.get("Instances", ()):
                    if inst["State"]["Name"] != "terminated":
                        pg_holders[inst["Placement"]["GroupName"]].add(inst["InstanceId"])
    except (ClientError, BotoCoreError, NotImplementedError) as err:
        errors.append(f"{region} ec2 (links): {_describe_error(err)}")
    templates_in_use: dict[str, set[str]] = {}
    for r in resources:
        if r.kind == "eks:nodegroup" and r.attributes.get("launch_template"):
            templates_in_use.setdefault(r.attributes["launch_template"], set()).add(r.id)

    linked = []
    for r in resources:
        if r.kind == "ec2:security-group":
            r = replace(r, in_use_by=tuple(sorted(sg_holders.get(r.id, set()) - {r.id})))
        elif r.kind == "ec2:placement-group":
            r = replace(r, in_use_by=tuple(sorted(pg_holders.get(r.attributes["name"], ()))))
        elif r.kind == "ec2:launch-template":
            r = replace(r, in_use_by=tuple(sorted(templates_in_use.get(r.id, ()))))
        elif r.kind == "ec2:instance":
            r = replace(r, managed_by=instance_manager(r.tags, nodegroups))
        linked.append(r)
    return linked


def eni_holder(eni: dict, load_balancers: dict[str, str], clusters: dict[str, str]) -> str:
    """What keeps a network interface (and so its security groups) in use: the instance it goes with, the load
    balancer or EKS cluster that manages it, or the interface itself."""
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
    return eni["NetworkInterfaceId"]


def instance_manager(tags: dict[str, str], nodegroups: dict[tuple[str, str], str]) -> str | None:
    """The node group or Auto Scaling group that launched an instance (terminating it directly would be undone)."""
    cluster, nodegroup = tags.get("eks:cluster-name"), tags.get("eks:nodegroup-name")
    if cluster and nodegroup:
        return nodegroups.get((cluster, nodegroup), f"EKS node group {cluster}/{nodegroup}")
    if tags.get("aws:autoscaling:groupName"):
        return f"Auto Scaling group {tags['aws:autoscaling:groupName']}"
    return None


def _describe_error(err: Exception) -> str:
    if isinstance(err, ClientError):
        e = err.response.get("Error", {})
        return f"{e.get('Code', 'Error')}: {e.get('Message', '')}"[:300]
    return f"{type(err).__name__}: {err}"[:300]


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
                return Outcome("failed", _describe_error(err) + suffix)
        except BotoCoreError as err:
            if attempt == policy.attempts:
                return Outcome("failed", _describe_error(err))
        policy.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)
    return Outcome("failed", "no attempt made")


def _delete_call(clients, r: FoundResource) -> Callable[[], Any]:
    """The API call that deletes one resource."""
    a, region = r.attributes, r.region
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
        "ec2:instance": lambda: clients("ec2", region).terminate_instances(InstanceIds=[r.id]),
        "ec2:network-interface": lambda: clients("ec2", region).delete_network_interface(NetworkInterfaceId=r.id),
        "ec2:volume": lambda: clients("ec2", region).delete_volume(VolumeId=r.id),
        "ec2:launch-template": lambda: clients("ec2", region).delete_launch_template(LaunchTemplateId=r.id),
        "ec2:placement-group": lambda: clients("ec2", region).delete_placement_group(GroupName=a["name"]),
        "ec2:security-group": lambda: clients("ec2", region).delete_security_group(GroupId=r.id),
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
        except (ClientError, BotoCoreError) as err:
            for gid in chunk:
                outcomes.setdefault(gid, Outcome("failed", f"listing rules: {_describe_error(err)}"))
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
                                                                          f"revoking rules: {_describe_error(err)}"))


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
            left.add(r.id)
        except ClientError as err:
            if not _is_gone(err):
                left.add(r.id)
    return left


def wait_until_gone(clients, region: str, kind: str, resources: list[FoundResource], policy: RetryPolicy) -> set[str]:
    """Poll (bounded by policy.wait_timeout_s) until the resources are gone; returns the ids still there."""
    deadline = policy.clock() + policy.wait_timeout_s
    while True:
        try:
            left = _still_there(clients, region, kind, resources)
        except (ClientError, BotoCoreError):
            left = {r.id for r in resources}
        if not left or policy.clock() >= deadline:
            return left
        policy.sleep(min(policy.poll_interval_s, max(deadline - policy.clock(), 0)))
        resources = [r for r in resources if r.id in left]


def act(plan: ReapPlan, clients, policy: RetryPolicy) -> dict[str, Outcome]:
    """Carry out the plan step by step; every planned resource gets an outcome."""
    outcomes: dict[str, Outcome] = {}
    for region, kind, action, deletions in plan.steps():
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
    parser.add_argument("--wait-timeout", type=float, default=900.0,
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
    return "n/a" if value is None else "-" if value == 0 else f"${value:,.2f}"


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
            "usd_per_hour_stopped": round(stopped if not request.dry_run else plan.usd_per_hour_stopped, 2),
            "listing_errors": list(inventory.listing_errors), "left": left, "exit_code": exit_code}


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
    console.print(f"  {verb} ${document['usd_per_hour_stopped']:,.2f}/hour of compute{unpriced}", highlight=False)
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
    if session is None and request.profile:
        base = boto3.Session(profile_name=request.profile)
    clients = RegionalClients(base)
    policy = policy or RetryPolicy(wait_timeout_s=request.wait_timeout_s)
    pulumi = pulumi_destroy(request.stack, request.dry_run) if request.stack else None

    inventory = gather(clients, request.regions)
    plan = plan_reap(inventory.resources, request.now, request.stack)
    outcomes: dict[str, Outcome] = {}
    left: list[dict] = []
    if not request.dry_run:
        outcomes = act(plan, clients, policy)
        after = gather(clients, request.regions)
        inventory.listing_errors += [f"(verify) {e}" for e in after.listing_errors]
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
        print_report(document, Console(highlight=False, width=200))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

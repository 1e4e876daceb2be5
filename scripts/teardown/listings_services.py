"""The teardown's listings of the other services: Secrets Manager, IAM roles and instance profiles, AWS Budgets,
SageMaker endpoints, configs and models, ELBv2 load balancers, EKS clusters and node groups, and SageMaker scalable
targets. Where a service has a tag filter it is used; where it has none (EKS, Budgets, IAM), the docstring says how
the calls grow."""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

from planner.budget import BUDGET_NAME_PREFIX
from planner.reaper import GLOBAL_REGION, FoundResource
from planner.tags import TAG_EXPIRES_AT
from scripts.aws import error_code, is_not_found
from scripts.teardown.common import IAM_PAGE_SIZE, RegionListing, pages, tags_of


def _gather_secrets(listing: RegionListing) -> list[FoundResource]:
    """Secrets Manager secrets: one paginated ListSecrets filtered by tag key (a prefix match: the tags decide),
    including those already scheduled for deletion, whose name stays taken until they are deleted for good."""
    found = []
    for secret in pages(listing.clients("secretsmanager", listing.region), "list_secrets", "SecretList",
                         Filters=[{"Key": "tag-key", "Values": [TAG_EXPIRES_AT]}], IncludePlannedDeletion=True,
                         PaginationConfig={"PageSize": min(listing.page_size, 100)}):
        found.append(FoundResource("secretsmanager:secret", secret["ARN"], listing.region, tags_of(secret.get("Tags")),
                                   "scheduled-deletion" if secret.get("DeletedDate") else None,
                                   attributes={"name": secret["Name"]}))
    return found


def gather_iam(clients, region: str, stacks: set[str]) -> list[FoundResource]:
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
    for role in pages(iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"],
                       PaginationConfig={"PageSize": IAM_PAGE_SIZE}):
        if TAG_EXPIRES_AT in tags_of(role.get("Tags")):  # the tag-key filter EC2 applies server-side
            roles.append(role)
            for profile in role.get("InstanceProfileList", ()):
                profiles.setdefault(profile["Arn"], profile)
    prefixes = tuple(f"{name}-" for name in sorted(stacks))
    for profile in pages(iam, "list_instance_profiles", "InstanceProfiles",
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
        found.append(FoundResource("iam:instance-profile", arn, GLOBAL_REGION, tags_of(profile.get("Tags")),
                                   attributes={**global_, "name": profile["InstanceProfileName"],
                                               "roles": role_names}))
    for role in roles:
        found.append(FoundResource(
            "iam:role", role["Arn"], GLOBAL_REGION, tags_of(role.get("Tags")),
            in_use_by=tuple(holders.get(role["RoleName"], ())),
            attributes={**global_, "name": role["RoleName"],
                        "inline_policies": tuple(p["PolicyName"] for p in role.get("RolePolicyList", ())),
                        "managed_policies": tuple(p["PolicyArn"] for p in role.get("AttachedManagedPolicies", ()))}))
    return found


def gather_budgets(clients, region: str, _stacks) -> list[FoundResource]:
    """AWS Budgets (global, per account): DescribeBudgets (paginated), then one ListTagsForResource for each budget
    named like the toolkit's (BUDGET_NAME_PREFIX); the tags decide, the name only spares the other budgets a call.
    Needs the account id: one GetCallerIdentity."""
    identity = clients("sts", region).get_caller_identity()
    account, partition = identity["Account"], identity["Arn"].split(":")[1]
    budgets = clients("budgets", region)
    found: list[FoundResource] = []
    try:
        listed = list(pages(budgets, "describe_budgets", "Budgets", AccountId=account,
                             PaginationConfig={"PageSize": 100}))
    except ClientError as err:
        if error_code(err) == "NotFoundException":  # an account without budgets answers so
            return found
        raise
    for budget in listed:
        name = budget["BudgetName"]
        if not name.startswith(BUDGET_NAME_PREFIX):
            continue
        arn = f"arn:{partition}:budgets::{account}:budget/{name}"
        tags = tags_of(budgets.list_tags_for_resource(ResourceARN=arn).get("ResourceTags"))
        found.append(FoundResource("budgets:budget", arn, GLOBAL_REGION, tags,
                                   attributes={"api_region": region, "name": name, "account": account}))
    return found


_SAGEMAKER_ARN = re.compile(r"arn:[\w-]+:sagemaker:[\w-]*:\d*:(endpoint|endpoint-config|model)/([A-Za-z0-9-]+)")


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
    for summary in pages(sm, "list_endpoints", "Endpoints", PaginationConfig={"PageSize": 100}):
        name = summary["EndpointName"].lower()
        if name not in tags:
            continue
        try:
            described = sm.describe_endpoint(EndpointName=summary["EndpointName"])
        except ClientError as err:
            if is_not_found(err):  # deleted between the listing and now
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
            for summary in pages(listing.clients("sagemaker", listing.region), "list_endpoint_configs",
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
            for summary in pages(listing.clients("sagemaker", listing.region), "list_models", "Models",
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
            for lb in pages(listing.clients("elbv2", listing.region), "describe_load_balancers", "LoadBalancers",
                             PaginationConfig={"PageSize": min(listing.page_size * 4, 400)})
            if lb["LoadBalancerArn"] in lb_tags]


def _gather_eks(listing: RegionListing) -> list[FoundResource]:
    """EKS clusters and node groups. The tagging API never returns EKS resources, and EKS has no tag filter: every
    cluster and node group is described (calls grow with the number of clusters and node groups)."""
    eks, region, page_size = listing.clients("eks", listing.region), listing.region, listing.page_size
    found: list[FoundResource] = []
    for name in pages(eks, "list_clusters", "clusters", PaginationConfig={"PageSize": min(page_size, 100)}):
        cluster = eks.describe_cluster(name=name)["cluster"]
        nodegroup_arns = []
        for ng_name in pages(eks, "list_nodegroups", "nodegroups", clusterName=name,
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
    for target in pages(aas, "describe_scalable_targets", "ScalableTargets", ServiceNamespace="sagemaker",
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

"""The Pulumi program: read the stack config, plan it with the planner, hand the plan to the components.

Each target's decisions come with the plan (`plan.ec2`, `plan.eks`, `plan.jumpstart`, from planner/targets/): the
program reads them and never derives them again.

It holds no logic of its own: a plan that does not fit or a bad key stops `pulumi up` before any
resource is declared. The offline engine (components/offline.py) calls `main` under mocks with the same code path.
"""

from datetime import UTC, datetime
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from components.budget import StackBudget, StackBudgetArgs
from components.eks_cluster import ClusterAddons, ClusterAddonsArgs, EksCluster, EksClusterArgs
from components.eks_metrics import EksMetrics, EksMetricsArgs
from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.gpu_servers import GpuServerGroup, GpuServerGroupArgs
from components.jumpstart import JumpStartEndpoint, JumpStartEndpointArgs
from components.model_workload import ModelWorkload, ModelWorkloadArgs
from components.network import PrivateNetwork, PrivateNetworkArgs
from components.observability import StackObservability, StackObservabilityArgs
from components.secrets import EndpointSecret, EndpointSecretArgs
from planner.errors import PlanInputError
from planner.observability import plan_observability
from planner.plan import StackPlan, plan_stack
from planner.stack_config import PROJECT, load_stack
from planner.tags import TAG_EXPIRES_AT
from planner.targets.eks import missing_secret_message, required_secret_keys

STACKS_DIR = Path(__file__).resolve().parent / "stacks"
# Secret stack-config keys and the variables they fill on the servers.
SECRET_CONFIG = {"VLLM_API_KEY": "apiKey", "HF_TOKEN": "hfToken"}


def secret_config(config: pulumi.Config, key: str) -> pulumi.Output[str] | None:
    """A secret stack-config value; a blank one is refused before anything is declared: an empty API key turns
    vLLM's own check off, an empty NGC key fails only deep inside the deployment."""
    raw = pulumi.runtime.get_config(f"{PROJECT}:{key}")  # the plain value, read without logging it
    if raw is not None and not raw.strip():
        raise pulumi.RunError(f"{PROJECT}:{key}: an empty value is not valid; allowed: a non-empty secret "
                              f"(pulumi config set --secret {key} ...), or no {key} at all to have one generated"
                              if key == "apiKey" else
                              f"{PROJECT}:{key}: an empty value is not valid; allowed: a non-empty secret "
                              f"(pulumi config set --secret {key} ...)")
    return config.get_secret(key)


def stack_plan(stacks_dir: Path, now: datetime) -> StackPlan:
    try:
        plan = plan_stack(load_stack(stacks_dir, pulumi.get_stack()), now)
    except PlanInputError as err:
        raise pulumi.RunError(str(err)) from None
    if not plan.fit.fits:
        raise pulumi.RunError(f"{plan.stack}: does not fit: " + "; ".join(plan.fit.reasons))
    return plan


def ec2_endpoint(plan: StackPlan) -> None:
    """The EC2 target: secret, network (existing or a new private one), GPU servers; exports how to reach them."""
    config, region, ec2 = pulumi.Config(PROJECT), plan.region, plan.ec2
    env_names = ec2.secret_env_names
    secret = EndpointSecret(f"{plan.stack}-serving", EndpointSecretArgs(
        env_names=env_names, tags=plan.tags,
        values={env: value for env, key in SECRET_CONFIG.items()
                if env in env_names and (value := secret_config(config, key)) is not None}))
    if plan.config.network is None:
        network = PrivateNetwork(f"{plan.stack}-network", PrivateNetworkArgs(
            region=region, availability_zone=plan.config.availability_zone, instance_type=plan.instance.name,
            internet_egress=bool(ec2.internet_egress_reasons), tags=plan.tags))
        vpc_id, subnet_id, ready_first = network.vpc_id, network.subnet_id, [secret, network]
    else:
        vpc_id, subnet_id, ready_first = plan.config.network.vpc_id, plan.config.network.subnet_id, [secret]
    # The kernel-log group the servers' agent writes to exists before they boot.
    ready_first.append(stack_observability(plan))
    # Servers boot once the secret has its value and the endpoints and NAT exist: their boot script needs them.
    servers = GpuServerGroup(f"{plan.stack}-servers", GpuServerGroupArgs(
        plan=plan, vpc_id=vpc_id, subnet_id=subnet_id, secret_arn=secret.arn, tags=plan.tags),
        opts=pulumi.ResourceOptions(depends_on=ready_first))

    port = plan.serving.port
    head_id, head_ip = servers.instance_ids[0], servers.private_ips[0]
    pulumi.export("instance_ids", servers.instance_ids)
    pulumi.export("private_ips", servers.private_ips)
    pulumi.export("endpoint_url", pulumi.Output.format("http://{0}:{1}/v1", head_ip, port))
    pulumi.export("ssm_port_forward", pulumi.Output.format(
        "aws ssm start-session --region {0} --target {1} --document-name AWS-StartPortForwardingSession "
        "--parameters portNumber={2},localPortNumber={2}", region, head_id, port))
    pulumi.export("local_endpoint_url", f"http://localhost:{port}/v1")
    pulumi.export("api_key_secret_arn", secret.arn)
    pulumi.export("startup_budget_s", ec2.startup.timeout_s)


def jumpstart_endpoint(plan: StackPlan) -> None:
    """The jumpstart target: the endpoint the planner decided from the resolved hub content, deleted in the account at
    the stack's expiry by a schedule of its own; exports how to call it.

    Unresolved hub content declares nothing (the plan and preflight say to run resolve); acceptEula false declares
    the model with AcceptEula false, which SageMaker refuses: nothing is accepted on the user's behalf.
    """
    spec = plan.jumpstart
    if spec is None:
        pulumi.log.warn(f"{plan.stack}: hub content not resolved, no JumpStart resources declared; run "
                        f"`python -m scripts.jumpstart resolve {plan.stack}`")
        pulumi.export("jumpstart_resolved", False)
        return
    if not spec.accept_eula:
        pulumi.log.warn(f"{plan.stack}: acceptEula is false; SageMaker will refuse the model until it is true "
                        f"(read {spec.eula_url or 'the EULA'} first)")
    endpoint = JumpStartEndpoint(f"{plan.stack}-jumpstart", JumpStartEndpointArgs(endpoint=spec, tags=plan.tags))
    stack_observability(plan, after=[endpoint])  # its metric filter reads the endpoint's log group
    pulumi.export("jumpstart_resolved", True)
    pulumi.export("endpoint_name", endpoint.endpoint_name)
    pulumi.export("endpoint_arn", endpoint.endpoint_arn)
    pulumi.export("execution_role_arn", endpoint.role_arn)
    pulumi.export("startup_timeouts_s", {"model_data_download": spec.timeouts.download_s,
                                         "container_startup_health_check": spec.timeouts.startup_health_check_s})
    pulumi.export("smoke_command", f"python -m scripts.jumpstart smoke {plan.stack} --wait 3600")
    pulumi.export("self_end", {"deletes_endpoint_at": spec.self_end.to_json()["at"],
                               "schedule_arn": endpoint.self_end_schedule_arn})


def eks_endpoint(plan: StackPlan) -> None:
    """The EKS target: network (existing or new), cluster (existing or new), GPU node pool, add-ons, model server."""
    config, eks = pulumi.Config(PROJECT), plan.eks
    for key in required_secret_keys(plan.config):  # e.g. NIM's NGC key: stop before the network and cluster start
        if pulumi.runtime.get_config(f"{PROJECT}:{key}") is None:
            raise pulumi.RunError(missing_secret_message(plan.stack, key))
    if plan.config.network is None:
        network = PrivateNetwork(f"{plan.stack}-network", PrivateNetworkArgs(
            region=plan.region, availability_zone=plan.config.availability_zone, instance_type=plan.instance.name,
            internet_egress=True, tags=plan.tags))
        vpc_id, subnet_id, zone = network.vpc_id, network.subnet_id, network.availability_zone
    else:
        vpc_id, subnet_id, zone = plan.config.network.vpc_id, plan.config.network.subnet_id, None
    cluster = EksCluster(f"{plan.stack}-eks", EksClusterArgs(
        plan=plan, vpc_id=vpc_id, node_subnet_id=subnet_id, node_zone=zone,
        control_plane_subnet_ids=list(eks.settings.control_plane_subnet_ids) or None, tags=plan.tags))
    pool = GpuNodePool(f"{plan.stack}-gpu", GpuNodePoolArgs(
        plan=plan, cluster_name=cluster.name, cluster_security_group_id=cluster.security_group_id,
        subnet_id=subnet_id, tags=plan.tags))
    kubernetes = k8s.Provider(f"{plan.stack}-kubernetes", kubeconfig=cluster.kubeconfig,
                              opts=pulumi.ResourceOptions(depends_on=[cluster]))
    addons = ClusterAddons(f"{plan.stack}-addons", ClusterAddonsArgs(releases=eks.addons),
                           opts=pulumi.ResourceOptions(providers=[kubernetes], depends_on=[cluster]))
    workload = ModelWorkload(f"{plan.stack}-workload", ModelWorkloadArgs(
        plan=plan, api_key=secret_config(config, "apiKey"), ngc_api_key=secret_config(config, "ngcApiKey"),
        hf_token=secret_config(config, "hfToken"), cluster_name=cluster.name),
        opts=pulumi.ResourceOptions(providers=[kubernetes], depends_on=[addons, pool]))
    # the server's own metrics (vLLM's with the key from the workload's Secret, NIM's from its own port): an agent
    EksMetrics(f"{plan.stack}-metrics", EksMetricsArgs(plan=plan, cluster_name=cluster.name, tags=plan.tags),
               opts=pulumi.ResourceOptions(providers=[kubernetes], depends_on=[workload]))

    stack_observability(plan, after=[cluster])  # its metric filter reads the cluster's containers' log group
    n, port = eks.names, plan.serving.port
    pulumi.export("cluster_name", cluster.name)
    pulumi.export("node_group_name", pool.node_group_name)
    pulumi.export("kubeconfig_command", pulumi.Output.format(
        "aws eks update-kubeconfig --region {0} --name {1}", plan.region, cluster.name))
    pulumi.export("service_url", pulumi.Output.format("http://{0}:{1}/v1", workload.service_host, port))
    pulumi.export("port_forward", f"kubectl -n {n.namespace} port-forward svc/{n.app} {port}:{port}")
    pulumi.export("local_endpoint_url", f"http://localhost:{port}/v1")
    pulumi.export("api_key", workload.api_key)
    pulumi.export("startup_budget_s", eks.startup.timeout_s)


def stack_observability(plan: StackPlan, after: list[pulumi.Resource] | None = None) -> StackObservability:
    """The stack's CloudWatch dashboard and alarms (planner/observability.py), declared after `after`; exports the
    dashboard's URL."""
    decided = plan_observability(plan, ec2=plan.ec2, eks=plan.eks, jumpstart=plan.jumpstart)
    observability = StackObservability(f"{plan.stack}-observability", StackObservabilityArgs(
        observability=decided, tags=plan.tags), opts=pulumi.ResourceOptions(depends_on=after or []))
    pulumi.export("dashboard_url", observability.dashboard_url)
    pulumi.export("alarms", [alarm.name for alarm in decided.alarms])
    return observability


def require_fixed_expiry(plan: StackPlan, provisional_expiry: bool) -> None:
    """The expiry is decided once, on purpose: `pulumi up` deploys only a stack whose expiresAt the stack file holds
    (written by `python -m scripts.renew`), so a re-run or a merge never extends an evaluation. A preview, and the
    offline plan, may assume a renewal now."""
    if plan.config.expires_at is None and not provisional_expiry and not pulumi.runtime.is_dry_run():
        raise pulumi.RunError(f"{PROJECT}:expiresAt is not set: run `python -m scripts.renew {plan.stack}` "
                              f"(now + {plan.config.ttl_hours:g} h, at most 168 h) to decide the expiry once, then "
                              "`pulumi up` again")


def main(stacks_dir: Path = STACKS_DIR, now: datetime | None = None, provisional_expiry: bool = False) -> None:
    plan = stack_plan(stacks_dir, now or datetime.now(UTC))
    require_fixed_expiry(plan, provisional_expiry)
    expiry = plan.tags[TAG_EXPIRES_AT]
    pulumi.export("plan", {"fit": plan.fit.fits, "layout": plan.fit.layout.describe(),
                           "usd_per_hour": plan.cost.usd_per_hour, "expires_at": expiry})
    pulumi.export("usd_per_hour", plan.cost.usd_per_hour)
    pulumi.export("expires_at", expiry)
    StackBudget(f"{plan.stack}-cost", StackBudgetArgs(plan=plan))  # every cloud target: ec2, jumpstart, eks
    if plan.target == "ec2":
        ec2_endpoint(plan)
    elif plan.target == "jumpstart":
        jumpstart_endpoint(plan)
    elif plan.target == "eks":
        eks_endpoint(plan)


if __name__ == "__main__":
    main()

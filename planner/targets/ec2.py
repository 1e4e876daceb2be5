"""The EC2 target: its plan (Ec2Plan, computed once by `plan_ec2`) and the boot script of each GPU server, rendered
from the plan as cloud-init text: pure, snapshot-tested. components/gpu_servers.py declares what it decides.

One `#cloud-config` per node writes a small `nemotron-node` script (planner/scripts/nemotron-node.sh, filled from
the plan) and its systemd units:

- `nemotron-deadman.timer` (enabled first): every minute the node reads its own `nemotron-deploy:expires-at` tag from
  IMDSv2 (instance metadata tags) and shuts down once past it; the launch template makes shutdown terminate.
  The expiry is read, never baked in: user data is identical between two plans of the same config, so renewing
  the expiry (`pulumi up` retags in place) never replaces a server. A tag is remembered only once it parses (the
  forms of planner/expiry.py, the reaper's and the stack schema's); when the tag cannot be read or is not a time
  the last value read stands, and a node that never read one stops MAX_TTL_HOURS after boot (with a log line).
- `nemotron-prepare`: RAID0 of the instance-store NVMe for the model cache (unless the DLAMI already mounted it).
  After a reboot the array is found or assembled from its superblocks under whatever name it comes back; an array
  is created (and formatted) only over disks without a superblock. Then the node's IP and interface for
  Ray/NCCL/Gloo (docs/sources.md#dgx-spark), and the stack's secret from Secrets Manager into /etc/nemotron/vllm.env
  (mode 600; only HF_TOKEN also into hf.env, for the download). User data holds the secret's ARN, never a value.
- `nemotron-stage`: the image pull and, in parallel, vLLM's compile cache for this layout from S3 (when saved by an
  earlier start of the same stack) and the weights as the stack's loader says (docs/ec2.md#weights): `stream`
  (default with weightsS3Uri) stages nothing, vLLM streams the staged S3 copy into GPU memory; `nvme` syncs the copy
  onto the NVMe RAID0 and checks every file's sha256 against the staging manifest, in parallel, into a Hugging Face
  cache layout so the repository id resolves offline on every node; without weightsS3Uri, from Hugging Face.
- `nemotron-serve`: the vLLM container with the planner's exact argv; on multi-node stacks the head starts Ray,
  waits (bounded) for every node, then serves with PP across nodes; workers only join Ray, after their weights.
  The serving node writes the planner's modules (`nemotron_auth`, the API key on every path, not only /v1) next to
  entry.sh, which puts that directory on PYTHONPATH. A server that keeps crashing stops being restarted and
  `nemotron-serve-failed` says so on the console.
- `nemotron-ready` (head): polls /health within a startup budget derived from the weights' size, without holding
  up boot; marks /run/nemotron/ready (gone after a reboot); then, when no cache was restored, saves vLLM's compile
  cache to S3 for the next start of the same (vLLM, weights, layout).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from importlib import resources

from planner.core import CorePlan
from planner.errors import PlanInputError
from planner.expiry import EXPIRY_FORM
from planner.hardware import GPUS
from planner.observability import VLLM_JOB, cloudwatch_agent_config, cloudwatch_agent_parameter
from planner.references import ref
from planner.serving import API_KEY_GUARD, VllmCommand
from planner.stack_config import MAX_TTL_HOURS
from planner.startup import (
    RAY_PORT,
    S3Location,
    StartupBudget,
    compile_cache_uri,
    s3_location,
    startup_budget,
    weights_loader,
)
from planner.tags import TAG_EXPIRES_AT
from planner.weights import MANIFEST_NAME

# EC2 refuses more than 16 KiB of user data before base64: the text goes gzipped, which cloud-init recognises by its
# magic bytes and unpacks (docs/sources.md#dlami).
USER_DATA_LIMIT_BYTES = 16 * 1024
# The DLAMI publishes its newest image id under these SSM parameters (docs/sources.md#dlami); the boot script below
# is written for its Ubuntu 24.04 flavour (docker, the NVIDIA container toolkit, EFA drivers, AWS CLI, mdadm, xfs).
# 24.04 rather than 22.04: the arm64 24.04 image is the one AWS lists for P6e-GB200/GB300, both carry the same tools
# and /opt/dlami/nvme, and 24.04 keeps standard Ubuntu support years longer.
DLAMI_SSM_PARAMETERS = {"x86_64": ref("dlami-x86_64"), "arm64": ref("dlami-arm64")}
ROOT_DEVICE = "/dev/sda1"  # Ubuntu AMIs; a mapping under another name would add a second volume
ROOT_VOLUME_GIB = 200  # OS, docker image layers (~25 GiB unpacked) and logs; weights live on the NVMe
CACHE_MOUNT = "/opt/dlami/nvme"  # where the DLAMI mounts instance storage; we build the RAID0 there when it did not
MODEL_CACHE = f"{CACHE_MOUNT}/nemotron"
# entry.sh and the planner's Python modules (the API-key middleware), mounted read-only into the container.
CONTAINER_ETC = "/etc/nemotron/container"
ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/")

SERVE_RESTART_S = 30  # between two starts of a crashed server
SERVE_START_BURST = 5  # failed starts within serve_start_limit_s() before systemd stops restarting the server
# The CloudWatch agent (docs/sources.md#observability): its JSON config is too large for the user data's 16 KiB, so
# it lives in an SSM parameter (components/gpu_servers.py); the node writes the key vLLM's /metrics needs and the
# Prometheus scrape config, then starts the agent after nemotron-prepare (skipped where the agent is not installed).
AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
PROMETHEUS_CONFIG = "/etc/nemotron/prometheus.yaml"
METRICS_KEY = "/etc/nemotron/metrics-key"


@dataclass(frozen=True)
class BootImage:
    """The AMI the boot script is written for: its SSM parameter and root device name."""

    ssm_parameter: str
    root_device: str = ROOT_DEVICE
    root_volume_gib: int = ROOT_VOLUME_GIB


@dataclass(frozen=True)
class Ec2Plan:
    """What the EC2 target decides for a stack, once: every server's boot and what the servers need around them.

    Set for every ec2 stack (the boot image is checked by preflight even when the model does not fit); the secret and
    egress needs are empty when nothing is served (the program stops on a plan that does not fit).
    """

    startup: StartupBudget  # boot to a healthy endpoint: the boot script's waits and systemd timeouts
    boot_image: BootImage
    roles: tuple[str, ...]  # per node index: "single", or "head" then "worker"s
    weights: S3Location | None  # the weights mirror, for exactly-scoped read access; None when weights come from HF
    secret_env_names: tuple[str, ...]  # the variables the stack's Secrets Manager secret holds
    internet_egress_reasons: tuple[str, ...]  # why a node needs the internet at boot; empty: no NAT gateway
    agent_parameter: str = ""  # the SSM parameter holding the CloudWatch agent's config ("" when nothing is served)
    agent_config: str = ""  # that config, JSON text
    compile_cache: S3Location | None = None  # where vLLM's compile cache persists (read and written by the servers)


def plan_ec2(plan: CorePlan) -> Ec2Plan:
    """The EC2 plan of an ec2 stack (called by planner/plan.py only)."""
    if plan.target != "ec2":
        raise PlanInputError("plan", plan.stack, "an ec2 plan")
    served = isinstance(plan.serving, VllmCommand)
    return Ec2Plan(startup=startup_budget(plan), boot_image=boot_image(plan), roles=node_roles(plan.config.nodes),
                   weights=weights_location(plan), secret_env_names=secret_env_names(plan) if served else (),
                   internet_egress_reasons=internet_egress_reasons(plan) if served else (),
                   agent_parameter=cloudwatch_agent_parameter(plan.stack) if served else "",
                   agent_config=json.dumps(cloudwatch_agent_config(plan.stack, PROMETHEUS_CONFIG),
                                           separators=(",", ":")) if served else "",
                   compile_cache=compile_cache_location(plan))


def compile_cache_location(plan: CorePlan) -> S3Location | None:
    """The S3 prefix of the stack's vLLM compile cache, for exactly-scoped read and write access."""
    uri = compile_cache_uri(plan, plan.serving.image) if isinstance(plan.serving, VllmCommand) else None
    return None if uri is None else s3_location(uri)


def boot_image(plan: CorePlan) -> BootImage:
    """The Deep Learning AMI for the plan's GPU architecture."""
    return BootImage(DLAMI_SSM_PARAMETERS[GPUS[plan.instance.gpu].arch])


def internet_egress_reasons(plan: CorePlan) -> tuple[str, ...]:
    """Why a node needs the public internet at boot (an empty tuple: VPC endpoints are enough, no NAT)."""
    reasons = []
    serving = _vllm(plan)
    if not ECR_IMAGE.match(serving.image):
        reasons.append(f"the image {serving.image} is pulled from a public registry")
    if plan.config.weights_s3_uri is None:
        reasons.append(f"the weights of {serving.model_repo} come from Hugging Face (no weightsS3Uri)")
    return tuple(reasons)


def weights_location(plan: CorePlan) -> S3Location | None:
    """The bucket and prefix of the weights mirror, for exactly-scoped read access; None when weights come from HF."""
    uri = plan.config.weights_s3_uri
    return None if uri is None else s3_location(uri)


def secret_env_names(plan: CorePlan) -> tuple[str, ...]:
    """The variables the stack's Secrets Manager secret holds: the API key, plus the HF token when HF is used."""
    names = list(_vllm(plan).secret_env)
    if plan.config.weights_s3_uri is None and plan.config.hf_token is not None:
        names.append("HF_TOKEN")
    return tuple(names)


def hf_cache_snapshot(repo: str, weights_s3_uri: str) -> tuple[str, str]:
    """(snapshot dir, revision) under HF_HOME/hub where a mirrored copy of `repo` resolves offline as the repo id.

    The revision is a stable 40-hex name derived from the mirror's URI, the form Hugging Face's cache expects.
    """
    revision = hashlib.sha1(weights_s3_uri.encode(), usedforsecurity=False).hexdigest()
    return f"hub/models--{repo.replace('/', '--')}/snapshots/{revision}", revision


def _vllm(plan: CorePlan) -> VllmCommand:
    if plan.target != "ec2" or not isinstance(plan.serving, VllmCommand):
        raise PlanInputError("plan", plan.stack, "a fitted ec2 plan served by vLLM (user data is for EC2 servers)")
    return plan.serving


def node_roles(nodes: int) -> tuple[str, ...]:
    """'single' for a one-server stack; 'head' for node 0 of several, 'worker' for the others."""
    if nodes == 1:
        return ("single",)
    return ("head",) + ("worker",) * (nodes - 1)


def render_user_data(plan: CorePlan, ec2: Ec2Plan | None, node_index: int, secret_arn: str,
                     head_ip: str | None = None) -> str:
    """The cloud-init user data of one node of `plan`, from its EC2 plan. Workers need the head's private IP; no
    secret value is ever rendered."""
    serving = _vllm(plan)
    if ec2 is None:
        raise PlanInputError("plan", plan.stack, "a fitted ec2 plan served by vLLM (user data is for EC2 servers)")
    if not 0 <= node_index < len(ec2.roles):
        raise PlanInputError("node_index", node_index, f"0..{len(ec2.roles) - 1}")
    role = ec2.roles[node_index]
    if role == "worker" and not head_ip:
        raise PlanInputError("head_ip", head_ip, "the Ray head's private IP (workers join it)")
    budget = ec2.startup
    settings = {
        "STACK": plan.stack, "REGION": plan.region, "ROLE": role, "NODE_INDEX": str(node_index),
        "NODES": str(plan.config.nodes), "SECRET_ARN": secret_arn, "IMAGE": serving.image,
        "MODEL_REPO": serving.model_repo, "WEIGHTS_S3_URI": plan.config.weights_s3_uri or "",
        "WEIGHTS_LOADER": weights_loader(plan), "MANIFEST": MANIFEST_NAME,
        "COMPILE_CACHE_URI": compile_cache_uri(plan, serving.image) or "",
        "CACHE_MOUNT": CACHE_MOUNT, "MODEL_CACHE": MODEL_CACHE, "NVME_DEVICES": str(plan.instance.nvme_devices),
        "PORT": str(serving.port), "STARTUP_BUDGET_S": str(budget.timeout_s), "MAX_TTL_HOURS": str(MAX_TTL_HOURS),
        "EXPIRY_TAG": TAG_EXPIRES_AT, "SERVE_START_BURST": str(SERVE_START_BURST),
    }
    if weights_loader(plan) == "nvme":
        snapshot, revision = hf_cache_snapshot(serving.model_repo, plan.config.weights_s3_uri)
        settings |= {"MIRROR_SNAPSHOT": f"hf/{snapshot}", "MIRROR_REVISION": revision}  # under MODEL_CACHE
    units = _units(role, budget, ec2.agent_parameter)
    boot_chain = [unit for unit, text in units if unit.endswith(".service") and "[Install]" in text]
    files = [
        _file("/etc/nemotron/node.conf", "0644", _node_conf(settings, budget)),
        _file("/etc/nemotron/serving.env", "0644", _serving_env(serving, plan.region)),
        _file(f"{CONTAINER_ETC}/entry.sh", "0755", _container_entry(plan, serving, role, head_ip, budget)),
        *(_file(f"{CONTAINER_ETC}/{name}", "0644", source) for name, source in serving.modules.items()
          if role != "worker"),
        _file(PROMETHEUS_CONFIG, "0644", _prometheus_config(serving.port)),
        _file("/usr/local/sbin/nemotron-node", "0755", _node_script(serving)),
        *(_file(f"/etc/systemd/system/{unit}", "0644", text) for unit, text in units),
    ]
    text = "\n".join([
        "#cloud-config",
        f"# nemotron-deploy {plan.stack}: node {node_index} of {plan.config.nodes} ({role}). Rendered by "
        "planner/targets/ec2.py; holds no secret values.",
        "write_files:",
        *files,
        "runcmd:",
        "- [systemctl, daemon-reload]",
        "- [systemctl, enable, --now, nemotron-deadman.timer]",
        f"- [systemctl, enable, {', '.join(boot_chain)}]",
        f"- [systemctl, start, --no-block, {boot_chain[-1]}]",
        "",
    ])
    size = len(gzipped(text))
    if size > USER_DATA_LIMIT_BYTES:
        raise PlanInputError("user_data", f"{size} bytes gzipped",
                             f"at most {USER_DATA_LIMIT_BYTES} bytes (EC2 limit)")
    return text


def gzipped(text: str) -> bytes:
    """The user data as the instance gets it: gzip with a fixed timestamp, so the same text is the same bytes and a
    plan run twice never replaces a server."""
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def user_data_base64(text: str) -> str:
    """What EC2's UserData takes: the gzipped text, base64-encoded."""
    return base64.b64encode(gzipped(text)).decode()


def _file(path: str, mode: str, content: str) -> str:
    body = "\n".join(f"    {line}" if line else "" for line in content.rstrip("\n").split("\n"))
    return f"- path: {path}\n  permissions: '{mode}'\n  content: |\n{body}"


def _node_conf(settings: dict[str, str], budget: StartupBudget) -> str:
    lines = ["# Sourced by nemotron-node. Plain settings only: secrets come from Secrets Manager at boot.",
             f"# Startup budget: {budget.describe()}.",
             "# shellcheck disable=SC2034,SC2209  # plain words (ROLE=head) for nemotron-node, which sources this file"]
    return "\n".join(lines + [f"{key}={shlex.quote(value)}" for key, value in settings.items()])


def _serving_env(serving: VllmCommand, region: str) -> str:
    # VLLM_CACHE_ROOT on the NVMe: torch.compile's, Inductor's and Triton's caches, which the node saves to S3;
    # AWS_REGION for the streamer's S3 reads (credentials: the instance role through IMDSv2).
    env = dict(serving.env) | {"HF_HOME": "/models/hf", "HF_HUB_OFFLINE": "1", "VLLM_CACHE_ROOT": "/models/vllm-cache",
                               "AWS_REGION": region}
    return "\n".join(f"{key}={value}" for key, value in env.items())


def _container_entry(plan: CorePlan, serving: VllmCommand, role: str, head_ip: str | None,
                     budget: StartupBudget) -> str:
    lines = ["#!/bin/bash", f"# Runs inside {serving.image} as the {role} node of {plan.stack}.", "set -euo pipefail"]
    if role != "worker":
        lines.append(API_KEY_GUARD)  # before Ray and vLLM: a missing key stops here, not after the model loads
    if role != "single":
        lines += [
            "# EFA for NCCL across nodes: the DLAMI's libfabric and aws-ofi-nccl plugin, when present (NCCL falls",
            "# back to sockets otherwise: look for NET/OFI, not NET/Socket, in the log).",
            "for dir in /opt/amazon/efa/lib /opt/amazon/ofi-nccl/lib /opt/amazon/ofi-nccl/lib/x86_64-linux-gnu; do",
            '  if [ -d "$dir" ]; then export LD_LIBRARY_PATH="$dir:${LD_LIBRARY_PATH:-}"; fi',
            "done",
        ]
    if role == "worker":
        lines.append(f'exec ray start --block --address={head_ip}:{RAY_PORT} --node-ip-address="$VLLM_HOST_IP" '
                     "--disable-usage-stats")
        return "\n".join(lines)
    if role == "head":
        nodes = plan.config.nodes
        alive = f'import ray, sys; ray.init(address="auto", logging_level="ERROR"); ' \
                f'sys.exit(sum(n["Alive"] for n in ray.nodes()) < {nodes})'
        lines += [
            f'ray start --head --node-ip-address="$VLLM_HOST_IP" --port={RAY_PORT} --disable-usage-stats',
            f"# Workers join once their weights are local; wait at most the startup budget ({budget.timeout_s} s).",
            f"until python3 -c {shlex.quote(alive)} 2>/dev/null; do",
            f"  if (( SECONDS > {budget.timeout_s} )); then",
            f'    echo "nemotron: fewer than {nodes} Ray nodes after {budget.timeout_s} s" >&2; ray status >&2 || true',
            "    exit 1",
            "  fi",
            "  sleep 15",
            "done",
            "ray status",
        ]
    lines += [f'export PYTHONPATH="{CONTAINER_ETC}${{PYTHONPATH:+:$PYTHONPATH}}"',
              f"exec {serving.shell()}"]
    return "\n".join(lines)


def _node_script(serving: VllmCommand) -> str:
    hf_download = shlex.quote(f"from huggingface_hub import snapshot_download; "
                              f"snapshot_download({json.dumps(serving.model_repo)}, max_workers=16)")
    template = resources.files("planner.scripts").joinpath("nemotron-node.sh").read_text()
    return template.replace("@HF_DOWNLOAD@", hf_download).replace("@EXPIRY_FORM@", EXPIRY_FORM)


def _prometheus_config(port: int) -> str:
    """The agent's scrape of vLLM's /metrics on this node, with the API key as bearer token (workers serve none)."""
    return (f"scrape_configs: [{{job_name: {VLLM_JOB}, scrape_interval: 1m, authorization: {{credentials_file: "
            f"{METRICS_KEY}}}, static_configs: [{{targets: ['localhost:{port}']}}]}}]")


def _agent_start(parameter: str) -> str:
    """After nemotron-prepare wrote vllm.env: the key file for the scrape, then the agent with its SSM config."""
    script = (f'umask 077; sed -n "s/^VLLM_API_KEY[=]//p" /etc/nemotron/vllm.env >{METRICS_KEY}; '
              # (the key is read at boot from what nemotron-prepare wrote; [=] is the sed pattern's "=")
              f"exec {AGENT_CTL} -a fetch-config -m ec2 -s -c ssm:{parameter}")
    return f"ExecStartPost=-/bin/sh -c '[ -x {AGENT_CTL} ] || exit 0; {script}'"


def _units(role: str, budget: StartupBudget, agent_parameter: str = "") -> list[tuple[str, str]]:
    def unit(description: str, service: list[str], requires: str = "", wants: str = "",
             limits: tuple[str, ...] = ()) -> str:
        lines = ["[Unit]", f"Description=nemotron-deploy: {description}"]
        if requires or wants:
            lines.append(f"After={' '.join(filter(None, (requires, wants)))}")
        lines += [f"Requires={requires}"] if requires else []
        lines += [f"Wants={wants}"] if wants else []
        return "\n".join(lines + [*limits, "[Service]", *service, "StandardOutput=journal+console", "[Install]",
                                  "WantedBy=multi-user.target"])

    node = "ExecStart=/usr/local/sbin/nemotron-node"
    oneshot = ["Type=oneshot", "RemainAfterExit=yes"]
    serving = role != "worker"
    units = [
        ("nemotron-deadman.service", "\n".join([
            "[Unit]", "Description=nemotron-deploy: terminate this server once its expires-at tag is past",
            "[Service]", "Type=oneshot", f"{node} deadman", "StandardOutput=journal+console"])),
        ("nemotron-deadman.timer", "\n".join([
            "[Unit]", "Description=nemotron-deploy: check the expiry every minute",
            "[Timer]", "OnBootSec=1min", "OnUnitActiveSec=1min", "AccuracySec=5s",
            "[Install]", "WantedBy=timers.target"])),
        ("nemotron-prepare.service", unit("model cache RAID0, node network env, secrets",
                                          [*oneshot, f"{node} prepare",
                                           *([_agent_start(agent_parameter)] if agent_parameter else [])],
                                          wants="network-online.target")),
        ("nemotron-stage.service", unit("image and weights onto the NVMe",
                                        [*oneshot, f"TimeoutStartSec={budget.timeout_s}", f"{node} stage"],
                                        requires="nemotron-prepare.service docker.service")),
        # The server gives up after SERVE_START_BURST failed starts within that many startup budgets (a crash loop);
        # nemotron-serve-failed says so on the console. A Ray worker keeps retrying: it fails while the head is down.
        ("nemotron-serve.service", unit("vLLM server" if serving else "Ray worker of the vLLM server",
                                        ["Restart=on-failure" if serving else "Restart=always",
                                         f"RestartSec={SERVE_RESTART_S}",
                                         "ExecStartPre=-/usr/bin/docker rm -f nemotron-serve", f"{node} serve"],
                                        requires="nemotron-stage.service",
                                        limits=(f"StartLimitIntervalSec={serve_start_limit_s(budget)}",
                                                f"StartLimitBurst={SERVE_START_BURST}",
                                                "OnFailure=nemotron-serve-failed.service") if serving else ())),
    ]
    if serving:
        units.append(("nemotron-serve-failed.service", "\n".join([
            "[Unit]", "Description=nemotron-deploy: say whether the server is restarted after a failure",
            "[Service]", "Type=oneshot", f"{node} serve-failed", "StandardOutput=journal+console"])))
        # Wants, not Requires: a restart of the server must not cancel the wait for it. Type=exec, not oneshot:
        # the wait (up to the startup budget) must not hold multi-user.target on every boot.
        units.append(("nemotron-ready.service", unit("a healthy endpoint within the startup budget",
                                                     ["Type=exec", f"{node} ready"], wants="nemotron-serve.service")))
    return units


def serve_start_limit_s(budget: StartupBudget) -> int:
    """The window in which SERVE_START_BURST failed starts of the server count as a crash loop."""
    return SERVE_START_BURST * (SERVE_RESTART_S + budget.timeout_s)

"""Every shell text the project produces, rendered offline from the shipped stacks, a 4-node Spark inventory and the
repository's own files, each with the dialect that runs it (tests/shell/README.md).

Renderers are reached through their public functions only (render_user_data, render_manifests, the Spark modules'
plan/step/command functions), so a renderer can move its text into a file of its own without this module changing.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shellcheck-serving-secret-Ab12Cd"
HEAD_IP = "10.64.3.17"
SPARK_INVENTORY = REPO / "ansible-like" / "inventory" / "spark-4node.yaml"


@dataclass(frozen=True)
class RenderedScript:
    """One shell text as it will run: `shell` is the dialect that runs it (`sh` or `bash`), `source` the file
    that renders it (whose owner fixes a finding)."""

    name: str
    shell: str
    text: str
    source: str
    also: tuple[str, ...] = ()  # other places that render exactly this text (checked once, under `name`)


# ---- GitHub Actions-style expressions and kubelet variables ---------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)


def without_expressions(text: str) -> str:
    """`${{ ... }}` replaced by a placeholder word of the same length, as actionlint does before shellcheck: the
    runner substitutes them before any shell sees the text, and columns stay where they were."""
    return _EXPRESSION.sub(lambda m: "_" * len(m.group(0)), text)


def without_kubelet_references(text: str, names: Iterable[str]) -> str:
    """`$(NAME)` replaced by a placeholder of the same length for each variable NAME of the container: the kubelet
    expands these in `command` before the shell starts (any other `$(...)` is a command substitution)."""
    for name in names:
        text = text.replace(f"$({name})", "_" * len(f"$({name})"))
    return text


# ---- EC2: cloud-init user data ---------------------------------------------------------------------------------------

def _stack_plans():
    from planner.plan import plan_stack
    from planner.stack_config import load_stack, parse_stack

    stacks_dir = REPO / "stacks"
    for path in sorted(stacks_dir.glob("Pulumi.*.yaml")):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        yield stack, plan_stack(load_stack(stacks_dir, stack), NOW)
    # variants that render other text: weights from an S3 mirror (EC2)
    document = yaml.safe_load((stacks_dir / "Pulumi.h100-pilot.yaml").read_text())
    config = document["config"] | {"nemotron-deploy:weightsS3Uri": "s3://model-mirror/nemotron/fp8"}
    yield "h100-pilot+s3-mirror", plan_stack(parse_stack("h100-pilot", config, "shellcheck"), NOW)
    # two EKS nodes: a LeaderWorkerSet with Ray instead of a Deployment
    document = yaml.safe_load((stacks_dir / "Pulumi.eks-vllm.yaml").read_text())
    # (BF16 at 131,072 x 16 no longer fits 16x H100 with the activation reserve: 8 sequences, as tests/eks does)
    config = document["config"] | {"nemotron-deploy:nodes": 2, "nemotron-deploy:precision": "bf16",
                                   "nemotron-deploy:concurrency": 8}
    yield "eks-vllm+2-nodes", plan_stack(parse_stack("eks-vllm", config, "shellcheck"), NOW)


def _shell_of_shebang(text: str) -> str | None:
    first = text.split("\n", 1)[0]
    if not first.startswith("#!"):
        return None
    interpreter = first[2:].split()
    program = interpreter[-1] if interpreter and interpreter[0].endswith("/env") else (interpreter or [""])[0]
    name = Path(program).name
    return name if name in ("sh", "bash", "dash") else None


def runcmd_script(runcmd: list) -> str:
    """cloud-init's runcmd as the sh script cloud-init writes for it: a list is an argv (quoted), a string is
    shell text as it stands."""
    lines = ["#!/bin/sh"]
    for entry in runcmd:
        lines.append(shlex.join(str(a) for a in entry) if isinstance(entry, list) else str(entry))
    return "\n".join(lines) + "\n"


_EXEC_LINE = re.compile(r"^(ExecStart|ExecStartPre|ExecStartPost|ExecStop|ExecStopPost|ExecReload|ExecCondition)="
                        r"[-@:+!]*(.*)$")


def user_data_scripts(stack: str, plan) -> Iterator[RenderedScript]:
    """The shell in one stack's user data, node by node: written files with a sh/bash shebang or a .sh name, the
    settings files those scripts source, the systemd units' Exec command lines, and runcmd."""
    from planner.targets.ec2 import render_user_data

    source = "planner/targets/ec2.py"
    for node in range(plan.config.nodes):
        document = yaml.safe_load(render_user_data(plan, plan.ec2, node, SECRET_ARN,
                                                   head_ip=HEAD_IP if node else None))
        prefix = f"ec2/{stack}/node{node}"
        files = {f["path"]: f.get("content", "") for f in document.get("write_files", [])}
        scripts = {}
        for path, content in files.items():
            shell = _shell_of_shebang(content) or ("bash" if path.endswith((".sh", ".bash")) else None)
            if shell:
                scripts[path] = shell
        # a settings file that a script reads with `.` is shell too, checked in its reader's dialect
        sourced = {path: scripts[reader] for path in files if path not in scripts for reader in scripts
                   if re.search(rf"(^|[;&|\s])(\.|source)\s+\S*{re.escape(Path(path).name)}\b", files[reader], re.M)}
        for path, shell in (scripts | sourced).items():
            yield RenderedScript(f"{prefix}{path}", shell, files[path], source)
        for path, content in files.items():
            if path.endswith((".service", ".socket", ".timer", ".path", ".mount")):
                commands = [m.group(2) for line in content.splitlines() if (m := _EXEC_LINE.match(line.strip()))]
                if commands:
                    # systemd runs these without a shell; as sh they are checked for quoting and word splitting
                    yield RenderedScript(f"{prefix}{path}:Exec", "sh", "\n".join(commands) + "\n", source)
        if document.get("runcmd"):
            yield RenderedScript(f"{prefix}/runcmd", "sh", runcmd_script(document["runcmd"]), source)


# ---- EKS: container commands -----------------------------------------------------------------------------------------

def _containers(manifest: dict) -> Iterator[tuple[str, dict]]:
    """(role/container, container) of a Deployment's or LeaderWorkerSet's pod templates (leader first)."""
    from planner.targets.eks import pod_templates

    if manifest.get("kind") not in ("Deployment", "LeaderWorkerSet"):
        return
    templates = pod_templates(manifest)
    roles = ["pod"] if len(templates) == 1 else ["leader", "worker"]
    for role, template in zip(roles, templates, strict=True):
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            yield f"{role}/{container['name']}", container


LWS_INJECTED_ENV = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX", "LWS_NAME")


def eks_scripts(stack: str, plan) -> Iterator[RenderedScript]:
    """`sh -c`/`bash -c` container commands of every rendered manifest, and the weights download command."""
    from planner.serving import VllmCommand
    from planner.targets.eks import download_command, render_manifests

    source = "planner/targets/eks.py"
    for manifest in _manifest_documents(render_manifests(plan, plan.eks, hf_token=True)):
        for where, container in _containers(manifest):
            argv = list(container.get("command", [])) + list(container.get("args", []))
            for index in range(len(argv) - 2):
                if Path(argv[index]).name in ("sh", "bash") and argv[index + 1] == "-c":
                    env_names = [e["name"] for e in container.get("env", [])] + list(LWS_INJECTED_ENV)
                    text = without_kubelet_references(argv[index + 2], env_names)
                    name = f"eks/{stack}/{manifest['kind']}/{where}"
                    yield RenderedScript(name, Path(argv[index]).name, text, source)
    if isinstance(plan.serving, VllmCommand):
        yield RenderedScript(f"eks/{stack}/download_command", "bash", download_command(plan), source)


def _manifest_documents(manifests) -> list[dict]:
    """The manifest dicts inside whatever render_manifests returns (a dataclass of manifests or lists of them)."""
    found: list[dict] = []

    def walk(value) -> None:
        if isinstance(value, dict) and "kind" in value and "apiVersion" in value:
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))

    walk(manifests)
    return found


def cloud_scripts() -> Iterator[RenderedScript]:
    for stack, plan in _stack_plans():
        if plan.target == "ec2" and plan.fit.fits:
            yield from user_data_scripts(stack, plan)
        elif plan.target == "eks" and plan.fit.fits:
            yield from eks_scripts(stack, plan)


# ---- workflows and the repository's own scripts ----------------------------------------------------------------------

def workflow_scripts() -> Iterator[RenderedScript]:
    """Every `run:` block of .github/workflows/*.yml, in the shell the step names (bash on Linux runners)."""
    for path in sorted((REPO / ".github" / "workflows").glob("*.y*ml")):
        document = yaml.safe_load(path.read_text())
        default = ((document.get("defaults") or {}).get("run") or {}).get("shell", "bash")
        for job_id, job in (document.get("jobs") or {}).items():
            job_default = ((job.get("defaults") or {}).get("run") or {}).get("shell", default)
            for index, step in enumerate(job.get("steps") or []):
                if "run" not in step:
                    continue
                shell = str(step.get("shell", job_default)).split()[0]
                label = re.sub(r"[^A-Za-z0-9_.-]+", "-", step.get("name", "")).strip("-")
                name = f"workflow/{path.name}/{job_id}/step{index}" + (f"-{label}" if label else "")
                # Actions runs `bash -e {0}` (no -o pipefail unless `shell: bash` is named)
                yield RenderedScript(name, Path(shell).name, without_expressions(str(step["run"])),
                                     str(path.relative_to(REPO)))


def repository_scripts() -> Iterator[RenderedScript]:
    """The shipped scripts/*.sh and .ci/run, in the shell of their shebang."""
    for path in [*sorted((REPO / "scripts").glob("*.sh")), REPO / ".ci" / "run"]:
        text = path.read_text()
        relative = str(path.relative_to(REPO))
        yield RenderedScript(f"repo/{relative}", _shell_of_shebang(text) or "bash", text, relative)


# ---- Spark: remote commands ------------------------------------------------------------------------------------------

def spark_inventories():
    """The shipped 4-node inventory with each network backend, as the inventory user and as root on port 2222."""
    from spark_cluster.inventory import parse_inventory

    data = yaml.safe_load(SPARK_INVENTORY.read_text())
    for backend in ("netplan", "nmcli", "ip"):
        yield backend, parse_inventory(data | {"network_backend": backend}, str(SPARK_INVENTORY))
    yield "root-port2222", parse_inventory(data | {"user": "root", "port": 2222}, str(SPARK_INVENTORY))


def commands_in(value) -> Iterator[tuple[str, str]]:
    """(label, command) for every command inside a planner's return value: a string, a Step, or plans, tuples,
    lists and dicts of them."""
    from spark_cluster.step import Step

    if isinstance(value, str):
        yield "", value
    elif isinstance(value, Step):
        yield value.summary, value.command
    elif isinstance(value, dict):
        for item in value.values():
            yield from commands_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from commands_in(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from commands_in(getattr(value, f.name))


def _spark_producers(inventory) -> Iterator[tuple[str, object]]:
    """(producer, result) for every command-producing function of spark_cluster, called the way the tasks call
    them, with facts that make every plan non-empty (a fresh node, a drifted node)."""
    from spark_cluster import (
        clusterenv,
        metrics,
        nccl,
        raycluster,
        rdmaflow,
        roce,
        session,
        sshtrust,
        step,
        vllm_serve,
        weights,
    )
    from spark_cluster import link as linkops

    from planner.weights import WeightFile, WeightsManifest

    head, nodes = inventory.head, list(inventory.nodes)
    worker = nodes[1]
    fresh = {li.interface: linkops.InterfaceState(li.interface, 1500, False, False, ("10.9.9.9/24",))
             for li in head.links}
    drifted_profiles = {li.interface: linkops.NmProfile(linkops.nm_profile_name(li.interface), li.interface,
                                                        "auto", (), None) for li in head.links}
    yield "link.LINK_STATE_COMMAND", linkops.LINK_STATE_COMMAND
    yield "link.nmcli_facts_command", linkops.nmcli_facts_command(head)
    yield "link.plan_link(fresh)", linkops.plan_link(inventory, head, linkops.LinkFacts(fresh))
    yield "link.plan_link(drifted)", linkops.plan_link(
        inventory, head, linkops.LinkFacts(fresh, "# old\n", drifted_profiles))
    yield "link.netplan_validate_command", linkops.netplan_validate_command(
        inventory.netplan_file, linkops.render_netplan(head, inventory.mtu))
    yield "link.probe_script", linkops.probe_script(linkops.mesh_probes(inventory, head, nodes))

    yield "step.read_file_command", step.read_file_command(inventory.netplan_file, linkops.NETPLAN_MARKER)
    yield "step.write_file_command", step.write_file_command(inventory.env_file, "A=1\n", "644")
    yield "step.as_user", step.as_user("ip link set dev enp1s0f0np0 up", inventory.user, True)
    yield "step.batch_script", step.batch_script(
        [step.as_user("ip link set dev enp1s0f0np0 up", inventory.user, True), "true"])

    key = sshtrust.PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEKEY", "nvidia@spark-2")
    host_key = sshtrust.PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIHOSTKEY")
    stale_host = sshtrust.host_pattern(worker.links[0].ip, inventory.port)
    empty = sshtrust.SshFacts(None, (), (), ())
    ssh_facts = {n.name: sshtrust.SshFacts(key, (host_key,), (), (f"{stale_host} ssh-ed25519 AAAAstale",))
                 for n in nodes}
    yield "sshtrust.facts_command", sshtrust.facts_command()
    yield "sshtrust.plan_keypair", sshtrust.plan_keypair(empty, inventory.user, head)
    yield "sshtrust.plan_trust", sshtrust.plan_trust(inventory, head, ssh_facts)
    yield "sshtrust.login_probe_script", sshtrust.login_probe_script(inventory, sshtrust.login_targets(head, nodes))

    record = session.SessionRecord(4242, "boot-1", {"role": "head"})
    running = session.SessionFacts("ray", record, "boot-1", (4242, 4243))
    stopped = session.SessionFacts("ray", record, "boot-1", ())
    yield "session.facts_command", session.facts_command(inventory.state_dir, ("vllm", "ray"))
    yield "session.launch_command", session.launch_command(inventory.state_dir, "job", {"a": "1"}, "sleep 1",
                                                           env_file=inventory.env_file)
    yield "session.plan_signal(TERM)", session.plan_signal(running)
    yield "session.plan_signal(KILL)", session.plan_signal(running, "KILL")
    yield "session.plan_forget", session.plan_forget(stopped, inventory.state_dir)
    yield "session.log_tail_command", session.log_tail_command(inventory.state_dir, "vllm")

    digest = raycluster.token_digest("0" * 64)
    yield "raycluster.AUTH_FILE_DIGEST", raycluster.AUTH_FILE_DIGEST
    yield "raycluster.AUTH_FILE_READ", raycluster.AUTH_FILE_READ
    yield "raycluster.token_step", raycluster.token_step("0" * 64)
    yield "raycluster.start_step(head)", raycluster.start_step(inventory, head, digest)
    yield "raycluster.start_step(worker)", raycluster.start_step(inventory, worker, digest)
    yield "raycluster.nodes_script", raycluster.nodes_script(inventory, len(nodes), 60)

    ports = [roce.RdmaPort(f"rocep{i}s0f0", 1, li.interface, True) for i, li in enumerate(head.links, 1)]
    devices, _ = roce.rdma_devices_for(head, ports)
    yield "roce.IBDEV2NETDEV_COMMAND", roce.IBDEV2NETDEV_COMMAND
    yield "roce.has_tool_command", roce.has_tool_command(roce.IBDEV2NETDEV_COMMAND)
    yield "roce.tool_output_command", roce.tool_output_command(roce.IBDEV2NETDEV_COMMAND)
    yield "roce.SHOW_GIDS_COMMAND", roce.SHOW_GIDS_COMMAND
    runs = roce.bandwidth_runs(inventory)
    yield "roce.server_command", " ".join(roce.server_command(ports[r.link_index].device, 3, r.tcp_port)
                                          for r in runs if r.server == head.name)
    yield "roce.clients_script(roce.client_command)", roce.clients_script(
        [(f"{r.server}.{r.link_index}", roce.client_command(ports[r.link_index].device, 3, r.tcp_port,
                                                            inventory.node(r.server).links[r.link_index].ip))
         for r in runs if r.client == head.name])

    env = clusterenv.cluster_env(inventory, head, tuple(p.device for p in devices.values()))
    yield "clusterenv.plan_env", clusterenv.plan_env(inventory, env, None)
    # the file itself: sourced with `set -a; . FILE` before NCCL, MPI, Ray and vLLM start
    yield "clusterenv.render_env", clusterenv.render_env(inventory, env)
    yield "nccl.mpirun_command", nccl.mpirun_command(inventory, [k for k in clusterenv.FORWARDED if k in env])

    yield "metrics.snapshot_command(head)", metrics.snapshot_command(inventory, head)
    yield "metrics.snapshot_command(worker)", metrics.snapshot_command(inventory, worker)
    yield "metrics.vllm_metrics_command", metrics.vllm_metrics_command(inventory)
    yield "rdmaflow.mpirun_command", rdmaflow.mpirun_command(inventory)

    settings = dataclasses.replace(inventory.weights, source="s3://mirror/nemotron/")
    manifest = WeightsManifest("nvidia/x", "abc", (WeightFile("model-00001.safetensors", 10, "0" * 64),
                                                   WeightFile("config.json", 2, "1" * 64)))
    jobs = weights.hash_jobs(manifest.files, settings.hash_jobs)
    chunk = weights.input_chunks(weights.verify_input(manifest, jobs))[0]
    yield "weights.facts_command", weights.facts_command(settings)
    yield "weights.fetch_command", weights.fetch_command(settings)
    yield "weights.stage_command", weights.stage_command("/tmp/nemotron-input", chunk)
    yield "weights.verify_command(inline)", weights.verify_command(settings, len(jobs), weights.inline_input(chunk))
    yield "weights.verify_command(staged)", weights.verify_command(settings, len(jobs),
                                                                   weights.staged_input("/tmp/nemotron-input"))
    address = weights.source_address(inventory, worker)
    yield "weights.pull_command", weights.pull_command(inventory, address, True, weights.inline_input(
        weights.input_chunks(weights.file_list(["model-00001.safetensors"]))[0]))
    yield "weights.remove_files_command", weights.remove_files_command(settings, ["model-00001.safetensors"])

    _, command = vllm_serve.serving_command(inventory)
    yield "vllm_serve.key_fact_command", vllm_serve.key_fact_command(inventory)
    yield "vllm_serve.launch_step", vllm_serve.launch_step(inventory, command)
    yield "vllm_serve.api_check_command", vllm_serve.api_check_command(inventory)


# A public name of these shapes in spark_cluster produces commands; each must be called by _spark_producers (checked
# by test_every_spark_command_producer_is_rendered, so a new one is not silently left out).
PRODUCER_NAME = re.compile(r"(_command|_script|_step|_steps|_COMMAND|^plan_[a-z_]+|^AUTH_FILE_[A-Z_]+)$|^plan_")
NOT_PRODUCERS = {
    "step.shell_path": "quotes a path; its output is checked inside every command that uses it",
    "step.parse_read_file": "parses output",
    "raycluster.plan_ray": "returns node names, not commands (start_step renders them)",
    "vllm_serve.serving_command": "returns the planner's fit and argv; launch_step renders the command",
    # the workflows' steps: they pass on what the producers above render, and add no command of their own
    "converge.apply_steps": "runs the planned steps (rendered by their producers)",
    "remote.run_steps": "runs the planned steps over SSH (rendered by their producers)",
    "linkflow.plan_links": "collects link.plan_link's steps per node",
    "linkflow.plan_keypairs": "collects sshtrust.plan_keypair's steps per node",
    "linkflow.plan_trust": "collects sshtrust.plan_trust's steps per node",
    "rdmaflow.plan_all_gather": "reports rdmaflow.mpirun_command as the dry run's command",
}


def spark_scripts() -> Iterator[RenderedScript]:
    """Each command the Spark tasks send, per producer and inventory variant."""
    for variant, inventory in spark_inventories():
        for producer, result in _spark_producers(inventory):
            module = producer.split(".", 1)[0]
            for index, (_, command) in enumerate(commands_in(result)):
                # Step.command is POSIX sh: sent through `sudo -n sh -c` or run by the login shell (remote.py)
                yield RenderedScript(f"spark/{variant}/{producer}#{index}", "sh", command,
                                     f"ansible-like/spark_cluster/{module}.py")


def spark_producer_names() -> set[str]:
    """Module-qualified names of the spark_cluster functions and constants that look like command producers."""
    import importlib
    import pkgutil

    import spark_cluster

    names = set()
    # every module of the package, so a new module's producers cannot be left out by a list kept by hand
    for module in sorted(m.name for m in pkgutil.iter_modules(spark_cluster.__path__)):
        mod = importlib.import_module(f"spark_cluster.{module}")
        for name, value in vars(mod).items():
            if name.startswith("_") or getattr(value, "__module__", mod.__name__) != mod.__name__:
                continue
            if PRODUCER_NAME.search(name) and (callable(value) or isinstance(value, str)):
                names.add(f"{module}.{name}")
    return names - set(NOT_PRODUCERS)


def rendered_producer_names() -> set[str]:
    inventory = next(iter(spark_inventories()))[1]
    return {name for producer, _ in _spark_producers(inventory)
            for name in re.findall(r"[a-z_]+\.[A-Za-z0-9_]+", producer)}


# ---- nested `sh -c` --------------------------------------------------------------------------------------------------

def nested_shell(text: str) -> list[tuple[str, str]]:
    """(dialect, script) for each `sh -c SCRIPT` / `bash -c SCRIPT` with a quoted literal script in `text`:
    shellcheck sees a quoted string only, so the inner script is checked on its own."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # text shlex cannot split (a heredoc, $'...'): left to shellcheck as a whole
        return []
    found = []
    for index in range(len(tokens) - 2):
        if tokens[index] in ("sh", "bash") and tokens[index + 1] == "-c" and " " in tokens[index + 2]:
            found.append((tokens[index], tokens[index + 2]))
    return found


def all_scripts() -> list[RenderedScript]:
    """Every rendered script once: the same text in the same dialect (nemotron-node on every EC2 node, say) is
    checked under its first name, the others listed in `also`."""
    scripts = [*cloud_scripts(), *spark_scripts(), *workflow_scripts(), *repository_scripts()]
    nested = []
    for script in scripts:
        for index, (shell, inner) in enumerate(nested_shell(script.text)):
            nested.append(RenderedScript(f"{script.name}>{shell}-c#{index}", shell, inner, script.source))
    unique: dict[tuple[str, str], RenderedScript] = {}
    for script in scripts + nested:
        key = (script.shell, script.text)
        if key in unique:
            unique[key] = dataclasses.replace(unique[key], also=(*unique[key].also, script.name))
        else:
            unique[key] = script
    names = [s.name for s in unique.values()]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"two rendered scripts share a name: {sorted(duplicates)}"
    return list(unique.values())

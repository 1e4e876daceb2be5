"""Multi-node vLLM on the Spark cluster's Ray: the planner decides the layout and renders the argv (the SparkPlan of
planner/targets/spark.py, computed once from the inventory); this module only turns that into a recorded background
session on the head node.

The API key never appears in argv, the report or a log: the launch shell exports VLLM_API_KEY from a mode-600 file
on the head (`$(cat FILE)` is expanded by that shell), and the check feeds it to curl through stdin.

vLLM checks that key only on /v1 paths; the planner's argv ends with `--middleware nemotron_auth.require_api_key`,
so the launch first writes the planner's modules (mode 644) into `<state_dir>/python` on the head and puts that
directory first on vLLM's PYTHONPATH: /invocations, /tokenize, /metrics... need the key too.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from planner.fit import FitResult
from planner.serving import API_KEY_GUARD, VllmCommand
from planner.targets.spark import SparkPlan, plan_spark
from spark_cluster import raycluster, session
from spark_cluster.inventory import MAX_NODES, Inventory
from spark_cluster.step import Step, shell_path, write_file_command

SESSION = "vllm"
KEY_FACT_MARKER = "### api-key-file"


def spark_plan(inventory: Inventory) -> SparkPlan:
    """The planner's plan of this cluster; PlanInputError naming `nodes` when it does not fit."""
    settings = inventory.vllm
    return plan_spark(settings.model, len(inventory.nodes), settings.context_tokens, settings.concurrency,
                      settings.port, MAX_NODES, inventory.source)


def serving_command(inventory: Inventory) -> tuple[FitResult, VllmCommand]:
    """The planner's fit and vLLM command for this cluster (its SparkPlan); PlanInputError naming `nodes` when it
    does not fit."""
    plan = spark_plan(inventory)
    return plan.fit, plan.serving


def argv_for(inventory: Inventory, command: VllmCommand) -> list[str]:
    """The planner's argv with the inventory's vllm executable."""
    return [inventory.vllm.bin, *command.argv[1:]]


def key_fact_command(inventory: Inventory) -> str:
    path = shell_path(inventory.vllm.api_key_file)
    # a file of white space only (an empty key, a lone newline) would start vLLM without a key: "blank"
    return (f"echo '{KEY_FACT_MARKER}'; if [ -s {path} ] && grep -q '[^[:space:]]' {path}; then stat -c '%a' {path}; "
            f"elif [ -e {path} ]; then echo blank; else echo absent; fi")


@dataclass(frozen=True)
class KeyFileFacts:
    present: bool
    mode: str | None
    blank: bool = False  # exists but holds no key (empty or white space only)


def parse_key_fact(text: str) -> KeyFileFacts:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    value = lines[lines.index(KEY_FACT_MARKER) + 1] if KEY_FACT_MARKER in lines else "absent"
    if value in ("absent", "blank"):
        return KeyFileFacts(False, None, blank=value == "blank")
    return KeyFileFacts(True, value)


def key_file_problems(inventory: Inventory, facts: KeyFileFacts) -> list[str]:
    path = inventory.vllm.api_key_file
    if facts.blank:
        return [f"API key file {path} on the head holds no key (empty or white space only): write one with "
                f"`umask 077; openssl rand -hex 32 > {path}` (an empty key would leave every path open)"]
    if not facts.present:
        return [f"API key file {path} missing or empty on the head: create it there with "
                f"`umask 077; openssl rand -hex 32 > {path}` (vLLM refuses requests without it)"]
    if facts.mode is None or int(facts.mode, 8) & 0o077:
        return [f"API key file {path} has mode {facts.mode}: make it 600 (readable by its owner only)"]
    return []


def modules_dir(inventory: Inventory) -> str:
    """Where the head keeps the planner's Python modules for vLLM (the API-key middleware): the task's own state."""
    return f"{inventory.state_dir.rstrip('/')}/python"


def launch_env(inventory: Inventory, command: VllmCommand) -> dict[str, str]:
    """The plain environment vLLM starts with: the planner's, plus RAY_ADDRESS of the running cluster."""
    return dict(command.env) | {"RAY_ADDRESS": raycluster.head_address(inventory)}


def settings_for(inventory: Inventory, command: VllmCommand) -> dict[str, str]:
    """What the session is recorded with: a different argv, env or module means a restart."""
    argv, env = argv_for(inventory, command), launch_env(inventory, command)
    digest = hashlib.sha256(shlex.join(argv).encode() + repr(sorted(env.items())).encode()
                            + repr(sorted(command.modules.items())).encode()).hexdigest()
    return {"argv": digest[:16], "port": str(inventory.vllm.port)}


def launch_step(inventory: Inventory, command: VllmCommand) -> Step:
    """Start `vllm serve` in the background on the head, as a recorded session, with the cluster env file, the
    planner's env, RAY_ADDRESS of the running cluster, VLLM_API_KEY read from the key file and the planner's
    modules (written first) on PYTHONPATH."""
    argv, env = argv_for(inventory, command), launch_env(inventory, command)
    directory = modules_dir(inventory)
    # the state directory stays private (launch_command makes it 700 too); the modules hold no secret
    state = shell_path(inventory.state_dir)
    install = f"mkdir -p {state} && chmod 700 {state} && " + "".join(
        write_file_command(f"{directory}/{name}", source, mode="644") + " && "
        for name, source in sorted(command.modules.items()))
    exports = "".join(f"export {key}={shlex.quote(value)} && " for key, value in sorted(env.items()))
    exports += f'export PYTHONPATH={shell_path(directory)}"${{PYTHONPATH:+:$PYTHONPATH}}" && '
    # `export X="$(cat f)"` succeeds even when the read fails: the planner's guard then refuses an empty key
    exports += f"export VLLM_API_KEY=\"$(cat {shell_path(inventory.vllm.api_key_file)})\" && {API_KEY_GUARD} && "
    launch = session.launch_command(inventory.state_dir, SESSION, settings_for(inventory, command),
                                    shlex.join(argv), env_file=inventory.env_file, exports=exports, wait=False)
    return Step(f"start vLLM ({layout_text(command)}) on port {inventory.vllm.port}", install + launch,
                privileged=False)


def layout_text(command: VllmCommand) -> str:
    argv = list(command.argv)

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1] if name in argv else "1"

    return f"TP {flag('--tensor-parallel-size')} x PP {flag('--pipeline-parallel-size')}"


def api_check_command(inventory: Inventory) -> str:
    """HTTP status of /v1/models without a key, then with it (the key goes to curl through stdin, not argv)."""
    url = f"http://127.0.0.1:{inventory.vllm.port}/v1/models"
    key = shell_path(inventory.vllm.api_key_file)
    return (f"printf 'anonymous=%s\\n' \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {url})\"; "
            f"printf 'Authorization: Bearer %s\\n' \"$(cat {key})\" | "
            f"printf 'with_key=%s\\n' \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -H @- {url})\"")


def api_findings(text: str) -> tuple[bool, list[str]]:
    """(ready, findings): ready when the key is accepted; a finding when the API answers without a key."""
    codes = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    anonymous, with_key = codes.get("anonymous", "000"), codes.get("with_key", "000")
    findings = []
    if anonymous == "200":
        findings.append("the vLLM API answers without a key: VLLM_API_KEY did not reach vLLM")
    return with_key == "200", findings

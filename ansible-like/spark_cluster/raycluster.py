"""A Ray cluster over the link addresses: head on the first node, workers on the others (FACTS.md section 5).

Pure: the `ray start` commands (each a recorded session, see session.py), the plan (start what does not run, restart
what runs with other settings, and every worker when the head restarts), the script the head runs to list the
cluster's nodes, and the check that every node joined on its link address (a worker on the wrong interface is the
classic failure).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
from dataclasses import dataclass

from spark_cluster import session
from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import Step

SESSION = "ray"
NODES_MARKER = "RAY-NODES "
# Ray token authentication (RAY_AUTH_MODE=token in the env file): without it anyone who reaches port 6379 runs code.
AUTH_FILE_DIGEST = ("if [ -f ~/.ray/auth_token ]; then sha256sum < ~/.ray/auth_token | cut -d ' ' -f 1; "
              "else echo absent; fi")
AUTH_FILE_READ = "cat ~/.ray/auth_token"


def head_address(inventory: Inventory) -> str:
    return f"{inventory.head.links[0].ip}:{inventory.ray.port}"


def role(inventory: Inventory, node: Node) -> str:
    return "head" if node.name == inventory.head.name else "worker"


def start_settings(inventory: Inventory, node: Node, token_digest: str) -> dict[str, str]:
    """What a node's Ray is started with; a record with other settings (or another token) is restarted."""
    ray = inventory.ray
    return {"role": role(inventory, node), "node_ip": node.links[0].ip, "head": head_address(inventory),
            "num_cpus": str(ray.num_cpus or ""), "object_store_memory": str(ray.object_store_memory or ""),
            "include_dashboard": str(ray.include_dashboard).lower(), "token": token_digest[:16]}


def parse_token_digest(text: str) -> str | None:
    value = text.strip()
    return None if value in ("", "absent") else value


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_hex(32)


def token_step(token: str) -> Step:
    """Install the cluster's token (mode 600), fed through stdin: never in argv, logs or the report."""
    return Step("install the Ray auth token (~/.ray/auth_token, mode 600)",
                "mkdir -p -m 700 ~/.ray && (umask 077 && cat > ~/.ray/auth_token.new) && "
                "mv -f ~/.ray/auth_token.new ~/.ray/auth_token", privileged=False, stdin=token)


def token_targets(digests: dict[str, str | None], wanted: str) -> list[str]:
    """Nodes whose token differs from the cluster's (the head's, when it has one)."""
    return [name for name, digest in digests.items() if digest != wanted]


def start_argv(inventory: Inventory, node: Node) -> list[str]:
    ray = inventory.ray
    argv = [ray.bin, "start"]
    if role(inventory, node) == "head":
        argv += ["--head", f"--port={ray.port}"]
    else:
        argv += [f"--address={head_address(inventory)}"]
    argv += [f"--node-ip-address={node.links[0].ip}", "--disable-usage-stats"]
    if ray.num_cpus:
        argv.append(f"--num-cpus={ray.num_cpus}")
    if ray.object_store_memory:
        argv.append(f"--object-store-memory={ray.object_store_memory}")
    if not ray.include_dashboard and role(inventory, node) == "head":  # a head-only flag
        argv.append("--include-dashboard=false")
    return argv


def start_step(inventory: Inventory, node: Node, token_digest: str) -> Step:
    command = session.launch_command(inventory.state_dir, SESSION, start_settings(inventory, node, token_digest),
                                     shlex.join(start_argv(inventory, node)), env_file=inventory.env_file)
    return Step(f"start Ray {role(inventory, node)} on {node.links[0].ip}", command, privileged=False, timeout_s=120)


@dataclass(frozen=True)
class RayPlan:
    stop: dict[str, session.SessionFacts]  # nodes whose running Ray must stop first (restart)
    start: tuple[str, ...]  # nodes to start, head first


def plan_ray(inventory: Inventory, facts: dict[str, session.SessionFacts], token_digest: str) -> RayPlan:
    """Which nodes to (re)start. Empty when every node runs Ray with the wanted settings."""
    stop, start = {}, []
    head = inventory.head.name
    for node in inventory.nodes:
        state = facts[node.name]
        wanted = start_settings(inventory, node, token_digest)
        head_restarts = head in start and node.name != head
        if state.running and state.record is not None and state.record.settings == wanted and not head_restarts:
            continue
        if state.running:
            stop[node.name] = state
        start.append(node.name)
    return RayPlan(stop, tuple(start))


def nodes_script(inventory: Inventory, expected: int, timeout_s: int) -> str:
    """Python the head runs: connect to the cluster and wait (bounded) until `expected` nodes are alive; print them."""
    program = (
        "import json, time, ray\n"
        f"ray.init(address={head_address(inventory)!r}, logging_level='ERROR', log_to_driver=False)\n"
        f"deadline = time.monotonic() + {timeout_s}\n"
        f"for _ in range({timeout_s * 2 + 1}):  # bounded by count and by time\n"
        "    nodes = [{'ip': n['NodeManagerAddress'], 'alive': bool(n['Alive'])} for n in ray.nodes()]\n"
        f"    if sum(n['alive'] for n in nodes) >= {expected} or time.monotonic() > deadline:\n"
        "        break\n"
        "    time.sleep(0.5)\n"
        f"print({NODES_MARKER!r} + json.dumps(nodes))\n"
    )
    env = shlex.quote(inventory.env_file)
    return (f"if [ -f {env} ]; then set -a && . {env} && set +a; fi && "
            f"RAY_USAGE_STATS_ENABLED=0 {shlex.quote(inventory.ray.python)} -c {shlex.quote(program)}")


def parse_nodes(text: str) -> list[dict] | None:
    for line in text.splitlines():
        if line.startswith(NODES_MARKER):
            return json.loads(line[len(NODES_MARKER):])
    return None


def membership_findings(inventory: Inventory, nodes: list[Node], reported: list[dict]) -> dict[str, list[str]]:
    """Per node: is it alive in the cluster on its link address? Plus nodes on addresses the inventory does not
    know (a worker that picked the wrong interface), reported on the head."""
    alive = {n["ip"] for n in reported if n["alive"]}
    findings: dict[str, list[str]] = {n.name: [] for n in nodes}
    for node in nodes:
        if node.links[0].ip not in alive:
            findings[node.name].append(f"not in the Ray cluster on {node.links[0].ip} "
                                       f"(head {head_address(inventory)} sees {', '.join(sorted(alive)) or 'none'})")
    expected = {n.links[0].ip for n in inventory.nodes}
    strangers = sorted(alive - expected)
    if strangers:
        findings.setdefault(inventory.head.name, []).append(
            f"Ray nodes on addresses outside the inventory's links: {', '.join(strangers)} (wrong interface?)")
    return findings

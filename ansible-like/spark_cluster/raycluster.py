"""A Ray cluster over the link addresses: head on the first node, workers on the others (docs/sources.md#dgx-spark).

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
from spark_cluster.step import Step, shell_path

SESSION = "ray"
# The cluster checks run on the head as recorded sessions of their own, bounded on the head by `timeout`: against a
# dead head `ray.init` retries for minutes, long after the SSH command gave up. spark.down stops them like Ray.
CHECK_SESSION = "ray-check"
CHECK_CONNECT_S = 20  # on top of the check's own wait: connecting to a live cluster takes a few seconds
HEALTH_CONNECT_S = 15  # the health fact: one listing, no waiting for nodes to join
CHECK_KILL_S = 5  # SIGKILL this long after SIGTERM (`timeout -k`)
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
                "mkdir -p ~/.ray && chmod 700 ~/.ray && (umask 077 && cat > ~/.ray/auth_token.new) && "
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


def alive_addresses(reported: list[dict] | None) -> set[str] | None:
    """The addresses of the nodes the cluster reports alive; None when the cluster did not answer."""
    if reported is None:
        return None
    return {n["ip"] for n in reported if n["alive"]}


def plan_ray(inventory: Inventory, facts: dict[str, session.SessionFacts], token_digest: str,
             alive: set[str] | None) -> RayPlan:
    """Which nodes to (re)start. Empty when every node runs Ray with the wanted settings and is healthy.

    Health is what the cluster says, not whether a pid of the session lives: after the head's GCS dies, Ray's
    monitor processes keep the session "running". `alive` holds the addresses the head's cluster reports alive
    (None: it did not answer). A node is kept only when its recorded Ray runs with the wanted settings and the
    cluster lists it alive on its link address; the rest restart (their recorded pids stopped first), and every
    worker restarts with the head."""
    stop, start = {}, []
    head = inventory.head.name
    for node in inventory.nodes:
        state = facts[node.name]
        wanted = start_settings(inventory, node, token_digest)
        head_restarts = head in start and node.name != head
        healthy = alive is not None and node.links[0].ip in alive
        if (state.running and state.record is not None and state.record.settings == wanted and healthy
                and not head_restarts):
            continue
        if state.running:
            stop[node.name] = state
        start.append(node.name)
    return RayPlan(stop, tuple(start))


def nodes_script(inventory: Inventory, expected: int, timeout_s: int, connect_s: int = CHECK_CONNECT_S) -> str:
    """sh the head runs: connect to the cluster and wait (bounded) until `expected` nodes are alive; print them.

    The Python runs as a recorded session (spark.down stops it) under `timeout` on the head, so a check against
    a dead head ends there too; its output is read back from the session's log."""
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
    bound = timeout_s + connect_s
    command = (f"timeout -k {CHECK_KILL_S} {bound} {shlex.quote(inventory.ray.python)} -c {shlex.quote(program)}")
    launch = session.launch_command(inventory.state_dir, CHECK_SESSION, {"bound_s": str(bound)}, command,
                                    env_file=inventory.env_file, exports="export RAY_USAGE_STATS_ENABLED=0 && ")
    log = shell_path(session.log_path(inventory.state_dir, CHECK_SESSION))
    return f"{launch}; rc=$?; cat {log}; exit $rc"


def check_bound_s(timeout_s: int, connect_s: int = CHECK_CONNECT_S) -> int:
    """How long the SSH side waits for a nodes_script check: longer than the check may run on the head (so the
    head's own bound ends it and its answer, or its silence, comes back)."""
    return timeout_s + connect_s + CHECK_KILL_S + 10


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

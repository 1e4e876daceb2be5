"""The cluster environment file every node sources before NCCL, MPI, Ray or vLLM start (docs/sources.md#dgx-spark).

An `export` in one shell never reaches the other nodes, so each node gets a file naming its own link interface and
address; Ray and vLLM are started with it, and mpirun forwards it to the remote ranks. Pure: rendering and the plan.
"""

from __future__ import annotations

from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import Step, write_file_command

ENV_MARKER = "### env-file"
HEADER = ("# Written by nemotron-deploy (fab spark.nccl / spark.ray); local edits are replaced on the next run.\n"
          "# shellcheck disable=SC2034  # loaded with set -a: every setting is exported to NCCL, MPI, Ray and vLLM\n"
          "# Load with: set -a; . {path}; set +a\n")
# names mpirun must forward to the remote ranks (-x NAME)
FORWARDED = ("NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "NCCL_IB_SUBNET_AWARE_ROUTING", "NCCL_NET_PLUGIN",
             "UCX_NET_DEVICES", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME")


def cluster_env(inventory: Inventory, node: Node, rdma_devices: tuple[str, ...] | None) -> dict[str, str]:
    """The variables for one node. `rdma_devices` are the RoCE devices behind the node's links, in link order
    (both halves, else NCCL gets ~3 GB/s); None where there are none (the lab): NCCL then uses sockets."""
    primary = node.links[0]
    env = {
        "VLLM_HOST_IP": primary.ip,
        "NCCL_SOCKET_IFNAME": primary.interface,
        "GLOO_SOCKET_IFNAME": primary.interface,
        "TP_SOCKET_IFNAME": primary.interface,
        "UCX_NET_DEVICES": primary.interface,
        "OMPI_MCA_btl_tcp_if_include": primary.interface,
        "RAY_AUTH_MODE": "token",  # spark.ray puts the same token in ~/.ray/auth_token on every node
    }
    if rdma_devices:
        env["NCCL_IB_HCA"] = ",".join(rdma_devices)
    if len(inventory.nodes) == 3:
        # three Sparks have no switch-free full mesh on one subnet per half
        env["NCCL_IB_SUBNET_AWARE_ROUTING"] = "1"
        env["NCCL_NET_PLUGIN"] = "none"
    return env


def render_env(inventory: Inventory, env: dict[str, str]) -> str:
    return HEADER.format(path=inventory.env_file) + "".join(f"{key}={value}\n" for key, value in env.items())


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def plan_env(inventory: Inventory, env: dict[str, str], current: str | None) -> tuple[Step, ...]:
    """Write the env file when its content differs (mode 644: no secrets in it)."""
    desired = render_env(inventory, env)
    if current == desired:
        return ()
    what = "write" if current is None else "rewrite"
    return (Step(f"{what} {inventory.env_file}", write_file_command(inventory.env_file, desired, "644")),)

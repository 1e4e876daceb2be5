"""Connections to the nodes (strict host keys) and fan-out of per-node work with Fabric's ThreadingGroup.

Everything that touches SSH lives here and in tasks.py; plans and parsers stay pure.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paramiko
from fabric import Connection, SerialGroup, ThreadingGroup
from fabric.exceptions import GroupException
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError

from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import Step, as_user, batch_script, parse_batch

CONNECT_TIMEOUT_S = 10


class NodeError(Exception):
    """A node could not do what was asked; the message is what the report shows."""


class SessionLost(NodeError):
    """The SSH session to a node died while a command ran: a connection failure of that node, not a result."""


HANDSHAKE_ERRORS = ("banner", "No existing session", "Negotiation failed")
CHECK_SSHD = "check that the node is up and its sshd runs and answers (`ssh HOST true`), then rerun"


class StrictHostKeyConnection(Connection):
    """A Fabric connection that talks only to hosts whose key is already in the given known_hosts file.

    Fabric's own Connection accepts unknown host keys; this one rejects them (paramiko.RejectPolicy), so a
    changed or unknown key fails the node instead of being trusted.
    """

    def __init__(self, *args: Any, known_hosts: str, node_name: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.node_name = node_name  # the inventory's name, for messages that must say which node
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.get_host_keys().load(known_hosts)

    def call(self, fn: Callable[[StrictHostKeyConnection], Any]) -> Any:
        """Run `fn(self)`: lets a Group fan out arbitrary per-node work like it fans out `run`."""
        return fn(self)


class ParallelNodes(ThreadingGroup):
    """All nodes at once, one thread each (Fabric's ThreadingGroup)."""

    def call(self, fn: Callable) -> Any:
        return self._do("call", fn)


class SerialNodes(SerialGroup):
    """One node after another: only for comparison in the bench."""

    def call(self, fn: Callable) -> Any:
        return self._do("call", fn)


@dataclass
class Cluster:
    """The inventory's nodes with one open-on-demand connection each."""

    inventory: Inventory
    connections: dict[str, StrictHostKeyConnection]
    parallel: bool = True

    def each(self, fn: Callable[[StrictHostKeyConnection, Node], Any],
             names: Iterable[str] | None = None) -> dict[str, Any]:
        """Run `fn(connection, node)` on the named nodes at once; a node's value is its result, or the exception
        it raised (the other nodes carry on)."""
        chosen = [n for n in self.inventory.nodes if names is None or n.name in set(names)]
        if not chosen:
            return {}
        by_connection = {id(self.connections[n.name]): n for n in chosen}
        group_class = ParallelNodes if self.parallel else SerialNodes
        group = group_class.from_connections([self.connections[n.name] for n in chosen])

        def work(cxn: StrictHostKeyConnection) -> Any:
            return fn(cxn, by_connection[id(cxn)])

        try:
            results = group.call(work)
        except GroupException as exc:
            results = exc.result
        return {by_connection[id(cxn)].name: value for cxn, value in results.items()}

    def close(self) -> None:
        for cxn in self.connections.values():
            cxn.close()


def connect(inventory: Inventory, parallel: bool = True) -> Cluster:
    """Connections for every node: inventory user, port and key; host keys only from the inventory's known_hosts."""
    known_hosts = os.path.expanduser(inventory.known_hosts)
    if not os.path.isfile(known_hosts):
        raise NodeError(f"known_hosts file {known_hosts} not found: collect the nodes' host keys first "
                        "(compare fingerprints, then ssh-keyscan HOST >> FILE); strict host key checking stays on")
    # a frozen sshd accepts the TCP connection and never sends its banner: give up after as long as a connect
    connect_kwargs: dict[str, Any] = {"banner_timeout": CONNECT_TIMEOUT_S, "auth_timeout": CONNECT_TIMEOUT_S}
    if inventory.ssh_key:
        connect_kwargs.update(key_filename=os.path.expanduser(inventory.ssh_key), look_for_keys=False)
    connections = {
        node.name: StrictHostKeyConnection(node.host, user=inventory.user, port=inventory.port,
                                           connect_timeout=CONNECT_TIMEOUT_S, connect_kwargs=dict(connect_kwargs),
                                           known_hosts=known_hosts, node_name=node.name)
        for node in inventory.nodes
    }
    return Cluster(inventory, connections, parallel)


def run(cxn: Connection, command: str, timeout_s: int = 60, check: bool = True, stdin: str | None = None) -> Any:
    """Run one command on a node and return fabric's Result; NodeError with a readable reason on failure.
    Output is captured, never echoed; `stdin` (a secret, say) is streamed to the command."""
    in_stream = io.StringIO(stdin) if stdin is not None else False
    try:
        result = cxn.run(command, hide=True, warn=True, in_stream=in_stream, pty=False, timeout=timeout_s)
    except CommandTimedOut as exc:
        raise NodeError(f"timed out after {timeout_s}s on {where(cxn)}: {_short(command)}") from exc
    except Exception as exc:  # connection problems surface on the first command
        raise NodeError(describe_exception(exc, cxn)) from exc
    if result.exited == -1:
        # the channel closed without an exit status: the SSH session died (sshd killed, node rebooted, network
        # gone). Fabric raises nothing and hands back partial output: never judge that output, whatever `check`.
        raise SessionLost(f"SSH session to {where(cxn)} lost during `{_short(command)}` (no exit status; "
                          f"{len(result.stdout or '')} bytes of partial output ignored): {CHECK_SSHD}")
    if check and result.exited != 0:
        raise NodeError(f"exit {result.exited}: {_short(command)}: {last_line(result.stderr or result.stdout)}")
    return result


def run_steps(cxn: Connection, user: str, steps: Iterable[Step]) -> list[str]:
    """Run a node's steps in order, stopping at the first that fails; returns the summaries of those that ran.

    Consecutive steps go to the node as one script (one round trip); a step that reads stdin runs on its own."""
    done: list[str] = []
    pending: list[Step] = []

    def flush() -> None:
        if not pending:
            return
        script = batch_script([as_user(s.command, user, s.privileged) for s in pending])
        result = run(cxn, script, sum(s.timeout_s for s in pending))
        outcomes = parse_batch(result.stdout)
        for step, (_, rc, output) in zip(pending, outcomes, strict=False):
            if rc != 0:
                raise NodeError(f"{step.summary}: exit {rc}: {last_line(output)}")
            done.append(step.summary)
        if len(outcomes) < len(pending):
            raise NodeError(f"{pending[len(outcomes)].summary}: no result (output: {last_line(result.stdout)})")
        pending.clear()

    for step in steps:
        if step.stdin is None:
            pending.append(step)
            continue
        flush()
        try:
            run(cxn, as_user(step.command, user, step.privileged), step.timeout_s, stdin=step.stdin)
        except NodeError as exc:
            raise NodeError(f"{step.summary}: {exc}") from exc
        done.append(step.summary)
    flush()
    return done


def where(cxn: Connection | None) -> str:
    """`node (host:port)`: what a connection message names."""
    if cxn is None:
        return "host"
    name = getattr(cxn, "node_name", "")
    return f"{name} ({cxn.host}:{cxn.port})" if name else f"{cxn.host}:{cxn.port}"


def describe_exception(exc: BaseException, cxn: Connection | None = None) -> str:
    """One line for the report: why a node could not be reached or a command could not run, naming the node,
    its host and port, and what to check."""
    at = where(cxn)
    if isinstance(exc, NodeError):
        return str(exc)
    if isinstance(exc, NoValidConnectionsError):
        reasons = {e.strerror or str(e) for e in exc.errors.values()}
        return f"cannot connect to {at}: {', '.join(sorted(reasons))}: {CHECK_SSHD}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return (f"cannot connect to {at}: timed out after {CONNECT_TIMEOUT_S}s: check the management network "
                f"route to the host and that the node is up")
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"host key of {at} does not match known_hosts: refusing to connect (strict host key checking); "
                "if the node was reinstalled, compare its fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
                " on the node) and replace its line in known_hosts")
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication failed at {at}: {exc}: check the inventory's user and ssh_key"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (f"host key of {at} is not in known_hosts: refusing to connect (strict host key checking); "
                "compare its fingerprint, then ssh-keyscan HOST >> known_hosts")
    if isinstance(exc, paramiko.SSHException) and any(s in str(exc) for s in HANDSHAKE_ERRORS):
        # a frozen or resetting sshd: paramiko says "Error reading SSH protocol banner" or, when the transport
        # died under the login, "No existing session"
        return (f"cannot connect to {at}: SSH handshake failed ({str(exc).strip()}): the port accepts connections "
                "but sshd does not complete the handshake; check that sshd on the node is not hung, stopped or "
                "overloaded (MaxStartups), then rerun")
    if isinstance(exc, (paramiko.SSHException, EOFError)):
        return f"SSH connection to {at} failed ({exc.__class__.__name__}: {exc or 'closed'}): {CHECK_SSHD}"
    if isinstance(exc, OSError):
        return f"cannot connect to {at}: {exc.strerror or exc}: {CHECK_SSHD}"
    return f"{exc.__class__.__name__} on {at}: {exc}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _short(command: str, limit: int = 100) -> str:
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= limit else first[:limit] + "..."

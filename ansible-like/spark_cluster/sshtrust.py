"""Passwordless SSH between the nodes over the link addresses, with strict host key checking left on.

Pure: the facts parser, known_hosts matching (plain, wildcard and hashed entries), the plans (a key pair where there
is none; each node's key in every node's authorized_keys; every peer's host keys in known_hosts under each of its link
addresses) and the check after (every node logs in to every peer link address with BatchMode and strict checking).

Host keys are read from the peer's /etc/ssh/*.pub over the management connection, which itself was verified against
the operator's known_hosts, so no key is trusted on first use.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import shlex
from dataclasses import dataclass

from spark_cluster.inventory import Inventory, Node
from spark_cluster.step import Step

USER_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")  # what ssh offers by default, in this order
SECTIONS = ("user-key", "host-keys", "authorized-keys", "known-hosts")


def facts_command() -> str:
    """Print the user's public key, the host's public keys, authorized_keys and known_hosts in marked sections."""
    user_key = " || ".join(f"cat ~/.ssh/{name}.pub 2>/dev/null" for name in USER_KEY_NAMES)
    return ("echo '### user-key'; " + user_key + " || true; "
            "echo '### host-keys'; cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null || true; "
            "echo '### authorized-keys'; cat ~/.ssh/authorized_keys 2>/dev/null || true; "
            "echo '### known-hosts'; cat ~/.ssh/known_hosts 2>/dev/null || true; echo '### end'")


@dataclass(frozen=True)
class PublicKey:
    kind: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    blob: str  # base64
    comment: str = ""

    def line(self) -> str:
        return f"{self.kind} {self.blob} {self.comment}".strip()

    @property
    def identity(self) -> tuple[str, str]:
        return self.kind, self.blob


@dataclass(frozen=True)
class SshFacts:
    user_key: PublicKey | None
    host_keys: tuple[PublicKey, ...]
    authorized: tuple[PublicKey, ...]
    known_hosts: tuple[str, ...]  # raw lines


def parse_public_key(line: str) -> PublicKey | None:
    """A key from a .pub or authorized_keys line (options before the key type are skipped)."""
    parts = line.strip().split()
    for i, part in enumerate(parts):
        if part.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(parts):
            return PublicKey(part, parts[i + 1], " ".join(parts[i + 2:]))
    return None


def parse_ssh_facts(text: str) -> SshFacts:
    sections: dict[str, list[str]] = {name: [] for name in SECTIONS}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            continue
        if current in sections and line.strip() and not line.lstrip().startswith("#"):
            sections[current].append(line.strip())
    user_keys = [k for k in map(parse_public_key, sections["user-key"]) if k]
    return SshFacts(
        user_key=user_keys[0] if user_keys else None,
        host_keys=tuple(k for k in map(parse_public_key, sections["host-keys"]) if k),
        authorized=tuple(k for k in map(parse_public_key, sections["authorized-keys"]) if k),
        known_hosts=tuple(sections["known-hosts"]),
    )


def host_pattern(address: str, port: int) -> str:
    """How ssh names a host in known_hosts: `addr`, or `[addr]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def _host_matches(field: str, host: str) -> bool:
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|")
            mac = hmac.new(base64.b64decode(salt), host.encode(), hashlib.sha1).digest()
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if fnmatch.fnmatchcase(host, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(host, pattern):
            matched = True
    return matched


def known_keys(known_hosts: tuple[str, ...], host: str) -> set[tuple[str, str]]:
    """The (type, base64) keys known_hosts accepts for `host` (revoked and CA lines are not host keys)."""
    keys = set()
    for line in known_hosts:
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith("@"):
            continue
        if _host_matches(parts[0], host):
            keys.add((parts[1], parts[2]))
    return keys


def plan_keypair(facts: SshFacts, user: str, node: Node) -> tuple[Step, ...]:
    """A key pair for the user when there is none (ed25519, no passphrase: it is for node-to-node logins)."""
    if facts.user_key is not None:
        return ()
    return (Step("create ~/.ssh and an ed25519 key pair",
                 "mkdir -p ~/.ssh && chmod 700 ~/.ssh && "
                 f"ssh-keygen -q -t ed25519 -N '' -C {shlex.quote(f'{user}@{node.name}')} "
                 "-f ~/.ssh/id_ed25519", privileged=False),)


def plan_trust(inventory: Inventory, node: Node, facts: dict[str, SshFacts]) -> tuple[Step, ...]:
    """Steps that make `node` accept every node's user key and know every peer's host keys under its link
    addresses. Empty when both are already so. Nodes without facts (unreachable) are left out."""
    steps: list[Step] = []
    mine = facts[node.name]
    authorized = {k.identity for k in mine.authorized}
    known = [n for n in inventory.nodes if n.name in facts]
    for other in known:
        key = facts[other.name].user_key
        if key is not None and key.identity not in authorized:
            authorized.add(key.identity)
            steps.append(Step(f"authorize {other.name}'s key ({key.kind})",
                              f"mkdir -p ~/.ssh && chmod 700 ~/.ssh && printf '%s\\n' {shlex.quote(key.line())} "
                              ">> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys", privileged=False))
    for peer in known:
        if peer.name == node.name:
            continue
        wanted = {k.identity for k in facts[peer.name].host_keys}
        for link in peer.links:
            host = host_pattern(link.ip, inventory.port)
            present = known_keys(mine.known_hosts, host)
            missing = wanted - present
            stale = {k for k in present if k[0] in {w[0] for w in wanted}} - wanted
            if not missing and not stale:
                continue
            command = "mkdir -p ~/.ssh && chmod 700 ~/.ssh && touch ~/.ssh/known_hosts"
            summary = f"known_hosts: {peer.name} at {host}"
            if stale:
                # a key of the same type that the peer no longer has: the peer was reinstalled; the key just read
                # over the verified management connection is authoritative
                command += f" && ssh-keygen -q -R {shlex.quote(host)} -f ~/.ssh/known_hosts >/dev/null 2>&1"
                missing = wanted
                summary += " (replaced a stale key)"
            lines = "".join(f"{host} {kind} {blob}\\n" for kind, blob in sorted(missing))
            command += f" && printf {shlex.quote(lines)} >> ~/.ssh/known_hosts && chmod 600 ~/.ssh/known_hosts"
            steps.append(Step(summary, command, privileged=False))
    return tuple(steps)


def login_targets(node: Node, peers: list[Node]) -> tuple[tuple[str, str], ...]:
    """(peer name, link address) pairs a node must be able to log in to."""
    return tuple((peer.name, link.ip) for peer in peers if peer.name != node.name for link in peer.links)


LOGIN_TIMEOUT_S = 20


def login_probe_script(inventory: Inventory, targets: tuple[tuple[str, str], ...]) -> str:
    """Log in to every target at once, non-interactively and with strict host key checking."""
    user, port = shlex.quote(inventory.user), inventory.port
    # bounded on the node too: a peer that accepts the connection and then hangs must not keep the check alive
    lines = [f"probe() {{ out=$(timeout -k 5 {LOGIN_TIMEOUT_S} ssh -o BatchMode=yes -o StrictHostKeyChecking=yes "
             f"-o ConnectTimeout=5 -p {port} {user}@\"$1\" true 2>&1 </dev/null); rc=$?; "
             "printf 'LOGIN\\t%s\\t%s\\t%s\\n' \"$1\" \"$rc\" \"$(printf '%s' \"$out\" | tail -n 1)\"; }"]
    lines += [f"probe {address} &" for _, address in targets]
    lines.append("wait")
    return "\n".join(lines)


def login_findings(targets: tuple[tuple[str, str], ...], output: str) -> list[str]:
    results = {}
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "LOGIN":
            results[parts[1]] = (parts[2], parts[3].strip())
    findings = []
    for peer, address in targets:
        rc, detail = results.get(address, ("?", "no result"))
        if rc != "0":
            findings.append(f"cannot log in to {peer} at {address} (strict host keys, no password): {detail}")
    return findings

"""Steps: the commands a plan is made of, and the pure helpers that write them (no SSH here)."""

from __future__ import annotations

import base64
import posixpath
import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One command that closes part of the gap between a node's facts and the desired state."""

    summary: str  # what a person reads in the report: "set mtu 9000 on enp1s0f0np0"
    command: str  # POSIX sh
    privileged: bool = True  # needs root: run through `sudo -n` when the inventory user is not root
    timeout_s: int = 60
    stdin: str | None = field(default=None, repr=False)  # fed to the command (secrets: never in argv or reports)


def as_user(command: str, user: str, privileged: bool) -> str:
    """The command line to send: unchanged for root or unprivileged steps, else through non-interactive sudo
    (a sudo that wants a password fails at once with a clear message instead of hanging)."""
    if not privileged or user == "root":
        return command
    return f"sudo -n sh -c {shlex.quote(command)}"


def shell_path(path: str) -> str:
    """A path quoted for sh, with a leading `~/` kept as $HOME so it expands on the node, not here."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def write_file_command(path: str, content: str, mode: str = "600", root: str = "") -> str:
    """Replace a file atomically with `content` and `mode` (base64 on the wire: no quoting surprises). `root` is
    a shell expression prefixed to an absolute path (a scratch root, say)."""
    blob = base64.b64encode(content.encode()).decode()
    target = root + shell_path(path)
    parent = root + shell_path(posixpath.dirname(path) or ".")
    tmp = root + shell_path(path + ".nemotron-tmp")
    # the temporary file is private from its first byte; the parent keeps the usual umask (others may read it)
    return (f"mkdir -p {parent} && (umask 077 && printf %s {blob} | base64 -d > {tmp}) && chmod {mode} {tmp} "
            f"&& mv -f {tmp} {target}")


def read_file_command(path: str, marker: str) -> str:
    """Print `marker present` and the file, or `marker absent`: an absent file differs from an empty one."""
    target = shell_path(path)
    return f"if [ -f {target} ]; then echo '{marker} present'; cat {target}; else echo '{marker} absent'; fi"


def parse_read_file(text: str, marker: str) -> str | None:
    """The content printed by read_file_command, or None when the file is absent."""
    head, _, body = text.partition("\n")
    if head.strip() == f"{marker} absent":
        return None
    if head.strip() != f"{marker} present":
        raise ValueError(f"unexpected output reading a file: {head[:80]!r}")
    return body


def batch_script(commands: list[str]) -> str:
    """Run commands in order in one shell (one SSH round trip), each reporting `### step N rc=R` and its output;
    the first failure ends the batch."""
    lines = []
    for index, command in enumerate(commands):
        lines.append(f"out=$( ( {command} ) 2>&1 < /dev/null ); rc=$?; printf '### step {index} rc=%s\\n%s\\n' "
                     "\"$rc\" \"$out\"; [ \"$rc\" -eq 0 ] || exit 0")
    return "\n".join(lines)


def parse_batch(text: str) -> list[tuple[int, int, str]]:
    """(step index, exit status, output) for each step batch_script ran."""
    results: list[tuple[int, int, str]] = []
    body: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["###", "step"] and parts[3].startswith("rc="):
            if results:
                results[-1] = (*results[-1][:2], "\n".join(body))
            results.append((int(parts[2]), int(parts[3][3:]), ""))
            body = []
        else:
            body.append(line)
    if results:
        results[-1] = (*results[-1][:2], "\n".join(body))
    return results

"""Processes the toolkit starts on a node (Ray, vLLM), each in its own session, recorded so they can be stopped by pid.

A launch runs the command as the leader of a new session (setsid) and first writes a record: the session id, the
boot id and the settings it was started with. Every process Ray or vLLM forks stays in that session, so `spark.down`
stops exactly those pids (SIGTERM, a bounded wait, SIGKILL for what is left) and never looks processes up by name.
A record from an earlier boot is ignored: session ids are reused after a reboot.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from spark_cluster.step import Step, shell_path

BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class SessionRecord:
    sid: int
    boot_id: str
    settings: dict[str, str]  # what it was started with; a different wish means restart


@dataclass(frozen=True)
class SessionFacts:
    name: str
    record: SessionRecord | None
    boot_id: str
    live_pids: tuple[int, ...]  # processes of the recorded session in this boot (zombies excluded)

    @property
    def running(self) -> bool:
        return bool(self.live_pids)


def record_path(state_dir: str, name: str) -> str:
    return f"{state_dir.rstrip('/')}/{name}.session"


def log_path(state_dir: str, name: str) -> str:
    return f"{state_dir.rstrip('/')}/{name}.log"


def log_tail_command(state_dir: str, name: str, lines: int = 5) -> str:
    """The last lines of a session's log (what a server said before it exited)."""
    return f"tail -n {lines} {shell_path(log_path(state_dir, name))}"


def facts_command(state_dir: str, names: Iterable[str]) -> str:
    parts = [f"echo '### boot-id'; cat {BOOT_ID}"]
    for name in names:
        parts.append(f"echo '### record {name}'; cat {shell_path(record_path(state_dir, name))} 2>/dev/null || true")
    parts.append("echo '### processes'; ps -eo pid=,sid=,stat=")
    return "; ".join(parts)


def parse_record(lines: list[str]) -> SessionRecord | None:
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    try:
        sid = int(values.pop("sid"))
        boot_id = values.pop("boot_id")
    except (KeyError, ValueError):
        return None
    return SessionRecord(sid, boot_id, values)


def parse_facts(text: str) -> dict[str, SessionFacts]:
    """name -> facts, from facts_command output."""
    section, boot_id = None, ""
    records: dict[str, list[str]] = {}
    processes: list[tuple[int, int, str]] = []
    for line in text.splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
            if section.startswith("record "):
                records[section.split(" ", 1)[1]] = []
            continue
        if section == "boot-id" and line.strip():
            boot_id = line.strip()
        elif section and section.startswith("record "):
            records[section.split(" ", 1)[1]].append(line.strip())
        elif section == "processes":
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
                processes.append((int(parts[0]), int(parts[1]), parts[2]))
    facts = {}
    for name, lines in records.items():
        record = parse_record(lines)
        live: tuple[int, ...] = ()
        if record is not None and record.boot_id == boot_id:
            live = tuple(pid for pid, sid, stat in processes if sid == record.sid and not stat.startswith("Z"))
        facts[name] = SessionFacts(name, record, boot_id, live)
    return facts


def launch_command(state_dir: str, name: str, settings: dict[str, str], command: str,
                   env_file: str | None = None, exports: str = "", wait: bool = True) -> str:
    """sh that starts `command` as a new session leader after recording it; with wait=False it stays in the
    background (a server), otherwise its exit status is the step's (ray start)."""
    state, record = shell_path(state_dir), shell_path(record_path(state_dir, name))
    log = shell_path(log_path(state_dir, name))
    lines = "".join(f"{key}={value}\n" for key, value in settings.items())
    inner = (f"printf 'sid=%s\\nboot_id=%s\\n' \"$$\" \"$(cat {BOOT_ID})\" > {record}.new && "
             f"printf %s {shlex.quote(lines)} >> {record}.new && mv -f {record}.new {record} && "
             f"{exports}exec {command}")
    # (mkdir -p -m would set the mode of the last directory only: chmod says what it means)
    prepare = f"mkdir -p {state} && chmod 700 {state} || exit 1; "
    if env_file:
        env = shlex.quote(env_file)
        prepare += f"if [ -f {env} ]; then set -a; . {env} || exit 1; set +a; fi; "
    if not wait:
        return f"{prepare}setsid -f sh -c {shlex.quote(inner)} > {log} 2>&1 < /dev/null"
    return (f"{prepare}if ! setsid -w sh -c {shlex.quote(inner)} > {log} 2>&1 < /dev/null; then "
            f"echo '{name} failed to start:' >&2; tail -n 20 {log} >&2; exit 1; fi")


def plan_signal(facts: SessionFacts, signal: str = "TERM") -> tuple[Step, ...]:
    """Signal every live process of the recorded session; empty when none runs."""
    if not facts.live_pids:
        return ()
    pids = " ".join(str(p) for p in facts.live_pids)
    return (Step(f"stop {facts.name}: SIG{signal} to {len(facts.live_pids)} process(es) of session "
                 f"{facts.record.sid if facts.record else '?'}",
                 f"kill -{signal} {pids} 2>/dev/null; true", privileged=False),)


def plan_forget(facts: SessionFacts, state_dir: str) -> tuple[Step, ...]:
    """Remove the record once nothing of the session runs."""
    if facts.record is None or facts.live_pids:
        return ()
    return (Step(f"forget the {facts.name} record", f"rm -f {shell_path(record_path(state_dir, facts.name))}",
                 privileged=False),)

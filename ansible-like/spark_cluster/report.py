"""Per-node reports: one row per node, a table a person reads (rich) or JSON a pipeline reads, and the exit status."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"ok": "green", "changed": "yellow", "would change": "cyan", "FAILED": "bold red"}


@dataclass
class NodeReport:
    node: str
    host: str
    ok: bool = True
    changes: list[str] = field(default_factory=list)  # steps run, or planned in a dry run
    messages: list[str] = field(default_factory=list)  # findings, failures, notes
    commands: list[str] = field(default_factory=list)  # planned commands (dry run, --json only)
    dry_run: bool = False
    not_applicable: str = ""  # why the check does not apply to this node (it passes, saying so)

    @property
    def status(self) -> str:
        if not self.ok:
            return "FAILED"
        if self.changes:
            return "would change" if self.dry_run else "changed"
        return "ok"

    def fail(self, message: str) -> None:
        self.ok = False
        self.messages.append(message)

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = self.status
        return data


@dataclass
class TaskReport:
    task: str
    nodes: list[NodeReport]

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.nodes)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict:
        return {"task": self.task, "ok": self.ok, "nodes": [n.to_json() for n in self.nodes]}


def print_report(report: TaskReport, as_json: bool = False, stream=None) -> None:
    stream = stream or sys.stdout
    if as_json:
        stream.write(json.dumps(report.to_json(), indent=2) + "\n")
        return
    console = Console(file=stream, width=None if stream.isatty() else 200, soft_wrap=False)
    table = Table(title=f"{report.task}: {'ok' if report.ok else 'FAILED'}", show_lines=True)
    table.add_column("node")
    table.add_column("host")
    table.add_column("status")
    table.add_column("changes")
    table.add_column("details", overflow="fold")
    for node in report.nodes:
        style = STATUS_STYLE.get(node.status, "")
        details = node.messages + ([f"not applicable here: {node.not_applicable}"] if node.not_applicable else [])
        table.add_row(Text(node.node), Text(node.host), Text(node.status, style=style),
                      Text("\n".join(node.changes) or "-"), Text("\n".join(details) or "-"))
    console.print(table)

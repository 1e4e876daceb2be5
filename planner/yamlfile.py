"""The one safe reader of a user's YAML (stack files, model specs, Spark inventories): one clear line on bad input.

It decodes UTF-8 only (a UTF-8 byte-order mark is accepted; UTF-16 as Windows editors save it, and binary files,
are refused by name), bounds the document (size, aliases, nesting) so an alias bomb or a huge file fails fast,
refuses duplicate keys naming both lines, and reports syntax errors with their line and column.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import yaml
from yaml.events import AliasEvent

from planner.errors import PlanInputError

MAX_BYTES = 1 << 20  # 1 MiB: a stack file, model spec or inventory is a few KiB
MAX_ALIASES = 64
MAX_DEPTH = 32
MAX_EXPANDED_NODES = 100_000  # what the document is once every alias is written out


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases, limits nesting and refuses duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _Refused(f"more than {MAX_ALIASES} aliases (*name) at line {mark.line + 1}; write the values "
                               "out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        document = super().compose_document()
        sizes: dict[int, int] = {}

        def expanded(node) -> int:
            if id(node) not in sizes:
                sizes[id(node)] = 1  # a cycle counts once
                children = node.value if isinstance(node.value, list) else []
                total = 1
                for child in children:
                    total += sum(expanded(n) for n in child) if isinstance(child, tuple) else expanded(child)
                sizes[id(node)] = total
            return sizes[id(node)]

        if document is not None and expanded(document) > MAX_EXPANDED_NODES:
            raise _Refused(f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?); write "
                           "the values out")
        return document

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports an unhashable key itself
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"duplicate key {key!s:.60} at lines {seen[key]} and {line}; keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    """A bound the loader enforces; its message is the one line shown."""


class YamlFileError(PlanInputError):
    """A file that cannot be read as YAML: `FILE: what is wrong` in one line."""

    def __init__(self, source: str, problem: str):
        self.field, self.value, self.allowed, self.source = "(file)", None, problem, source
        ValueError.__init__(self, f"{source}: {problem}")

    def with_source(self, source: str) -> YamlFileError:
        return YamlFileError(source, self.allowed)


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text of a file's bytes (a UTF-8 BOM dropped), or a YamlFileError saying what the bytes look like."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise YamlFileError(source, "not UTF-8 text (looks like UTF-16 with a byte-order mark): save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlFileError(source, f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}; a binary file?): "
                                    "save it as UTF-8") from None
    if "\x00" in text:
        raise YamlFileError(source, "not UTF-8 text (it holds NUL bytes; UTF-16 without a byte-order mark, or a "
                                    "binary file?): save it as UTF-8")
    return text


def parse_yaml_text(text: str, source: str) -> object:
    """The document in `text`, bounded; YamlFileError with line and column on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlFileError(source, f"larger than {MAX_BYTES // 1024} KiB; this is not a config file")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise YamlFileError(source, str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "").split())
        raise YamlFileError(source, f"{where}not valid YAML ({problem})") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(source, f"not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    except RecursionError:
        raise YamlFileError(source, f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, what: str = "a YAML file") -> object:
    """Read, decode and parse a user's YAML file; YamlFileError (one line, naming the file) on any problem.

    `what` names the expected file for a person ("a stack file"), used when the path is a directory or missing.
    """
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise YamlFileError(source, f"is a directory; give {what}")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlFileError(source, f"larger than {MAX_BYTES // 1024} KiB ({size:,} bytes); this is not {what}")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise YamlFileError(source, f"no such file; give {what}") from None
    except OSError as exc:
        raise YamlFileError(source, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    return parse_yaml_text(decode_text(data, source), source)

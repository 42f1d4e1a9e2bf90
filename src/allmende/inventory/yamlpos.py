"""Read one YAML file into plain Python data while keeping where every key and value sits.

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 defaults: ``no``, ``on``,
``off`` and ``NO`` (Norway) stay text, ``0755`` is the number 755, and ``1_000`` is text. Only
``true``/``false`` are booleans and only ``null``, ``~`` or nothing is null. Anchors, aliases
and ``<<`` merge keys work as in Compose files. Duplicate keys and unknown tags are problems,
not silently resolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from allmende.errors import Location, Problem

_Base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """libyaml's parser, leaving plain scalars untyped ("?") for the YAML 1.2 rules below."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return "?"
        return super().resolve(kind, value, implicit)


KeyPath = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")

_STR = "tag:yaml.org,2002:str"
_MAY_BE_TYPED = frozenset("0123456789+-.~nNtTfF")
_KNOWN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


@dataclass
class Document:
    """A parsed YAML file: its data and the position of every value and key in it.

    ``values[path]`` is the (line, column) where the value at ``path`` starts and
    ``keys[path]`` where its key is written; both 1-based. The root is the empty path.
    """

    file: str
    data: Any = None
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath, *, key: bool = False) -> Location:
        """Given a key path, return the closest known location: the path itself or a parent.

        With ``key=True`` prefer where the key is written (for "unknown key" problems).
        """
        probe = tuple(path)
        while True:
            table = (self.keys, self.values) if key else (self.values, self.keys)
            for positions in table:
                if probe in positions:
                    line, column = positions[probe]
                    return Location(self.file, line, column)
            if not probe:
                return Location(self.file, 1, 1)
            probe = probe[:-1]


def _position(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    value: str = node.value
    tag = node.tag
    if node.style or tag != "?":  # quoted, block or explicitly tagged (libyaml: "" = plain)
        return value
    if value and value[0] not in _MAY_BE_TYPED:
        return value
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT10.match(value):
        return int(value)
    if _INT8.match(value):
        return int(value[2:], 8)
    if _INT16.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value


class _Builder:
    """Turn a composed node tree into Python data, recording positions and problems."""

    def __init__(self, doc: Document, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems
        self._active: set[int] = set()

    def problem(self, node: yaml.Node, path: KeyPath, message: str, hint: str = "") -> None:
        line, column = _position(node)
        self.problems.append(
            Problem(Location(self.doc.file, line, column), dotted(path), message, hint)
        )

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.doc.values.setdefault(path, _position(node))
        tag = node.tag
        if tag.startswith("!") and tag != "!":
            self.problem(
                node,
                path,
                f"unknown YAML tag {tag}",
                "remove the tag; allmende reads plain YAML only",
            )
        elif tag.startswith("tag:yaml.org,2002:") and tag not in _KNOWN_TAGS:
            self.problem(node, path, f"unsupported YAML type {tag}", "write the value as text")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if id(node) in self._active:
            self.problem(node, path, "recursive alias", "an anchor must not contain itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, path)
        finally:
            self._active.discard(id(node))

    def _merged(self, node: yaml.MappingNode, path: KeyPath) -> Iterator[tuple[yaml.Node, Any]]:
        """Yield (key node, value node) of a mapping with ``<<`` merges applied."""
        explicit = []
        merged: list[tuple[yaml.Node, Any]] = []
        for key_node, value_node in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "<<"
                and (key_node.tag == "tag:yaml.org,2002:merge" or not key_node.style)
            ):
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        self.problem(
                            source, path, "`<<` merges only mappings", "point `<<` at a mapping"
                        )
                        continue
                    merged.extend(self._merged(source, path))
            else:
                explicit.append((key_node, value_node))
        # Explicit keys win over merged ones; earlier merge sources win over later ones.
        seen: set[Any] = set()
        for key_node, value_node in explicit:
            seen.add(key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node))
            yield key_node, value_node
        for key_node, value_node in merged:
            marker = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if marker not in seen:
                seen.add(marker)
                yield key_node, (value_node, True)

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, entry in self._merged(node, path):
            from_merge = isinstance(entry, tuple)
            value_node = entry[0] if from_merge else entry
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, path, "a key must be plain text", "write the key as text")
                continue
            key = _scalar(key_node)
            if not isinstance(key, str):
                key = key_node.value
            if key in result and not from_merge:
                self.problem(
                    key_node,
                    (*path, key),
                    f"duplicate key `{key}` (first at line {first_seen[key]})",
                    "remove one of them",
                )
                continue
            if not from_merge:
                first_seen[key] = key_node.start_mark.line + 1
                self.doc.keys[(*path, key)] = _position(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result


def dotted(path: KeyPath) -> str:
    """Given a key path, return it as users write it: ``components.app.ports[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _decode(raw: bytes, file: str) -> tuple[str | None, Problem | None]:
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, Problem(
            Location(file, line, column),
            "",
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
            "save the file as UTF-8",
        )


def parse(raw: bytes, file: str) -> tuple[Document, list[Problem]]:
    """Given a file's bytes and its name for messages, return its Document and any problems.

    Problems cover undecodable bytes, YAML syntax errors, several documents in one file,
    duplicate keys, unknown tags and an empty file. ``Document.data`` is None when the file
    could not be read at all.
    """
    doc = Document(file)
    text, problem = _decode(raw, file)
    if problem is not None or text is None:
        return doc, [problem] if problem else []
    problems: list[Problem] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return doc, [
            Problem(
                Location(file, line, column),
                "",
                f"invalid YAML: {what}",
                "fix the syntax; indent with spaces, not tabs",
            )
        ]
    except yaml.YAMLError as exc:
        return doc, [Problem(Location(file, 1, 1), "", f"invalid YAML: {exc}", "fix the syntax")]
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return doc, [
            Problem(
                Location(file, 1, 1),
                "",
                "the file is empty",
                "write the keys this file needs, or delete the file",
            )
        ]
    if len(nodes) > 1:
        line, column = _position(nodes[1])
        problems.append(
            Problem(
                Location(file, line, column),
                "",
                "more than one YAML document (`---`) in this file",
                "keep one document per file",
            )
        )
    doc.data = _Builder(doc, problems).build(nodes[0], ())
    if doc.data is None:
        problems.append(
            Problem(
                Location(file, 1, 1),
                "",
                "the file holds nothing (null)",
                "write the keys this file needs, or delete the file",
            )
        )
    return doc, problems

"""Read one YAML file into plain Python data while keeping where every key and value sits.

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 defaults: ``no``, ``on``,
``off`` and ``NO`` (Norway) stay text, ``0755`` is the number 755, and ``1_000`` is text. Only
``true``/``false`` are booleans and only ``null``, ``~`` or nothing is null. Anchors, aliases
and ``<<`` merge keys work as in Compose files. Duplicate keys and unknown tags are problems,
not silently resolved.

A file is an untrusted input: the tree is composed here from libyaml's events, counting as it
goes, and a file nested deeper than ``MAX_DEPTH`` levels or whose aliases would stand for more
than ``MAX_ALIASED`` values in all is refused at the place that crosses the limit, before it is
built (a 1 KB "billion laughs" of nested aliases, 40,000 nested brackets). What is written out
costs the bytes that write it; only aliases multiply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from allmende.errors import Location, Problem
from allmende.inventory import yamlerrors

_Base: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The deepest nesting of mappings and lists a file may have (aliases counted as what they
#: stand for); an inventory file needs a handful, a compose file a dozen.
MAX_DEPTH = 64
#: The most values the aliases of a file may stand for, together.
MAX_ALIASED = 100_000


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


class Based(int):
    """A whole number written in octal or hex (``0o17``, ``0x1F``): a number wherever one may
    be written so, but ``str`` gives it as written, and a port must be decimal."""

    text: str
    base: int

    def __new__(cls, text: str, base: int) -> Based:
        number = super().__new__(cls, int(text[2:], base))
        number.text = text
        number.base = base
        return number

    def __getnewargs__(self) -> tuple[str, int]:  # type: ignore[override]
        return self.text, self.base

    def __str__(self) -> str:
        return self.text


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
        return Based(value, 8)
    if _INT16.match(value):
        return Based(value, 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return float("-inf") if value.startswith("-") else float("inf")
    if _NAN.match(value):
        return float("nan")
    return value


class _TooBig(Exception):
    """A file crosses ``MAX_DEPTH`` or ``MAX_ALIASED``, or an alias stands for itself; ``mark``
    is where."""

    def __init__(self, message: str, mark: Any, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.hint = (
            hint or "write the values out; allmende reads no file nested or aliased this much"
        )


class _Open:
    """A mapping or list being composed: its node, its children so far, how many values they
    stand for and how deep they go (aliases expanded)."""

    __slots__ = ("anchor", "children", "height", "node", "weight")

    def __init__(self, node: yaml.Node, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.children: list[yaml.Node] = []
        self.weight = 1
        self.height = 1


def _composed(loader: Any) -> tuple[yaml.Node | None, yaml.Node | None]:
    """Compose the first document of the stream into nodes, as PyYAML's composer does, but
    without recursion and within ``MAX_DEPTH`` and ``MAX_ALIASED``; return it (None for an empty
    stream) and the first node of a second document, if there is one (not composed further).
    Raise _TooBig, or yaml's MarkedYAMLError for a syntax error or an undefined alias."""
    #: Each anchor's node, how many values it stands for, and how deep it goes.
    anchors: dict[str, tuple[yaml.Node, int, int]] = {}
    stack: list[_Open] = []
    total = 0
    document: yaml.Node | None = None
    scalar, alias, end_kinds = yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionEndEvent
    while True:
        event: Any = loader.get_event()
        kind = type(event)
        start: Any = event.start_mark
        weight = height = 1
        if kind is scalar or kind is alias or issubclass(kind, yaml.CollectionStartEvent):
            if document is not None and not stack:  # a second document starts
                if kind is alias:
                    return document, yaml.ScalarNode("?", "", start, start)
                return document, _node(loader, event)
            node: yaml.Node
            if kind is alias:
                if any(o.anchor == event.anchor for o in stack):
                    raise _TooBig(
                        f"recursive alias `*{event.anchor}`",
                        start,
                        "an anchor must not contain itself",
                    )
                if event.anchor not in anchors:
                    raise yaml.composer.ComposerError(
                        None, None, f"found undefined alias {event.anchor!r}", start
                    )
                node, weight, height = anchors[event.anchor]
            else:
                node = _node(loader, event)
                if event.anchor is not None and event.anchor in anchors:
                    raise yaml.composer.ComposerError(
                        f"found duplicate anchor {event.anchor!r}; first occurrence",
                        anchors[event.anchor][0].start_mark,
                        "second occurrence",
                        start,
                    )
                if kind is not scalar:
                    stack.append(_Open(node, event.anchor))
                    if len(stack) > MAX_DEPTH:
                        raise _TooBig(f"nested more than {MAX_DEPTH} levels deep", start)
                    continue
                if event.anchor is not None:
                    anchors[event.anchor] = (node, 1, 1)
        elif issubclass(kind, end_kinds):
            done = stack.pop()
            node = done.node
            children = done.children
            if isinstance(node, yaml.MappingNode):
                node.value = list(zip(children[::2], children[1::2], strict=True))
            else:
                node.value = children
            node.end_mark = start
            weight, height = done.weight, done.height
            if done.anchor is not None:
                anchors[done.anchor] = (node, weight, height)
            if not stack:
                document = node
                continue
            stack[-1].weight += weight
            stack[-1].height = max(stack[-1].height, height + 1)
            stack[-1].children.append(node)
            continue
        elif kind is yaml.StreamEndEvent:
            return document, None
        else:  # stream or document start or end
            if kind is yaml.DocumentEndEvent:
                anchors.clear()
            continue
        if kind is alias:
            total += weight
        if len(stack) + height > MAX_DEPTH:
            how = " with its aliases" if kind is alias else ""
            raise _TooBig(f"nested more than {MAX_DEPTH} levels deep{how}", start)
        if total > MAX_ALIASED:
            raise _TooBig(f"its aliases stand for more than {MAX_ALIASED:,} values", start)
        if stack:
            stack[-1].weight += weight
            stack[-1].height = max(stack[-1].height, height + 1)
            stack[-1].children.append(node)
        else:
            document = node


def _node(loader: Any, event: Any) -> yaml.Node:
    """Return the node an event starts, its tag resolved as PyYAML's composer resolves it."""
    tag = event.tag
    start: Any = event.start_mark
    if isinstance(event, yaml.ScalarEvent):
        if tag is None or tag == "!":
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        end: Any = event.end_mark
        return yaml.ScalarNode(tag, event.value, start, end, event.style)
    kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
    if tag is None or tag == "!":
        tag = loader.resolve(kind, None, event.implicit)
    return kind(tag, [], start, None, event.flow_style)


class _Builder:
    """Turn a composed node tree into Python data, recording positions and problems."""

    def __init__(self, doc: Document, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems

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
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        return self.mapping(node, path)

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
    loader = _Loader(text)
    try:
        first, second = _composed(loader)
    except _TooBig as exc:
        line, column = exc.mark.line + 1, exc.mark.column + 1
        return doc, [
            Problem(
                Location(file, line, column),
                "",
                exc.message,
                exc.hint,
            )
        ]
    except yaml.MarkedYAMLError as exc:
        return doc, [yamlerrors.explain(exc, text, file)]
    except yaml.YAMLError as exc:
        return doc, [Problem(Location(file, 1, 1), "", f"invalid YAML: {exc}", "fix the syntax")]
    finally:
        loader.dispose()
    if first is None:
        return doc, [
            Problem(
                Location(file, 1, 1),
                "",
                "the file is empty",
                "write the keys this file needs, or delete the file",
            )
        ]
    if second is not None:
        line, column = _position(second)
        problems.append(
            Problem(
                Location(file, line, column),
                "",
                "more than one YAML document (`---`) in this file",
                "keep one document per file",
            )
        )
    doc.data = _Builder(doc, problems).build(first, ())
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

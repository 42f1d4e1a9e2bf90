"""Write plain data as clean, commented YAML that reads back (YAML 1.2) to the same data.

Mappings are written in block style, small mappings and lists of plain values on one line
(``ports: {http: 80}``, ``depends_on: [db]``), text is quoted only where YAML 1.1 or 1.2 would
read it as something else (``"1000"``, ``"yes"``, ``"0o17"``) or where its characters need it.
A comment may follow any key; a header comment starts the file. Same data, same text.
"""

from __future__ import annotations

import io
import math
import re
from functools import lru_cache
from typing import Any

import yaml

from allmende.inventory.yamlpos import KeyPath

FLOW_WIDTH = 88

_EMITTER = yaml.emitter.Emitter(io.StringIO())
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"
# What the YAML 1.2 core schema (allmende's reader) types: numbers, booleans, null.
_TYPED_12 = re.compile(
    r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE"
    r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _typed(text: str) -> bool:
    """Return whether a plain scalar of this text would not read back as this text."""
    if _TYPED_12.match(text):
        return True
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag != _STR_TAG)


def scalar(value: Any, *, flow: bool = False) -> str:
    """Return one scalar as YAML text (for a flow collection when ``flow``)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    return _text(str(value), flow)


@lru_cache(maxsize=8192)
def _text(text: str, flow: bool) -> str:
    """Return text as a YAML scalar: plain where that reads back as the same text."""
    analysis = _EMITTER.analyze_scalar(text)
    plain = analysis.allow_flow_plain if flow else analysis.allow_block_plain
    if text and plain and not _typed(text) and text == text.strip():
        return text
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    if text.isprintable() and analysis.allow_single_quoted:
        return "'" + text.replace("'", "''") + "'"
    return _double(text)


def _double(text: str) -> str:
    """Return text double-quoted, every character YAML cannot hold raw escaped."""
    out = yaml.dump(
        text, Dumper=yaml.SafeDumper, default_style='"', allow_unicode=True, width=1 << 30
    )
    return out.removesuffix("\n...\n").rstrip("\n")


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _flow(value: Any) -> str | None:
    """Return a mapping or list of plain values on one line, or None if it would not read well."""
    if isinstance(value, dict):
        if not all(_is_scalar(v) for v in value.values()):
            return None
        parts = [f"{scalar(k, flow=True)}: {scalar(v, flow=True)}" for k, v in value.items()]
        text = "{" + ", ".join(parts) + "}"
    elif isinstance(value, list):
        if not all(_is_scalar(v) for v in value):
            return None
        text = "[" + ", ".join(scalar(v, flow=True) for v in value) + "]"
    else:
        return None
    return None if "\n" in text else text


class _Writer:
    def __init__(self, comments: dict[KeyPath, str]) -> None:
        self.comments = comments
        self.lines: list[str] = []

    def comment(self, path: KeyPath) -> str:
        text = self.comments.get(path)
        return f"  # {text}" if text else ""

    def value(self, prefix: str, value: Any, path: KeyPath, indent: int) -> None:
        """Write ``prefix`` (``key:`` or ``-``) followed by value, nested below when needed."""
        note = self.comment(path)
        if isinstance(value, dict | list) and not value:
            self.lines.append(f"{prefix} {'{}' if isinstance(value, dict) else '[]'}{note}")
            return
        if _is_scalar(value):
            if isinstance(value, str) and "\n" in value:
                self.block_text(prefix, value, indent, note)
                return
            self.lines.append(f"{prefix} {scalar(value)}{note}")
            return
        flow = _flow(value) if not self._commented_below(path) else None
        if flow is not None and len(prefix) + 1 + len(flow) + indent <= FLOW_WIDTH:
            self.lines.append(f"{prefix} {flow}{note}")
            return
        self.lines.append(f"{prefix}{note}")
        self.node(value, path, indent + 2)

    def _commented_below(self, path: KeyPath) -> bool:
        return any(len(p) > len(path) and p[: len(path)] == path for p in self.comments)

    def block_text(self, prefix: str, text: str, indent: int, note: str) -> None:
        """Write multi-line text as a literal block, or double-quoted where a block cannot
        hold it exactly (leading spaces, several trailing newlines, tabs, blank-ish lines)."""
        body, chomp = (text[:-1], "") if text.endswith("\n") else (text, "-")
        lines = body.split("\n")
        awkward = (
            body.endswith("\n")
            or next((line for line in lines if line), " ")[:1] in (" ", "\t")
            or not all(line.isprintable() for line in lines)
            or any(line and not line.strip() for line in lines)
        )
        if awkward:
            self.lines.append(f"{prefix} {_double(text)}{note}")
            return
        self.lines.append(f"{prefix} |{chomp}{note}")
        pad = " " * (indent + 2)
        self.lines.extend(pad + line if line else "" for line in lines)

    def node(self, value: Any, path: KeyPath, indent: int) -> None:
        pad = " " * indent
        if isinstance(value, dict):
            for key, item in value.items():
                self.value(f"{pad}{scalar(key)}:", item, (*path, key), indent)
            return
        for i, item in enumerate(value):
            here = (*path, i)
            if isinstance(item, dict) and item and self._inline_dict(item, here, indent):
                continue
            self.value(f"{pad}-", item, here, indent)

    def _inline_dict(self, item: dict[str, Any], path: KeyPath, indent: int) -> bool:
        """Write a mapping list item with its first key on the dash line (``- key: v``)."""
        flow = _flow(item) if not self._commented_below(path) else None
        if flow is not None and indent + 2 + len(flow) <= FLOW_WIDTH:
            self.lines.append(f"{' ' * indent}- {flow}{self.comment(path)}")
            return True
        start = len(self.lines)
        self.node(item, path, indent + 2)
        first = self.lines[start]
        self.lines[start] = " " * indent + "- " + first[indent + 2 :]
        return True


def dump(data: dict[str, Any], comments: dict[KeyPath, str] | None = None, header: str = "") -> str:
    """Given a mapping, optional comments by key path and a header, return the YAML text.

    The header's lines are written as ``#`` comments first; the text ends in one newline.
    """
    writer = _Writer(comments or {})
    writer.node(data, (), 0)
    head = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return head + "\n".join(writer.lines) + "\n"


def fragment(
    path: KeyPath, value: Any, indent: int, comments: dict[KeyPath, str] | None = None
) -> list[str]:
    """Return the lines that write ``value`` at ``path`` (a key, or a list index: ``- ...``)
    indented by ``indent``, as ``dump`` writes it there."""
    writer = _Writer(comments or {})
    last = path[-1]
    if isinstance(last, int):
        if not (isinstance(value, dict) and value and writer._inline_dict(value, path, indent)):
            writer.value(f"{' ' * indent}-", value, path, indent)
    else:
        writer.value(f"{' ' * indent}{scalar(last)}:", value, path, indent)
    return writer.lines

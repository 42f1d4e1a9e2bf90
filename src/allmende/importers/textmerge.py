"""Write the keys an import adds into an existing file's text, keeping everything else of it.

A hand-written file keeps its comments, order and spelling: each added key is written after
the last line of its parent mapping (at the indentation of its siblings), each added list item
after the last item of its list. Where that cannot be done safely (a flow mapping ``{...}``, a
list that grew in place), or the result would not read back as the merged data, the caller
writes the whole file again instead.
"""

from __future__ import annotations

from typing import Any

from allmende.importers.yamlout import fragment
from allmende.inventory.yamlpos import Document, KeyPath, parse


def _indentation(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], start: int, indent: int, sequence_at_indent: bool) -> int:
    """Given the 1-based line where a key or item starts and its indentation, return the
    0-based index after the last line of its block (blank and comment lines at the end
    excluded)."""
    end = start
    for index in range(start, len(lines)):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = _indentation(line)
        if depth > indent or (sequence_at_indent and depth == indent and stripped[0] == "-"):
            end = index + 1
        else:
            break
    return end


def _at(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _place(lines: list[str], document: Document, path: KeyPath) -> tuple[int, int] | None:
    """Return (insert after this many lines, indentation) for an added key or item, or None
    when its parent is no block collection."""
    parent = path[:-1]
    if isinstance(path[-1], int):
        items = [p for p in document.values if p[:-1] == parent and len(p) == len(path)]
        items = [p for p in items if isinstance(p[-1], int)]
        if not items:
            return None
        line, column = document.values[max(items, key=lambda p: int(p[-1]))]
        dash = lines[line - 1].rfind("-", 0, column - 1)
        if dash < 0 or lines[line - 1][:dash].strip():
            return None
        return _block_end(lines, line, dash, False), dash
    if path in document.keys:
        return None
    siblings = [p for p in document.keys if p[:-1] == parent and len(p) == len(path)]
    if not siblings:
        return (len(lines), 0) if not parent else None
    line, column = max(document.keys[p] for p in siblings)
    before = lines[line - 1][: column - 1].strip()
    if before not in ("", "-"):
        return None  # a flow mapping
    indent = column - 1
    return _block_end(lines, line, indent, True), indent


def _flow_line(lines: list[str], document: Document, path: KeyPath) -> tuple[int, int, str] | None:
    """Given a key path whose value is a one-line flow collection (``key: {a: 1}``), return
    (its 0-based line, the key's indentation, the comment after it), else None."""
    if not path or isinstance(path[-1], int) or path not in document.keys:
        return None
    line, column = document.keys[path]
    value_line, value_column = document.values.get(path, (0, 0))
    text = lines[line - 1]
    if value_line != line or text[value_column - 1 : value_column] not in ("{", "["):
        return None
    if text[: column - 1].strip():
        return None
    rest = text[value_column - 1 :]
    depth, end, quote = 0, -1, ""
    for i, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end < 0:
        return None
    tail = rest[end + 1 :].strip()
    if tail and not tail.startswith("#"):
        return None
    return line - 1, column - 1, tail


def insert(
    text: str,
    added: list[KeyPath],
    merged: dict[str, Any],
    comments: dict[KeyPath, str],
) -> str | None:
    """Given a file's text, the key paths an import added and the merged data, return the text
    with the additions written in, or None if that cannot be done safely.

    An addition to a one-line flow collection (``env: {A: 1}``) rewrites that line.
    """
    document, problems = parse(text.encode(), "existing")
    if problems:
        return None
    lines = text.splitlines()
    edits: dict[tuple[int, int], tuple[int, list[str]]] = {}
    for order, path in enumerate(added):
        place = _place(lines, document, path)
        if place is not None:
            after, indent = place
            new = fragment(path, _at(merged, path), indent, comments)
            edits[(after, order)] = (after, new)
            continue
        flow = _flow_line(lines, document, path[:-1])
        if flow is None:
            return None
        index, indent, tail = flow
        new = fragment(path[:-1], _at(merged, path[:-1]), indent, comments)
        if tail and "  # " not in new[0]:
            new[0] += f"  {tail}"
        edits[(index, -1)] = (index + 1, new)
    for (start, _), (end, new) in sorted(edits.items(), reverse=True):
        lines[start:end] = new
    result = "\n".join(lines) + "\n"
    check, problems = parse(result.encode(), "merged")
    if problems or check.data != merged:
        return None
    return result

"""Pages as plain Markdown for wikis (GitHub, Gitea; MediaWiki through pandoc).

Only portable constructs: ATX headings, paragraphs, pipe tables, lists, fenced code, links.
No HTML is written; text is escaped so names with ``_`` or ``*`` stay literal, and raw HTML in
user-written ``docs`` is escaped outside code. Links point at the ``.md`` pages next to each
other; anchors are dropped, since every wiki makes its own.
"""

from __future__ import annotations

import re

from allmende.render.docs.blocks import (
    NAV,
    Block,
    Bullets,
    CodeBlock,
    Facts,
    Figure,
    Line,
    Link,
    Page,
    Para,
    Prose,
    Stats,
    Steps,
    Table,
    Text,
)
from allmende.render.docs.html import root_of

SUFFIX = ".md"
_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_LINE_START = re.compile(r"^([#+=>-]|\d+[.)])")
_UNSAFE = r"(?:javascript|vbscript|data|file):"
_UNSAFE_LINK = re.compile(
    r"\]\(\s*(?:&lt;)?\s*" + _UNSAFE + r"(?:[^()\s]|\([^()]*\))*\)", re.IGNORECASE
)
_UNSAFE_DEFINITION = re.compile(r"^( {0,3}\[[^\]]+\]:\s*)" + _UNSAFE + r"\S*", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def escape(text: str) -> str:
    """Return text with the characters Markdown would interpret backslash-escaped."""
    text = _SPECIAL.sub(r"\\\1", text)
    text = _ENTITY.sub("&amp;", text)
    return _LINE_START.sub(r"\\\1", text)


def code(text: str, in_table: bool = False) -> str:
    """Return text as an inline code span, fenced by enough backticks."""
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def href(here: str, link: Link) -> str:
    """Return where a link points from the Markdown page ``here``."""
    if link.url is not None:
        target = link.url
    elif link.page is None or link.page == here:
        return ""
    else:
        target = f"{root_of(here)}{link.page}{SUFFIX}"
    return f"<{target}>" if re.search(r"[\s()<>]", target) else target


def inline(here: str, value: Line, in_table: bool = False) -> str:
    """Return a Line as Markdown."""
    out: list[str] = []
    for part in value:
        if isinstance(part, Link):
            shown = code(part.text, in_table) if part.code else escape(part.text)
            target = href(here, part)
            out.append(f"[{shown}]({target})" if target else shown)
        elif isinstance(part, Text):
            text = escape(part.text)
            out.append(f"**{text}**" if part.strong and text.strip() else text)
        else:
            out.append(code(part.text, in_table))
    return "".join(out).replace("\n", " ")


def fenced(text: str, lang: str = "", indent: str = "") -> str:
    """Return a fenced code block, its fence longer than any fence inside."""
    runs = [len(m) for m in re.findall(r"`{3,}", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    body = "\n".join(indent + row if row else row for row in text.rstrip("\n").split("\n"))
    return f"{indent}{fence}{lang}\n{body}\n{indent}{fence}"


def _defused(text: str) -> str:
    """Return prose with raw HTML escaped and links to script-running schemes neutralised."""
    text = text.replace("<", "&lt;")
    text = _UNSAFE_LINK.sub("](#unsafe-link-removed)", text)
    return _UNSAFE_DEFINITION.sub(r"\1#unsafe-link-removed", text)


def user_markdown(text: str) -> str:
    """Return user-written Markdown with raw HTML escaped and headings moved two levels down.

    Fenced code blocks and inline code are kept verbatim.
    """
    out: list[str] = []
    fence = ""
    for row in text.strip("\n").split("\n"):
        match = _FENCE.match(row)
        if fence:
            out.append(row)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            continue
        if match:
            fence = match.group(1)
            out.append(row)
            continue
        if re.match(r"^ {0,3}#{1,6}(\s|$)", row):
            row = re.sub(r"^( {0,3})(#{1,4})", r"\1\2##", row, count=1)
        parts = re.split(r"(`+[^`]*`+)", row)
        out.append("".join(p if p.startswith("`") else _defused(p) for p in parts))
    return "\n".join(out)


def _table(here: str, head: tuple[str, ...], rows: tuple[tuple[Line, ...], ...]) -> str:
    lines = [
        "| " + " | ".join(escape(h) for h in head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        cells = [inline(here, cell, in_table=True) or " " for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _steps(here: str, item: Steps) -> str:
    parts = []
    for number, step in enumerate(item.items, 1):
        marker = f"{number}. "
        text = f"{marker}{inline(here, step.text)}"
        if step.code:
            text += "\n\n" + fenced(step.code, "sh", " " * len(marker))
        parts.append(text)
    return "\n\n".join(parts)


def block(here: str, item: Block, depth: int = 2) -> str:
    """Return one block as Markdown (without surrounding blank lines)."""
    if isinstance(item, Para):
        text = inline(here, item.text)
        return f"> {text}" if item.tone else text
    if isinstance(item, Facts):
        return "\n".join(
            f"- **{escape(label)}:** {inline(here, value)}" for label, value in item.rows
        )
    if isinstance(item, Table):
        if not item.rows:
            return f"*{escape(item.empty)}*" if item.empty else ""
        return _table(here, item.head, item.rows)
    if isinstance(item, Bullets):
        return "\n".join(f"- {inline(here, i)}" for i in item.items)
    if isinstance(item, Steps):
        return _steps(here, item)
    if isinstance(item, CodeBlock):
        return fenced(item.text, item.lang)
    if isinstance(item, Prose):
        return user_markdown(item.markdown)
    if isinstance(item, Figure):
        if item.src:
            return f"![{escape(item.alt)}]({root_of(here)}{item.src})"
        return f"*{escape(item.missing)}*"
    if isinstance(item, Stats):
        return " · ".join(
            f"**{s.count}** [{escape(s.label)}]({href(here, s.link)})" for s in item.items
        )
    inner = [block(here, b, depth + 1) for b in item.blocks]
    title = f"{'#' * (depth + 1)} {escape(item.title)}"
    return "\n\n".join([title, *(i for i in inner if i)])


def render(page: Page, collective: str) -> str:
    """Given a page and the collective's name, return the page as a Markdown document."""
    here = page.key
    parts = [f"# {escape(page.title)}", inline(here, page.lead)]
    for section in page.sections:
        parts.append(f"## {escape(section.title)}")
        parts.extend(text for text in (block(here, b) for b in section.blocks) if text)
    links = " · ".join(
        f"[{escape(label)}]({href(here, Link(label, page=key))})"
        for _, label, key, anchor in NAV
        if not anchor
    )
    parts.append("---")
    parts.append(
        f"Generated by allmende from the inventory of {escape(collective)}: change the "
        f"YAML files, not these pages. {links}"
    )
    return "\n\n".join(p for p in parts if p) + "\n"

"""Pages as HTML: Jinja templates (autoescaped) around inlines rendered here.

Links are relative to the page they appear on (``../services/wiki.html``), so the site works
from any directory, over HTTP and from ``file://``. The free-text ``docs`` of a service are
Markdown rendered by markdown-it-py with raw HTML escaped and headings moved below the page's.
"""

from __future__ import annotations

from functools import cache

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from allmende.render.docs.blocks import NAV, Line, Link, Page, Text

SUFFIX = ".html"


def root_of(key: str) -> str:
    """Return the relative path from the page ``key`` to the site root ("" or "../")."""
    return "../" * key.count("/")


def href(here: str, link: Link, suffix: str = SUFFIX) -> str:
    """Return the address of ``link`` as written on the page ``here``."""
    if link.url is not None:
        return link.url
    fragment = f"#{link.anchor}" if link.anchor else ""
    if link.page is None or (link.page == here and fragment):
        return fragment or "#"
    return f"{root_of(here)}{link.page}{suffix}{fragment}"


def inline(here: str, value: Line) -> Markup:
    """Return a Line as HTML, every text escaped."""
    out: list[str] = []
    for part in value:
        text = escape(part.text)
        if isinstance(part, Link):
            shown = Markup("<code>{}</code>").format(text) if part.code else text
            out.append(Markup('<a href="{}">{}</a>').format(href(here, part), shown))
        elif isinstance(part, Text):
            out.append(Markup("<strong>{}</strong>").format(text) if part.strong else text)
        else:
            out.append(Markup("<code>{}</code>").format(text))
    return Markup("").join(out)


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


def prose(text: str) -> Markup:
    """Return user-written Markdown as HTML; raw HTML in it is shown as text, never run.

    Headings move two levels down (``#`` becomes ``h3``) to sit below the page's sections.
    """
    md = _markdown()
    tokens = md.parse(text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    return Markup(md.renderer.render(tokens, md.options, {}))


@cache
def environment() -> jinja2.Environment:
    """Return the Jinja environment of the site's templates (autoescape on, strict)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("allmende.render.docs", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["prose"] = prose
    return env


def render(page: Page, collective: str) -> str:
    """Given a page and the collective's name, return the page as an HTML document."""
    here = page.key
    nav = [
        {
            "label": label,
            "href": href(here, Link(label, page=key, anchor=anchor)),
            "current": entry == page.nav,
        }
        for entry, label, key, anchor in NAV
    ]
    template = environment().get_template("page.html")
    return template.render(
        page=page,
        collective=collective,
        root=root_of(here),
        nav=nav,
        markdown=f"{root_of(here)}markdown/{here}.md",
        inline=lambda value: inline(here, value),
        link=lambda value: href(here, value),
    )

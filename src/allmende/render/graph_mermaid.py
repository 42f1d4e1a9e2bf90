"""The graph of a collective as a Mermaid flowchart (``allmende graph --format mermaid``), for
READMEs and wikis that draw Mermaid."""

from __future__ import annotations

import json
import re

from allmende.render.graph import (
    KINDS,
    LINES,
    Drawing,
    Graph,
    drawing,
    kind_of,
    text_of,
    walk,
)

# --------------------------------------------------------------------------- Mermaid

_LEGEND_ENDS = {"site_served": "site", "edge_http": "edge", "edge_tcp": "edge"}


def _m(text: str) -> str:
    """Escape text for a quoted Mermaid label (entity codes: no raw quotes or markup)."""
    text = " ".join(text.split()).replace("#", "#35;").replace("&", "#38;")
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_ids(graph: Graph) -> dict[str, str]:
    """Return node id -> a Mermaid-safe id (letters, digits, _), unique and stable."""
    ids: dict[str, str] = {}
    for node in graph.nodes:
        base = re.sub(r"[^A-Za-z0-9]+", "_", node.id).strip("_")
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}_{n}", n + 1
        ids[node.id] = candidate
    return ids


def _mermaid_node(node_id: str, kind: str, title: str, detail: str = "") -> str:
    opening = KINDS[kind][4]
    text = f"<b>{_m(title)}</b>" + (f"<br><small>{_m(detail)}</small>" if detail else "")
    return f"{node_id}{opening}{text}{opening[::-1].translate(str.maketrans('[{(', ']})'))}"


def _link_style(style: str, indexes: list[int]) -> str:
    colour, width = LINES[style][0], "3px" if style == "db_hosted" else "1.5px"
    numbers = ",".join(map(str, indexes))
    return f"  linkStyle {numbers} stroke:{colour},stroke-width:{width},color:{colour}"


def _mermaid_legend(graph: Graph, plan: Drawing, first: int) -> list[str]:
    """Return a legend subgraph, one sample link per line style between sample nodes of the
    kinds it joins (its links numbered from ``first``), with its styles and classes."""
    lines, styles = ['  subgraph legend["<b>legend</b>"]'], []
    classes: dict[str, list[str]] = {}
    for n, style in enumerate(plan.styles):
        source = _LEGEND_ENDS.get(style, "service")
        target = "service" if style in _LEGEND_ENDS or style == "collapsed" else "database"
        ends = []
        for end, kind in (("a", source), ("b", target)):
            word = (graph.proxy or "proxy") if kind == "edge" else kind
            ends.append(_mermaid_node(f"legend_{n}{end}", kind, word))
            classes.setdefault(kind, []).append(f"legend_{n}{end}")
        lines.append(f'    {ends[0]} {LINES[style][2]}|"{_m(LINES[style][3])}"| {ends[1]}')
        styles.append(_link_style(style, [first + n]))
    classes_ = [f"  class {','.join(v)} {k}" for k, v in sorted(classes.items())]
    return [*lines, "  end", *styles, *classes_] if plan.styles else []


def to_mermaid(graph: Graph) -> str:
    """Return the graph as a Mermaid ``flowchart LR``: the collective as title, hosts as
    subgraphs, classDefs for the node colours, linkStyles for the edge colours, a legend."""
    plan = drawing(graph)
    ids = _mermaid_ids(graph)
    title = f"{graph.name}: {graph.description}" if graph.description else graph.name
    lines = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", "---", "flowchart LR"]
    lines += [f"  classDef {k} fill:{v[0]},stroke:{v[1]},color:#1b2631" for k, v in KINDS.items()]
    for event, depth, node in walk(plan):
        pad = "  " * depth
        if event == "open":
            title = f"<b>{_m(node.label)}</b>" + (f" · {_m(node.detail)}" if node.detail else "")
            lines.append(f'{pad}subgraph cluster_{ids[node.id]}["{title}"]')
        elif event == "node":
            shown = _mermaid_node(ids[node.id], kind_of(node, graph), *text_of(node, graph))
            lines.append(pad + shown)
        else:
            lines.append(f"{pad}end")
    styles: dict[str, list[int]] = {}
    for index, line in enumerate(plan.lines):
        text = f'|"{_m(line.label)}"|' if line.label else ""
        target = f"cluster_{ids[line.box]}" if line.box else ids[line.target]
        lines.append(f"  {ids[line.source]} {LINES[line.style][2]}{text} {target}")
        styles.setdefault(line.style, []).append(index)
    lines += [_link_style(style, indexes) for style, indexes in sorted(styles.items())]
    classes: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.kind != "host" or node.id in plan.shown:
            classes.setdefault(kind_of(node, graph), []).append(ids[node.id])
    lines += [f"  class {','.join(v)} {k}" for k, v in sorted(classes.items())]
    lines += _mermaid_legend(graph, plan, len(plan.lines))
    return "\n".join(lines) + "\n"

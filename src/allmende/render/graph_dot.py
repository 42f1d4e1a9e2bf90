"""The graph of a collective in Graphviz DOT (``allmende graph --format dot``; the SVG and the
docs' picture are drawn from it)."""

from __future__ import annotations

import html

from allmende.render.graph import (
    FONT,
    KINDS,
    LINES,
    Drawing,
    DrawnLine,
    Graph,
    Node,
    drawing,
    kind_of,
    text_of,
    walk,
)

# --------------------------------------------------------------------------- DOT


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _h(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False)


def _dot_label(title: str, detail: str, small: int = 9, left: bool = False) -> str:
    """Return an HTML-like label: the title bold, the detail small and grey below it."""
    br = '<br align="left"/>' if left else "<br/>"
    text = f"<b>{_h(title)}</b>"
    if detail:
        text += f'{br}<font point-size="{small}" color="#555555">{_h(detail)}</font>'
    return f"<{text}{br if left else ''}>"


def _dot_open(box: Node, depth: int) -> list[str]:
    pad = "  " * depth
    shade = ("#f4f6f7", "#e8ecee", "#dde2e5")[min(depth - 1, 2)]
    style = f'style="rounded,filled"; fillcolor="{shade}"; color="{KINDS["host"][1]}"'
    return [
        f"{pad}subgraph {_q('cluster_' + box.id)} {{",
        f"{pad}  label={_dot_label(box.label, box.detail, 10, left=True)};",
        f"{pad}  {style}; labeljust=l; margin=12;",
    ]


def _dot_node(node: Node, graph: Graph, depth: int) -> str:
    fill, border, shape, style, _, _ = KINDS[kind_of(node, graph)]
    return (
        f"{'  ' * depth}{_q(node.id)} [label={_dot_label(*text_of(node, graph))}, shape={shape}, "
        f'style="{style}", fillcolor="{fill}", color="{border}"];'
    )


_STROKES = {"collapsed": "╍╍╍▶", "db_hosted": "━━━━"}


def _dot_title(graph: Graph, plan: Drawing) -> str:
    """Return the graph's label: the collective's name and description, then the legend."""
    title = f'<font point-size="22"><b>{_h(graph.name)}</b></font><br align="left"/>'
    if graph.description:
        title += f'<font point-size="12" color="#555555">{_h(graph.description)}</font>'
    cells = []
    for n in range(max(len(plan.kinds), len(plan.styles))):
        row = '<td colspan="2"></td>'
        if n < len(plan.kinds):
            fill, border, *_, words = KINDS[plan.kinds[n]]
            row = (
                f'<td bgcolor="{fill}" color="{border}" border="1" width="26"></td>'
                f'<td align="left">{_h(words)}</td>'
            )
        if n < len(plan.styles):
            colour, *_, words = LINES[plan.styles[n]]
            stroke = _STROKES.get(plan.styles[n], "━━━▶")
            row += (
                f'<td width="20"></td><td><font color="{colour}">{stroke}</font></td>'
                f'<td align="left">{_h(words)}</td>'
            )
        cells.append(f"<tr>{row}</tr>")
    legend = (
        '<td width="40"></td><td valign="top"><font point-size="10"><table border="0" '
        f'cellspacing="2" cellpadding="1">{"".join(cells)}</table></font></td>'
    )
    return (
        '<<table border="0" cellspacing="0" cellpadding="4"><tr><td align="left" valign="top" '
        f'balign="left">{title}</td>{legend if cells else ""}</tr></table>>'
    )


def _dot_ranks(graph: Graph, plan: Drawing) -> list[str]:
    """Return rank constraints that make columns: sites, proxies, services, databases.

    An invisible edge from the first site to each proxy puts the proxies between the sites
    and the services, where the traffic passes.
    """
    columns: list[list[str]] = [[], [], [], []]
    for node in graph.nodes:
        if node.kind != "host" or node.id in plan.shown:
            column = {"site": 0, "database": 3}.get(node.kind, 2)
            columns[1 if node.id in graph.edge_hosts else column].append(_q(node.id))
    lines = [f"  {{rank=same; {'; '.join(c)};}}" for c in columns if c]
    if columns[0] and columns[1]:
        lines += [f"  {columns[0][0]} -> {p} [style=invis];" for p in columns[1]]
    return lines


def _dot_edge(line: DrawnLine) -> str:
    colour, extra = LINES[line.style][:2]
    attrs = [f'color="{colour}"', extra]
    if line.label:  # a labelled edge within one rank upsets Graphviz 2.43: use xlabel
        key = "xlabel" if line.style == "collapsed" else "label"
        attrs.append(f'{key}={_q(line.label)}, fontcolor="{colour}"')
    if line.box:
        attrs.append(f"lhead={_q('cluster_' + line.box)}, penwidth=2.4")
    return f"  {_q(line.source)} -> {_q(line.target)} [{', '.join(a for a in attrs if a)}];"


def to_dot(graph: Graph) -> str:
    """Return the graph as Graphviz DOT: sites on the left, then the proxies, hosts as boxes
    around their services, databases on the right; the collective's name and a legend on
    top. Equal graphs give equal text."""
    plan = drawing(graph)
    lines = [
        f"digraph {_q(graph.name)} {{",
        f'  graph [rankdir=LR, newrank=true, compound=true, fontname="{FONT}", nodesep=0.25, '
        'ranksep=0.9, pad=0.3, bgcolor="white"];',
        f'  node [fontname="{FONT}", fontsize=11, penwidth=1.2, margin="0.12,0.05"];',
        f'  edge [fontname="{FONT}", fontsize=9, penwidth=1.5, arrowsize=0.7];',
    ]
    for event, depth, node in walk(plan):
        if event == "open":
            lines += _dot_open(node, depth)
        else:
            lines.append(_dot_node(node, graph, depth) if event == "node" else "  " * depth + "}")
    lines += _dot_ranks(graph, plan)
    lines += [_dot_edge(x) for x in plan.lines]
    lines += [f"  label={_dot_title(graph, plan)}; labelloc=t; labeljust=l;", "}"]
    return "\n".join(lines) + "\n"

"""What ``docker ps``/``podman ps --format json`` answer, read into each service's components.

Shared by the engines whose containers carry allmende's labels: compose (``org.allmende.*``)
and Kubernetes played by podman (the pod's ``app.kubernetes.io/*`` labels).
"""

from __future__ import annotations

import json
import re

from allmende.engines.base import Command, Running

#: The labels that name a container's service and component: compose, then Kubernetes.
COMPOSE_LABELS = ("org.allmende.service", "org.allmende.component")
KUBERNETES_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/name")


def ps(runtime: str, label: str) -> Command:
    """Return the command listing every container (running or not) that carries ``label``
    (``key`` or ``key=value``), as JSON."""
    return (runtime, "ps", "-a", "--filter", f"label={label}", "--format", "json")


def has_image(runtime: str, image: str) -> Command:
    """Return the probe that exits 0 when ``image`` is in the runtime's local store."""
    if runtime == "podman":
        return ("podman", "image", "exists", image)
    return ("docker", "image", "inspect", "--format", "{{.Id}}", image)


def exec_in(
    runtime: str, running: Running, component: str, user: str | None = None
) -> Command | None:
    """Return ``<runtime> exec -i [-u user] <container>`` for a component's container, or None
    when the engine shows none."""
    container = running.containers.get(component)
    if not container:
        return None
    return (runtime, "exec", "-i", *(("-u", user) if user else ()), container)


def parse_ps(output: bytes, keys: tuple[str, str] = COMPOSE_LABELS) -> dict[str, Running]:
    """Parse ``docker ps``/``podman ps --format json`` (a JSON array, or one object per line)
    into each service's components, by the labels allmende renders (``keys``: the labels of
    the service and of the component)."""
    text = output.decode(errors="replace").strip()
    if not text:
        return {}
    try:
        loaded = json.loads(text)
        rows = loaded if isinstance(loaded, list) else [loaded]
    except ValueError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    states: dict[str, dict[str, str]] = {}
    health: dict[str, dict[str, str]] = {}
    names: dict[str, dict[str, str]] = {}
    published: dict[str, dict[str, dict[int, int]]] = {}
    for row in rows:
        labels = row.get("Labels") or {}
        if isinstance(labels, str):  # docker: "a=b,c=d"
            labels = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
        service = labels.get(keys[0])
        component = labels.get(keys[1])
        if not service or not component:
            continue
        state = str(row.get("State") or "").lower()
        status = str(row.get("Status") or "")
        raw_names = row.get("Names") or []
        name = raw_names[0] if isinstance(raw_names, list) and raw_names else str(raw_names)
        # With several containers of one component, a running one wins.
        if states.get(service, {}).get(component) == "running" and state != "running":
            continue
        states.setdefault(service, {})[component] = state
        names.setdefault(service, {})[component] = name
        published.setdefault(service, {})[component] = ports_of(row.get("Ports"))
        for word in ("unhealthy", "healthy", "starting"):
            if f"({word})" in status or f"(health: {word})" in status:
                health.setdefault(service, {})[component] = word
                break
    return {
        s: Running(states[s], health.get(s, {}), names.get(s, {}), ports=published.get(s, {}))
        for s in sorted(states)
    }


def ports_of(value: object) -> dict[int, int]:
    """Return the published ports of one container as ``ps --format json`` lists them (podman:
    a list of objects, docker: ``127.0.0.1:41021->80/tcp, ...``): port inside -> on the host."""
    found: dict[int, int] = {}
    if isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict) and entry.get("host_port"):
                inside, outside = int(entry["container_port"]), int(entry["host_port"])
                for offset in range(int(entry.get("range") or 1)):
                    found[inside + offset] = outside + offset
    elif isinstance(value, str):
        for match in re.finditer(r":(\d+)->(\d+)/", value):
            found[int(match.group(2))] = int(match.group(1))
    return found

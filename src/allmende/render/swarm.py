"""Swarm stacks: ``<host>/srv/<service>/stack.yaml`` for every service on a swarm host.

The host is a Swarm manager; ``docker stack deploy -c stack.yaml <service>`` deploys the file.
A stack file is a Compose file in the version 3 format that ``docker stack deploy`` reads, so
it is built from the same blocks as the Compose projects (render/compose.py: image, command,
environment, volumes, health check, shared database networks, labels, ``x-compose`` of the
components and of the service), with what differs in a swarm:

- ``version: "3.8"`` and no ``name`` (the stack is named when deployed), no ``restart`` and no
  ``depends_on``: Swarm ignores them; it restarts tasks by ``deploy.restart_policy`` and uses
  the health check to decide when a new task is up.
- ``deploy``: ``replicas``; placement on the node labelled ``allmende.host == <host>`` (set
  once per node with ``docker node update --label-add allmende.host=<host>``); rolling
  ``update_config`` one task at a time, failing back to the previous version; the same for
  ``rollback_config``; ``restart_policy`` after 5 s, on the component's ``restart``
  (``unless-stopped`` and ``always`` restart on any exit, ``on-failure`` on failures, ``no``
  never). Updates start the new task before
  stopping the old (``start-first``) except for a single task that holds volumes: two
  processes on one database directory corrupt it, so that one is replaced ``stop-first``.
- Secrets are Swarm secrets created at apply time under ``<service>_<flat name>``, declared
  ``external: true`` and mounted at ``/run/secrets/<flat name>`` (the path ``<ENV>_FILE``
  names, as in Compose) or at the use's ``path``, with its ``uid``, ``gid`` and ``mode``;
  secrets ``as: env`` come from the component's env file ``./secrets/<component>.env``, which
  ``docker stack deploy`` reads where it runs.
- Published ports use the long syntax in ingress mode: Swarm cannot bind a published port to
  one address, the routing mesh publishes it on every node of the swarm. So they are
  published only when the host says ``bind: 0.0.0.0`` (or ``::``); else none is (the check
  ``ports.bind`` says so).
- The shared database networks are overlay networks.
- Carried configuration files (``files``) are Swarm configs, which the cluster hands to every
  node a task runs on, named by a digest of what they hold (a config cannot change: a changed
  file is a new config, rolled out by the next deploy), read from ``./files/`` beside the stack.
"""

from __future__ import annotations

from typing import Any

from allmende.inventory import derive
from allmende.inventory.hostpaths import project_file
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component
from allmende.inventory.secretnames import MOUNT_DIR, env_file, env_secrets, file_uses, flat_name
from allmende.inventory.xcompose import escape
from allmende.render import compose
from allmende.render.carried import carried_mounts, swarm_configs
from allmende.render.compose import Context, Networks
from allmende.render.compose_merge import extension, merge, merge_service
from allmende.render.output import Rendered, comments, service_sources, text, yaml_text

VERSION = "3.8"
NODE_LABEL = "allmende.host"
OVERLAY = {"driver": "overlay"}


#: The engine whose services this target renders.
ENGINE = "swarm"


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return ``<host>/srv/<service>/stack.yaml`` for every service on a
    host with ``engine: swarm`` that has at least one component with an image."""
    files: dict[str, Rendered] = {}
    for context in compose.contexts(inventory, "swarm"):
        if not compose.image_components(context.service):
            continue
        networks = compose.shared_networks(context)
        body = comments(notes(context, networks)) + yaml_text(stack(context, networks))
        sources = service_sources(inventory, context.name, *networks.joined.values())
        path = f"{context.service.host}{project_file(context.name, 'swarm')}"
        files[path] = text(body, sources, collective=inventory.collective.name)
        files |= compose.carried_rendered(context, sources)
    return dict(sorted(files.items()))


def notes(context: Context, networks: Networks) -> list[str]:
    """Given a service, return the paragraphs that explain its stack file to a reader."""
    lines = [
        f"Deploy with: docker stack deploy -c stack.yaml {context.name}",
        f"Tasks run on the node labelled {NODE_LABEL}={context.service.host}.",
    ]
    if not any(c.publish for _, c in compose.image_components(context.service)):
        pass
    elif context.host.bind in derive.EVERY_INTERFACE:
        lines.append("Published ports go through the routing mesh: every node listens on them.")
    else:
        lines.append(
            "No port is published: the routing mesh would listen on every node, and the host "
            "does not say `bind: 0.0.0.0`."
        )
    if compose.secret_names(context.service):
        lines.append(
            f"Secrets are Swarm secrets named {context.name}_<name>, created when applied; the "
            "inventory and this file only name them."
        )
    return [*lines, *compose.network_notes(context, networks)]


def stack(context: Context, networks: Networks) -> dict[str, Any]:
    """Given a service, return its stack file as plain data."""
    services = {
        name: merge_service(escape(stack_service(context, networks, name, c)), extension(c))
        for name, c in compose.image_components(context.service)
    }
    result: dict[str, Any] = {"version": VERSION, "services": services}
    declared = compose.network_declarations(networks, OVERLAY)
    if declared:
        result["networks"] = declared
    secrets = {
        secret_name(context.name, flat): {"external": True}
        for flat in compose.secret_names(context.service).values()
    }
    if secrets:
        result["secrets"] = dict(sorted(secrets.items()))
    configs = {
        config: {"file": file, "name": config}
        for _, c in compose.image_components(context.service)
        for config, (file, _, _) in swarm_configs(context.inventory, context.name, c).items()
    }
    if configs:
        result["configs"] = dict(sorted(configs.items()))
    return merge(result, extension(context.service))


def secret_name(service: str, flat: str) -> str:
    """Given a service and a flat secret name, return the Swarm secret's name."""
    return f"{service}_{flat}"


def stack_secrets(service: str, component: Component) -> list[dict[str, Any]]:
    """Return a component's Swarm secrets: each mounted at its path (the target), with the
    use's owner and mode where it gives them."""
    secrets: dict[str, dict[str, Any]] = {}
    for _, use, path in file_uses(component):
        flat = flat_name(use.secret)
        entry: dict[str, Any] = {"source": secret_name(service, flat), "target": flat}
        if path != f"{MOUNT_DIR}/{flat}":
            entry["target"] = path
        if use.uid is not None:
            entry["uid"] = str(use.uid)
        if use.gid is not None:
            entry["gid"] = str(use.gid)
        if use.mode is not None:
            entry["mode"] = use.mode
        secrets[entry["target"]] = entry
    return [secrets[target] for target in sorted(secrets)]


def stack_service(
    context: Context, networks: Networks, name: str, component: Component
) -> dict[str, Any]:
    """Given one component, return its stack service (before escaping and ``x-compose``)."""
    entry = compose.core(component)
    secrets = stack_secrets(context.name, component)
    if secrets:
        entry["secrets"] = secrets
    if env_secrets(component):
        entry["env_file"] = [f"./{env_file(name)}"]
    published = [
        {
            "target": component.ports[port],
            "published": number.port,
            "protocol": "tcp",
            "mode": "ingress",
        }
        for port, number in sorted(component.publish.items())
        if port in component.ports
        and derive.published_ip(context.host, number) in derive.EVERY_INTERFACE
    ]
    if published:
        entry["ports"] = published
    compose.add_common(entry, context, networks, name, component)
    bound = set(carried_mounts(context.name, component))
    if bound:  # configs instead: a bind mount needs the file on whichever node runs the task
        entry["volumes"] = [v for v in entry["volumes"] if v not in bound]
        if not entry["volumes"]:
            del entry["volumes"]
    configs = swarm_configs(context.inventory, context.name, component)
    if configs:
        entry["configs"] = [
            {"source": config, "target": inside, "mode": mode}
            for config, (_, inside, mode) in configs.items()
        ]
    entry["deploy"] = deploy(context, name, component)
    entry["labels"] = compose.labels(context, name)
    return entry


#: Swarm's restart condition for each restart policy.
RESTART = {"unless-stopped": "any", "always": "any", "on-failure": "on-failure", "no": "none"}


def deploy(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component, return its ``deploy``: replicas, placement, rolling updates and
    rollbacks, restart policy, and the service labels."""
    stateful = bool(component.volumes) and component.replicas <= 1
    order = "stop-first" if stateful else "start-first"
    return {
        "replicas": component.replicas,
        "placement": {"constraints": [f"node.labels.{NODE_LABEL} == {context.service.host}"]},
        "update_config": {
            "parallelism": 1,
            "delay": "10s",
            "order": order,
            "failure_action": "rollback",
            "monitor": "30s",
        },
        "rollback_config": {"parallelism": 1, "order": order, "failure_action": "pause"},
        "restart_policy": {"condition": RESTART[component.restart], "delay": "5s"},
        "labels": compose.labels(context, name),
    }

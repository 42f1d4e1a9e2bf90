"""Kubernetes manifests: ``kubernetes/<service>.yaml`` for every service on a kubernetes host.

One multi-document file per service, for ``kubectl apply -f``, in this order: the Namespace
(named after the service), the PersistentVolumeClaims its components share, then per component
(by name) a ConfigMap of its ``env``, a ClusterIP Service of its ports and its workload, and
last an Ingress per route. The decisions, each for a reason:

- A component whose volumes are its own and that runs one replica holds state: it is a
  StatefulSet whose ``volumeClaimTemplates`` claim ReadWriteOnce storage. A volume used by two
  components, or by a component with more replicas, is shared (as the same directory is under
  Compose): it is one ReadWriteMany PersistentVolumeClaim, named after the volume, that every
  pod mounts; a component with only shared volumes or none is a Deployment. Claims use the
  host's ``storage_class`` (the cluster's default when it has none) and request 1Gi, which
  NFS-style classes ignore; a volume's ``host`` path has no meaning here.
- ``env`` is a ConfigMap read with ``envFrom``; the pod template carries a hash of it so that
  a change rolls the pods. Secrets are referenced by name only (the Secret ``<flat name>``, key
  ``value``, created at apply time): ``as: env`` through ``secretKeyRef``, ``as: file`` and
  ``as: path`` as a read-only file (a secret volume with ``subPath``) at the use's path, with
  its mode; a use's ``gid`` becomes the pod's ``fsGroup`` (its ``uid`` has no equivalent).
- Carried configuration files (``files``) are the ConfigMap ``<component>-files``, each file
  mounted read-only at its path (``subPath``); a hash of them in the pod template rolls the
  pods when one changes.
- ``command`` becomes the container's ``args``: like Compose's ``command`` it replaces the
  image's default command and keeps its entrypoint (``$`` is written ``$$`` so that Kubernetes
  does not expand it).
- Ports named in ``publish`` get a ``hostPort`` (and ``hostIP``, by the same rule as Compose:
  the host's address when it is an IP, 127.0.0.1 without an address): that is what publishing
  on the host's address means for a pod; the Service and the Ingress serve the rest.
- Ingress: ``tls: terminate`` gets a TLS block whose certificate cert-manager obtains
  (``cert-manager.io/cluster-issuer: letsencrypt``), one Secret ``<domain>-tls`` per domain;
  ``passthrough`` gets ingress-nginx's ``ssl-passthrough`` annotation and no TLS block;
  ``none`` no TLS at all. ``cache`` is the edge's business and is not rendered.
- Health checks become readiness and liveness probes (``httpGet``, ``tcpSocket``, ``exec``).
- Labels: ``app.kubernetes.io/name`` (the component), ``part-of`` (the service),
  ``managed-by: allmende``; images are pulled ``IfNotPresent``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import Counter
from typing import Any

from allmende.inventory import derive
from allmende.inventory.carried import executable, under
from allmende.inventory.derive import split_target
from allmende.inventory.images import qualified
from allmende.inventory.inventory import Inventory
from allmende.inventory.models import Component, Route, seconds
from allmende.inventory.secretnames import env_secrets, file_uses, file_variables, flat_name
from allmende.render import compose
from allmende.render.carried import carried_digest
from allmende.render.compose import Context
from allmende.render.output import Rendered, comments, service_sources, text, yaml_text

ISSUER = "letsencrypt"
CLAIM_SIZE = "1Gi"
PASSTHROUGH = "nginx.ingress.kubernetes.io/ssl-passthrough"
NO_REDIRECT = "nginx.ingress.kubernetes.io/ssl-redirect"
ENV_HASH = "allmende/env-sha256"
FILES_HASH = "allmende/files-sha256"
#: The pod volume that holds a component's carried files (its ConfigMap ``<component>-files``).
FILES_VOLUME = "carried-files"
_IANA_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")

Document = tuple[tuple[str, ...], dict[str, Any]]


#: The engine whose services this target renders.
ENGINE = "kubernetes"


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return ``kubernetes/<service>.yaml`` for every service on a host
    with ``engine: kubernetes`` that has at least one component with an image."""
    files: dict[str, Rendered] = {}
    for context in compose.contexts(inventory, "kubernetes"):
        if not compose.image_components(context.service):
            continue
        body = "---\n".join(comments(lines) + yaml_text(doc) for lines, doc in documents(context))
        files[f"kubernetes/{context.name}.yaml"] = text(
            body, service_sources(inventory, context.name), collective=inventory.collective.name
        )
    return dict(sorted(files.items()))


def documents(context: Context) -> list[Document]:
    """Given a service, return its manifests in apply order, each with its comment lines."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": context.name, "labels": labels(context, None)},
    }
    result: list[Document] = [(notes(context), namespace)]
    for volume in sorted(shared_volumes(context)):
        result.append(((), claim(context, volume)))
    for name, component in compose.image_components(context.service):
        if component.env:
            result.append(((), config_map(context, name, component)))
        if component.files:
            result.append(((), files_map(context, name, component)))
        if component.ports:
            result.append(((), service(context, name, component)))
        result.append(((), workload(context, name, component)))
    result.extend(ingresses(context))
    return result


def notes(context: Context) -> tuple[str, ...]:
    """Given a service, return the comment lines that open its file."""
    lines = [f"Apply with: kubectl apply -f {context.name}.yaml"]
    secrets = compose.secret_names(context.service)
    if secrets:
        lines.append(f"Secrets (key `value`, created when applied): {', '.join(secrets.values())}")
    for _, volume_name, volume in _volumes(context):
        if volume.host is not None:
            lines.append(f"Volume {volume_name}: its host path {volume.host} is not used here.")
    return tuple(lines)


def _volumes(context: Context) -> list[tuple[str, str, Any]]:
    return [
        (cname, vname, volume)
        for cname, component in compose.image_components(context.service)
        for vname, volume in sorted(component.volumes.items())
    ]


def labels(context: Context, component: str | None) -> dict[str, str]:
    """Given a service and one of its components (None for the service as a whole), return
    the labels of its objects."""
    return {
        "app.kubernetes.io/name": component or context.name,
        "app.kubernetes.io/part-of": context.name,
        "app.kubernetes.io/managed-by": "allmende",
    }


def selector(context: Context, component: str) -> dict[str, str]:
    """Given a service and a component, return the labels that select the component's pods."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": context.name}


def metadata(context: Context, name: str, component: str | None) -> dict[str, Any]:
    """Return the metadata of an object named ``name`` in the service's namespace."""
    return {"name": name, "namespace": context.name, "labels": labels(context, component)}


def shared_volumes(context: Context) -> set[str]:
    """Given a service, return its shared volumes: those of several components, and those of
    components with more than one replica."""
    users = Counter(vname for _, vname, _ in _volumes(context))
    return {
        vname
        for _, component in compose.image_components(context.service)
        for vname in component.volumes
        if users[vname] > 1 or component.replicas > 1
    }


def claim_spec(context: Context, access: str) -> dict[str, Any]:
    """Return the spec of a claim with ``access`` mode in the host's storage class."""
    spec: dict[str, Any] = {"accessModes": [access]}
    if context.host.storage_class is not None:
        spec["storageClassName"] = context.host.storage_class
    spec["resources"] = {"requests": {"storage": CLAIM_SIZE}}
    return spec


def claim(context: Context, volume: str) -> dict[str, Any]:
    """Given a shared volume, return its ReadWriteMany PersistentVolumeClaim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(context, volume, None),
        "spec": claim_spec(context, "ReadWriteMany"),
    }


def config_map(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component with ``env``, return the ConfigMap ``<component>-env`` holding it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(context, f"{name}-env", name),
        "data": dict(sorted(component.env.items())),
    }


def carried(context: Context, component: Component) -> list[tuple[str, str, bytes]]:
    """Return a component's carried files as (ConfigMap key, path inside, content)."""
    found = []
    for target, file in sorted(component.files.items()):
        for relative, content in sorted(
            under(context.inventory.carried, context.name, file.source).items()
        ):
            inside = relative.removeprefix(file.source.strip("/")).strip("/")
            key = "".join(c if c.isalnum() or c in "-_." else "_" for c in relative)
            found.append((key, f"{target.rstrip('/')}/{inside}" if inside else target, content))
    return found


def executable_keys(context: Context, component: Component) -> list[str]:
    """Return the ConfigMap keys of a component's carried files that are executable."""
    found = []
    for _, file in sorted(component.files.items()):
        for relative in sorted(under(context.inventory.carried, context.name, file.source)):
            if executable(context.inventory, context.name, relative):
                found.append("".join(c if c.isalnum() or c in "-_." else "_" for c in relative))
    return found


def files_volume(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Return the pod volume of a component's carried files: its ConfigMap, each file
    readable by all (0644, Kubernetes' default) and an executable one 0755."""
    source: dict[str, Any] = {"name": f"{name}-files"}
    runs = set(executable_keys(context, component))
    if runs:
        source["items"] = [
            {"key": key, "path": key, **({"mode": 0o755} if key in runs else {})}
            for key in sorted({key for key, _, _ in carried(context, component)})
        ]
    return {"name": FILES_VOLUME, "configMap": source}


def files_map(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component that carries files, return the ConfigMap ``<component>-files``
    holding them (text as ``data``, anything else as ``binaryData``)."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for key, _, content in carried(context, component):
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode("ascii")
    result: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(context, f"{name}-files", name),
    }
    if data:
        result["data"] = data
    if binary:
        result["binaryData"] = binary
    return result


def service(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component with ports, return its ClusterIP Service, named after it."""
    ports = [
        {"name": port, "port": number, "targetPort": number, "protocol": "TCP"}
        for port, number in sorted(component.ports.items())
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(context, name, name),
        "spec": {"type": "ClusterIP", "selector": selector(context, name), "ports": ports},
    }


def container_ports(context: Context, component: Component) -> list[dict[str, Any]]:
    """Given a component, return its container ports, with host ports where it publishes."""
    result: list[dict[str, Any]] = []
    for port, number in sorted(component.ports.items()):
        entry: dict[str, Any] = {}
        if _IANA_PORT_NAME.match(port) and len(port) <= 15:
            entry["name"] = port
        entry["containerPort"] = number
        entry["protocol"] = "TCP"
        if port in component.publish:
            entry["hostPort"] = component.publish[port].port
            entry["hostIP"] = derive.published_ip(context.host, component.publish[port])
        result.append(entry)
    return result


def probe(component: Component) -> dict[str, Any] | None:
    """Given a component, return the probe of its health check, if any."""
    check = component.healthcheck
    if check is None:
        return None
    port = compose.health_port(component, check)
    action: dict[str, Any]
    if check.command is not None:
        action = {"exec": {"command": list(check.command)}}
    elif port is None:
        return None
    elif check.http is not None:
        action = {"httpGet": {"path": compose.http_path(check), "port": port}}
    else:
        action = {"tcpSocket": {"port": port}}
    return {
        **action,
        "periodSeconds": max(1, math.ceil(seconds(check.interval))),
        "timeoutSeconds": max(1, math.ceil(seconds(check.timeout))),
        "failureThreshold": check.retries,
    }


def container(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component, return its container."""
    entry: dict[str, Any] = {
        "name": name,
        "image": qualified(component.image or ""),
        "imagePullPolicy": "IfNotPresent",
    }
    if component.command is not None:
        entry["args"] = [word.replace("$", "$$") for word in component.command]
    if component.env:
        entry["envFrom"] = [{"configMapRef": {"name": f"{name}-env"}}]
    env = [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": flat_name(s), "key": "value"}}}
        for variable, s in env_secrets(component).items()
    ] + [{"name": variable, "value": path} for variable, path in file_variables(component).items()]
    if env:
        entry["env"] = sorted(env, key=lambda e: str(e["name"]))
    ports = container_ports(context, component)
    if ports:
        entry["ports"] = ports
    mounts = [
        {"name": vname, "mountPath": volume.path}
        for vname, volume in sorted(component.volumes.items())
    ] + [
        {"name": secret_volume(use.secret), "mountPath": path, "subPath": "value", "readOnly": True}
        for _, use, path in file_uses(component)
    ]
    mounts += [
        {"name": FILES_VOLUME, "mountPath": path, "subPath": key, "readOnly": True}
        for key, path, _ in carried(context, component)
    ]
    if mounts:
        entry["volumeMounts"] = mounts
    check = probe(component)
    if check is not None:
        entry["readinessProbe"] = check
        entry["livenessProbe"] = check
    return entry


def secret_volume(secret: str) -> str:
    """Return the name of the pod volume that carries a secret."""
    return slug("secret", flat_name(secret))


def secret_volumes(component: Component) -> list[dict[str, Any]]:
    """Return the pod volumes of the secrets a component reads as files, each from its Secret
    (key ``value``), with the use's mode (0600 by default)."""
    volumes: dict[str, dict[str, Any]] = {}
    for _, use, _ in file_uses(component):
        source = {"secretName": flat_name(use.secret), "defaultMode": use.mode or 0o600}
        volumes[secret_volume(use.secret)] = {"name": secret_volume(use.secret), "secret": source}
    return [volumes[name] for name in sorted(volumes)]


def workload(context: Context, name: str, component: Component) -> dict[str, Any]:
    """Given a component, return its StatefulSet (when it has volumes of its own) or
    Deployment."""
    shared = shared_volumes(context)
    own = [v for v in sorted(component.volumes) if v not in shared]
    pod: dict[str, Any] = {"containers": [container(context, name, component)]}
    mounted = [v for v in sorted(component.volumes) if v in shared]
    volumes = [{"name": v, "persistentVolumeClaim": {"claimName": v}} for v in mounted]
    volumes += secret_volumes(component)
    if component.files:
        volumes.append(files_volume(context, name, component))
    if volumes:
        pod["volumes"] = volumes
    groups = sorted({use.gid for _, use, _ in file_uses(component) if use.gid is not None})
    if groups:
        pod["securityContext"] = {"fsGroup": groups[0]}
    template: dict[str, Any] = {"metadata": {"labels": labels(context, name)}, "spec": pod}
    if component.env:
        digest = hashlib.sha256(yaml_text(dict(sorted(component.env.items()))).encode())
        template["metadata"]["annotations"] = {ENV_HASH: digest.hexdigest()}
    files = carried_digest(context.inventory, context.name, component)
    if files is not None:  # a changed file rolls the pods out, as a changed env does
        template["metadata"].setdefault("annotations", {})[FILES_HASH] = files
    spec: dict[str, Any] = {"replicas": component.replicas}
    if own:
        spec["serviceName"] = name
    spec["selector"] = {"matchLabels": selector(context, name)}
    spec["template"] = template
    if own:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": v, "labels": labels(context, name)},
                "spec": claim_spec(context, "ReadWriteOnce"),
            }
            for v in own
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet" if own else "Deployment",
        "metadata": metadata(context, name, name),
        "spec": spec,
    }


def slug(*parts: str) -> str:
    """Return a Kubernetes object name made of ``parts``: lowercase letters, digits and -."""
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return name[:253].rstrip("-") or "root"


def ingresses(context: Context) -> list[Document]:
    """Given a service, return an Ingress per route, named after its domain and path."""
    result: list[Document] = []
    seen: Counter[str] = Counter()
    for route in context.service.routes:
        base = slug(route.domain, route.path)
        seen[base] += 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        result.append(ingress(context, name, route))
    return result


def ingress(context: Context, name: str, route: Route) -> Document:
    """Given a route and the name of its Ingress, return the Ingress with its comments."""
    component, port = split_target(route.to)
    annotations: dict[str, str] = {}
    lines: tuple[str, ...] = ()
    spec: dict[str, Any] = {}
    if route.tls == "terminate":
        annotations["cert-manager.io/cluster-issuer"] = ISSUER
        if route.redirect_https is False:
            annotations[NO_REDIRECT] = "false"
        spec["tls"] = [{"hosts": [route.domain], "secretName": f"{slug(route.domain)}-tls"}]
    elif route.tls == "passthrough":
        annotations[PASSTHROUGH] = "true"
        lines = (
            f"TLS for {route.domain} passes through to `{route.to}`, which holds its own "
            "certificate (ingress-nginx started with --enable-ssl-passthrough; other "
            "controllers name this annotation differently).",
        )
    backend = {"service": {"name": component, "port": {"name": port}}}
    path = {"path": route.path, "pathType": "Prefix", "backend": backend}
    spec["rules"] = [{"host": route.domain, "http": {"paths": [path]}}]
    meta = metadata(context, name, component)
    if annotations:
        meta["annotations"] = annotations
    doc = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
    return lines, doc

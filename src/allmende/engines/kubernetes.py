"""Kubernetes manifests: ``kubectl apply`` on a cluster, or ``podman kube play`` on one host.

==========  ==================================================
runtime     command
==========  ==================================================
docker      ``kubectl apply -f /srv/S/secrets/kubernetes.yaml -f /srv/S/kubernetes.yaml``
podman      ``podman kube play --replace /srv/S/kubernetes.yaml``
==========  ==================================================

A service's secrets are Secret objects in ``/srv/<service>/secrets/kubernetes.yaml`` (one per
secret, named by its flat name, key ``value``, in the service's namespace), passed to
``kubectl apply`` before the manifest, or played first by podman, which makes a podman secret
of each (and will not replace one, so they are removed first). What runs is read with
``kubectl get`` of the Deployments and StatefulSets labelled
``app.kubernetes.io/managed-by=allmende`` (a component runs when every replica is ready), or
with ``podman ps`` on the same label, which the pod's containers carry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from allmende.engines.base import Command, Commands, Engine, Running, Site
from allmende.engines.containers import KUBERNETES_LABELS, exec_in, has_image, parse_ps, ps
from allmende.inventory.hostpaths import PROJECT_FILES, kubernetes_secrets
from allmende.inventory.inventory import Inventory
from allmende.inventory.secretnames import flat_name
from allmende.render.output import Rendered, yaml_text

#: The label every workload allmende renders carries.
SELECTOR = "app.kubernetes.io/managed-by=allmende"


class Kubernetes(Engine):
    """Kubernetes manifests, one file per service."""

    name = "kubernetes"
    project_file = PROJECT_FILES["kubernetes"]

    def manifest(self, service: str) -> str:
        """Return the host path of a service's Secret objects."""
        return kubernetes_secrets(service)

    def up(self, site: Site, service: str, secrets: Sequence[str] = ()) -> Commands:
        project = site.real(self.project(service))
        manifest = site.real(self.manifest(service))
        if site.runtime == "podman":
            play = ("podman", "kube", "play", "--replace", project)
            if not secrets:
                return (play,)
            # kube play makes a podman secret of each Secret, and will not replace one.
            forget = ("sh", "-c", 'podman secret rm "$@" >/dev/null 2>&1; exit 0', "sh")
            return ((*forget, *secrets), ("podman", "kube", "play", manifest), play)
        files = ("-f", manifest) if secrets else ()
        return (("kubectl", "apply", *files, "-f", project),)

    def down(self, site: Site, service: str) -> Commands:
        project = site.real(self.project(service))
        if site.runtime == "podman":
            return (("podman", "kube", "down", project),)
        return (("kubectl", "delete", "--ignore-not-found", "-f", project),)

    def observe(self, site: Site) -> Command:
        if site.runtime == "podman":
            return ps("podman", SELECTOR)
        return ("kubectl", "get", "deployments,statefulsets", "-A", "-l", SELECTOR, "-o", "json")

    def parse(self, site: Site, output: bytes) -> dict[str, Running]:
        if site.runtime == "podman":
            return parse_ps(output, KUBERNETES_LABELS)
        return parse_kubectl(output)

    def exec(
        self, site: Site, service: str, component: str, user: str | None, running: Running
    ) -> Command | None:
        if site.runtime == "podman":
            return exec_in("podman", running, component, user)
        workload = running.containers.get(component)
        if not workload:
            return None
        # kubectl cannot choose the user: the program runs as the image's.
        return ("kubectl", "exec", "-i", "-n", service, workload, "-c", component, "--")

    def has_image(self, site: Site, image: str) -> Command | None:
        return has_image("podman", image) if site.runtime == "podman" else None

    def secret_paths(self, service: str, flat: str) -> tuple[str, ...]:
        return (self.manifest(service),)

    def deliver(
        self, inventory: Inventory, service: str, values: Mapping[str, bytes]
    ) -> dict[str, Rendered]:
        if not values:
            return {}
        documents = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": flat_name(secret), "namespace": service},
                "type": "Opaque",
                "stringData": {"value": value.decode("utf-8", errors="replace")},
            }
            for secret, value in sorted(values.items())
        ]
        text = "---\n".join(yaml_text(d) for d in documents)
        named = (inventory.file("service", service), *(f"secrets/{s}.age" for s in sorted(values)))
        return {self.manifest(service): Rendered(text.encode(), named, 0o600)}


def parse_kubectl(output: bytes) -> dict[str, Running]:
    """Parse ``kubectl get ... -o json`` into each service's components: ``running`` when
    every replica is ready."""
    document = json.loads(output or b"{}")
    result: dict[str, dict[str, str]] = {}
    workloads: dict[str, dict[str, str]] = {}
    for item in document.get("items", []):
        labels = item.get("metadata", {}).get("labels", {})
        service = labels.get(KUBERNETES_LABELS[0])
        component = labels.get(KUBERNETES_LABELS[1])
        if not service or not component:
            continue
        wanted = item.get("spec", {}).get("replicas", 1)
        ready = item.get("status", {}).get("readyReplicas", 0)
        result.setdefault(service, {})[component] = "running" if ready >= wanted else "starting"
        kind = str(item.get("kind") or "Deployment").lower()
        workloads.setdefault(service, {})[component] = f"{kind}/{item['metadata']['name']}"
    return {s: Running(result[s], containers=workloads[s]) for s in sorted(result)}


ENGINE = Kubernetes()

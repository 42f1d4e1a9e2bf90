"""Images: pinned to a tag or digest, so that a restart never brings a surprise."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule
from allmende.inventory.images import moving, registry_of, repository, tag_of


@rule(
    "images.pinned",
    "error",
    "A moving tag such as `latest`, `stable`, `alpine` or a major version alone (`11`, "
    "`27-apache`) changes under you at the next pull; nobody can say which version runs, and "
    "a restore brings back a different one. (An image of `localhost/`, built on the host and "
    "never pulled, only needs a tag other than `latest`).",
    "pin a version tag (`postgres:16.4`) or a digest (`@sha256:...`)",
    force=True,
)
def images_pinned(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        for cname, component in service.components.items():
            if component.image is None:
                continue
            tag, digest = tag_of(component.image)
            path = ("components", cname, "image")
            if digest:
                continue
            full = repository(component.image)
            fix = f"pin a version tag (`{full}:<version>`) or a digest (`{full}@sha256:...`)"
            if tag is None:
                yield ctx.finding("service", name, path, f"`{component.image}` has no tag", fix)
            elif tag == "latest":
                yield ctx.finding("service", name, path, f"`{component.image}` uses `latest`", fix)
            elif moving(tag) and registry_of(component.image) != "localhost":
                yield ctx.finding(
                    "service",
                    name,
                    path,
                    f"`{component.image}` uses the moving tag `{tag}`: it names no full version",
                    fix,
                )


@rule(
    "images.built",
    "error",
    "Only a compose host builds an image from the sources the inventory carries (`build`); "
    "Swarm and Kubernetes start an image from a registry on whichever node runs it, so the "
    "sources would never be used.",
    "build the image, push it to a registry, name it in `image:` and drop `build`",
)
def images_built(ctx: Context) -> Iterator[Finding]:
    for name, service in sorted(ctx.inventory.services.items()):
        host = ctx.inventory.hosts.get(service.host)
        if host is None or host.engine == "compose":
            continue
        for cname, component in sorted(service.components.items()):
            if component.build is not None:
                yield ctx.finding(
                    "service",
                    name,
                    ("components", cname, "build"),
                    f"`{service.host}` runs {host.engine}, which builds no image",
                )

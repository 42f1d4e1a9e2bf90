"""Images: pinned to a tag or digest, so that a restart never brings a surprise."""

from __future__ import annotations

from collections.abc import Iterator

from allmende.checks.registry import Context, Finding, rule


def tag_of(image: str) -> tuple[str | None, str | None]:
    """Given an image reference, return (tag, digest); either is None when absent.

    ``registry:5000/org/app:1.2@sha256:...`` gives ("1.2", "sha256:...").
    """
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else None
    return tag or None, digest or None


@rule(
    "images.pinned",
    "error",
    "A moving tag such as `latest` changes under you at the next pull; nobody can say which "
    "version runs, and a restore brings back a different one.",
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
            if tag is None:
                yield ctx.finding("service", name, path, f"`{component.image}` has no tag")
            elif tag == "latest":
                yield ctx.finding("service", name, path, f"`{component.image}` uses `latest`")

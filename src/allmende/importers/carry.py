"""Paths of the project, not of the machine that imports it: a bind mount whose source is
relative to the project (``./nginx.conf``) or to a home directory (``~/music``).

A small file or directory (configuration: at most 64 files and 1 MiB, text or binary) is
carried into the inventory under ``files/<service>/``, its executable bit kept, and named by
the component's ``files``; anything else (data, a path that does not exist yet, a large tree,
a link) becomes a volume under ``/srv/<service>/``, with a note to move what is there. Nothing
keeps the importing machine's own paths.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from allmende.importers.context import ComponentContext
from allmende.inventory.hostpaths import carried_file, volume_dir

#: The most a carried source may hold: configuration, not data.
MOST_FILES = 64
MOST_BYTES = 1 << 20
#: The most the sources of a built image may hold.
MOST_BUILD_FILES = 1000
MOST_BUILD_BYTES = 16 << 20
#: Left out of carried build sources: the project's own repository and env files, which may
#: hold secrets that have no place in the inventory's files.
NOT_SOURCES = (".git", ".env")


def relative_source(source: str) -> str | None:
    """Return a mount source relative to the project (``./a/b`` -> ``a/b``, ``../x`` -> ``x``,
    ``~/music`` -> ``music``), or None for a path of the host (``/var/run/docker.sock``)."""
    if source.startswith("/"):
        return None
    text = source[1:].lstrip("/") if source.startswith("~") else source
    parts = [p for p in posixpath.normpath(text).split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "."


def on_disk(ctx: ComponentContext, source: str) -> Path | None:
    """Return where a relative mount source lies on the importing machine (None: unknown)."""
    if source.startswith("~"):
        home = ctx.project.env.get("HOME")
        return Path(home + source[1:]) if home else None
    return ctx.project.directory / source


def readable(
    path: Path | None, most: tuple[int, int] = (MOST_FILES, MOST_BYTES), skip: tuple[str, ...] = ()
) -> dict[str, tuple[bytes, bool]] | None:
    """Return the files of a small file or directory by their path relative to it (``""`` for
    a file itself): content and whether it is executable; None where it is no configuration to
    carry (missing, a link, more than ``most`` files and bytes, unreadable). Files or
    directories whose name starts with one of ``skip`` are left out."""
    if path is None or path.is_symlink() or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if not p.is_dir())
    files = [
        p for p in files if not any(part.startswith(skip) for part in p.relative_to(path).parts)
    ] if skip else files  # fmt: skip
    if not files or len(files) > most[0] or any(p.is_symlink() for p in files):
        return None
    if sum(p.stat().st_size for p in files) > most[1]:
        return None
    out: dict[str, tuple[bytes, bool]] = {}
    for file in files:
        try:
            content, mode = file.read_bytes(), file.stat().st_mode
        except OSError:
            return None
        out["" if file == path else file.relative_to(path).as_posix()] = (
            content,
            bool(mode & 0o111),
        )
    return out


def carry(ctx: ComponentContext, source: str, target: str, read_only: bool) -> str | None:
    """Carry a project-relative mount source into the inventory when it is configuration:
    return the host path the rendered mount uses, or None when it is not carried (then it is
    data: see ``data_volume``)."""
    relative = relative_source(source)
    contents = readable(on_disk(ctx, source))
    if relative is None or relative == "." or contents is None:
        return None
    for inside, (content, runs) in contents.items():
        key = posixpath.join(relative, inside) if inside else relative
        ctx.carried[key] = content
        if runs:
            ctx.executable.add(key)
    ctx.component.setdefault("files", {})[target] = (
        {"source": relative, "read_only": True} if read_only else relative
    )
    return carried_file(ctx.service, relative)


def carry_build(ctx: ComponentContext, context: str) -> tuple[str, bool] | None:
    """Carry the sources of a built image into the inventory. Return (the context's
    directory, whether it was carried): under ``files/<service>/`` when it was; else relative
    to the service's directory on the host, where the import says to put them (outside the
    project's directory, missing, a link in them, too large). Return None, with a problem
    saying why, for an absolute context or one in a home directory: a path of the importing
    machine."""
    if context.startswith(("/", "~")):
        ctx.problem(
            ("build",),
            f"the build context {context} is a path of the machine that imports, not of the "
            "project",
            "make it relative to the project's directory, or build the image, push it to a "
            "registry and name it in `image:`",
        )
        return None
    relative = relative_source(context) or "."
    into = "build" if relative == "." else relative
    path = on_disk(ctx, context)
    inside = path is not None and path.resolve().is_relative_to(ctx.project.directory.resolve())
    contents = readable(path, (MOST_BUILD_FILES, MOST_BUILD_BYTES), NOT_SOURCES) if inside else None
    if contents is None or "" in contents:
        kept = "." if posixpath.normpath(context) == "." else into
        why = (
            f"missing, no directory, a link in it, or more than {MOST_BUILD_FILES} files or "
            f"{MOST_BUILD_BYTES >> 20} MiB"
            if inside
            else "outside the project's directory"
        )
        ctx.differ(
            "build",
            f"builds from /srv/{ctx.service}/{kept}: put the sources of {context} there (not "
            f"carried: {why})",
        )
        return f"./{kept}" if kept != "." else ".", False
    for name, (content, runs) in contents.items():
        key = f"{into}/{name}"
        ctx.carried[key] = content
        if runs:
            ctx.executable.add(key)
    left = sorted(
        p.name for p in path.iterdir() if p.name.startswith(NOT_SOURCES)
    ) if path is not None else []  # fmt: skip
    if left:
        ctx.differ("build", f"built without {', '.join(left)} (not carried: may hold secrets)")
    return into, True


def data_volume(ctx: ComponentContext, index: int, source: str, name: str) -> str:
    """Return the host path of a volume made of a project-relative data path, saying what to
    move there (and that the rendered service starts without it) when something is there."""
    host = volume_dir(ctx.service, name)
    if source.startswith("~") or posixpath.normpath(source).startswith(".."):
        ctx.differ("volumes", f"{source}, outside the project's directory, is now {host}")
    path = on_disk(ctx, source)
    if path is not None and path.exists() and any(path.iterdir() if path.is_dir() else [path]):
        ctx.note(
            ("volumes", index),
            "warning",
            f"{source} is now {host}: move its data there before the first start",
        )
        ctx.differ("volumes", f"{source} holds data the host must be given at {host}")
    return host

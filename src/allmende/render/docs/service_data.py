"""The parts of a service's page about its data: volumes, databases, secrets, backup, restore."""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.models import Service
from allmende.inventory.secretnames import mount_path
from allmende.render.docs import runbook
from allmende.render.docs.blocks import (
    Block,
    Code,
    Facts,
    Line,
    Link,
    Para,
    Step,
    Steps,
    Table,
    Text,
    joined,
    line,
)
from allmende.render.docs.context import (
    Context,
    codes,
    database_link,
    service_link,
)


def volumes(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    """Return the volumes of a service with their host paths (and, on Kubernetes, a hint)."""
    rows = tuple(
        (line(Code(host_path)), line(Code(f"{cname}:{volume.path}")), line(vname))
        for cname, vname, volume, host_path in derive.volumes(name, service)
    )
    blocks: list[Block] = [
        Table(
            ("Host path", "Mounted at", "Volume"),
            rows,
            empty="No volumes: the service keeps no files of its own.",
        )
    ]
    host = context.inventory.hosts[service.host]
    if rows and host.engine == "kubernetes":
        storage = (
            line(" of the storage class ", Code(host.storage_class)) if (host.storage_class) else ()
        )
        blocks.append(
            Para(
                line(
                    "On Kubernetes the volumes are persistent volume claims",
                    *storage,
                    "; see where each one lives with ",
                    Code(f"kubectl --namespace {name} get pvc"),
                    ".",
                ),
                tone="note",
            )
        )
    return tuple(blocks)


def databases(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    """Return the databases a service offers (with their users) and those it uses."""
    blocks: list[Block] = []
    if service.provides is not None:
        offered = [d for d in context.databases.values() if d.provider == name]
        rows = tuple(
            (
                line(database_link(d.ref)),
                joined((service_link(u) for u in d.users), empty="nobody yet"),
            )
            for d in offered
        )
        blocks.append(
            Para(line("Offers a ", Code(service.provides.database), " server; its databases:"))
        )
        blocks.append(Table(("Database", "Used by"), rows, empty="No databases declared."))
    for use in service.uses:
        db = context.databases.get(use.database)
        provider = use.database.partition("/")[0]
        blocks.append(
            Para(
                line(
                    "Uses ",
                    database_link(use.database),
                    f" ({db.engine})" if db else "",
                    " on ",
                    service_link(provider),
                    ": its data is backed up and restored there.",
                )
            )
        )
    return tuple(blocks)


def secrets(context: Context, service: Service) -> Table:
    """Return each secret a component gets, by name, and whether a value is stored."""
    rows = []
    for cname, component in sorted(service.components.items()):
        for env, use in sorted(component.secrets.items()):
            stored = "stored" if use.secret in context.inventory.secrets else "missing"
            given = f"{cname}: {env}" if use.as_ == "env" else f"{cname}: {mount_path(use)}"
            if use.as_ == "file":
                given += f" ({env}_FILE)"
            rows.append((line(Code(use.secret)), line(Code(given)), line(stored)))
    return Table(("Secret", "Given to", "Value"), tuple(rows), empty="No secrets.")


def backup(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    """Return the effective backup policy, or a warning when data is not backed up."""
    backup = derive.backup(context.inventory.collective, name, service)
    if backup.consistency == "none":
        tone = "warn" if derive.has_data(service) else "note"
        return (
            Para(
                line(
                    Text("Not backed up.", strong=True),
                    " Its data would be lost with the host."
                    if tone == "warn"
                    else " It holds no volumes or databases.",
                ),
                tone=tone,
            ),
        )
    keep = backup.keep
    kept = ", ".join(
        f"{getattr(keep, p)} {p}"
        for p in ("hourly", "daily", "weekly", "monthly", "yearly")
        if keep is not None and getattr(keep, p) is not None
    )
    rows: list[tuple[str, Line]] = [
        (
            "Consistency",
            line(Code(backup.consistency), ": ", runbook.CONSISTENCY.get(backup.consistency, "")),
        ),
        ("Schedule", line(backup.schedule or "not set")),
        ("Keep", line(kept or "everything (no pruning)")),
        ("Repository", line(Code(backup.repository)) if backup.repository else line("not set")),
    ]
    if backup.encryption:
        rows.append(("Encryption", line(Code(backup.encryption))))
    rows.append(
        (
            "Append-only",
            line("yes: the repository refuses deletions" if backup.append_only else "no"),
        )
    )
    if backup.exclude:
        rows.append(("Excluded", codes(backup.exclude)))
    last = context.archives.get(name)
    if last is None:
        rows.append(
            (
                "Last archive",
                line(
                    "No archive recorded on this machine yet: ",
                    Code(f"allmende backup status {name}"),
                    " reads it from the repository.",
                ),
            )
        )
    else:
        rows.append(("Last archive", line(Code(last.archive), f" ({last.by}, {last.seen})")))
    return (Facts(tuple(rows)),)


def restore(context: Context, name: str, service: Service) -> tuple[Block, ...]:
    """Return the restore runbook derived from the backup policy (see ``runbook``)."""
    backup = derive.backup(context.inventory.collective, name, service)
    offered = [d.name for d in context.databases.values() if d.provider == name]
    book = runbook.restore(context.inventory.hosts, name, service, backup, offered)
    if not book.steps:
        reason = "no backup" if backup.consistency == "none" else "no repository set"
        blocks: list[Block] = [Para(line(f"Nothing to restore from: {reason}."))]
        if service.uses:
            blocks.append(Para(line("Its databases are restored with their server's data.")))
        return tuple(blocks)
    if book.paths:
        what = line("Restores ", *codes(book.paths), " from ")
    elif offered:
        what = line("Restores the databases ", *codes(sorted(offered)), " from their dumps in ")
    else:
        what = line("Restores its data from ")
    intro: Block = Para(line(*what, Code(backup.repository or ""), "."))
    steps = list(book.steps)
    for use in service.uses:
        provider = use.database.partition("/")[0]
        steps.insert(
            -1,
            Step(
                line(
                    "Its database ",
                    database_link(use.database),
                    " is restored on ",
                    Link(provider, page=f"services/{provider}", anchor="restore"),
                    " if needed.",
                )
            ),
        )
    return (intro, Steps(tuple(steps)))

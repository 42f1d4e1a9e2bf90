"""Each backed-up service's job file: what its host's timer runs.

``<host>/etc/allmende/backup/<service>.json`` holds the service's ``inventory.backups.job``:
the repository, what is copied, how it is made consistent, the commands of its engine, where
alerts go. No secret is in it: the passphrase and SSH key are files of their own, which apply
writes from the secret store (``plan.backupfiles``).
"""

from __future__ import annotations

from allmende.inventory import backups
from allmende.inventory.hostpaths import backup_job
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, header, service_sources


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the job file of every backed-up service, on its host."""
    files: dict[str, Rendered] = {}
    for name in backups.backed_up(inventory):
        job = backups.job(inventory, name)
        assert job is not None
        path = f"{job.host}{backup_job(name)}"
        sources = service_sources(inventory, name)
        written = header(sources, collective=inventory.collective.name)
        comment = " ".join(written.replace("# ", "").splitlines())
        files[path] = Rendered(job.to_json(comment).encode(), sources, 0o644)
    return files

"""What each edge host needs to renew its certificates on its own: the job and its timer.

For every edge host with certificates it can renew alone (``inventory.certificates.job``: those
only it serves, and every dns-01 one) when allmende.yaml has ``acme:``:

- ``<edge>/etc/allmende/certs/job.json``: the job (``inventory.certjob``), without a secret:
  the account key and the TSIG keys are files of their own that apply writes from the secret
  store (``plan.certfiles``);
- ``<edge>/etc/systemd/system/allmende-certs.timer``: twice a day (``OnCalendar=`` 00:00 and
  12:00, up to an hour later at random so that collectives do not all ask their CA at once,
  ``Persistent=true``): renewal when fewer than ``renew_before_days`` remain, a run that
  finds nothing due does nothing;
- ``<edge>/etc/systemd/system/allmende-certs.service``: a ``Type=oneshot`` unit running
  ``CERTS_COMMAND`` (allmende's copy on the host, with Debian's ``python3-acme``), hardened
  like the backup units: the file system read-only but the certificates, HAProxy's run
  directory (its master socket) and allmende's own state.
"""

from __future__ import annotations

from allmende.inventory import certificates, derive
from allmende.inventory.hostpaths import (
    CACHE_DIR,
    CERTS_JOB,
    HAPROXY_CERTS,
    HAPROXY_RUN,
    PROGRAM,
    STATE_DIR,
    STATE_NAME,
    unit_file,
)
from allmende.inventory.inventory import Inventory
from allmende.render.output import Rendered, header, service_sources, text
from allmende.render.systemd import word

#: What the certificate unit runs: allmende's copy on the host, by the host's python3 (which
#: finds Debian's python3-acme); ``allmende certs job`` is the same.
CERTS_COMMAND = ("/usr/bin/python3", "-I", PROGRAM, "certs", "job")
#: The name shared by the service and timer units.
UNIT = "allmende-certs"
#: When the timer fires, and how far systemd may move it at random.
SCHEDULE = "*-*-* 00,12:00:00"
RANDOMIZED_DELAY = "1h"


def _sources(inventory: Inventory, edge: str) -> tuple[str, ...]:
    job = certificates.job(inventory, edge)
    services = {
        s for c in certificates.certificates(inventory) if edge in c.edges for s in c.services
    }
    files = {"allmende.yaml", *service_sources(inventory, *sorted(services))}
    if job is not None:
        files.update(inventory.file("zone", u.zone) for u in job.updates)
    return tuple(sorted(files))


def render(inventory: Inventory) -> dict[str, Rendered]:
    """Given an inventory, return the certificate job and units of every edge host that has
    certificates to renew (none without ``acme:``)."""
    files: dict[str, Rendered] = {}
    for edge in derive.edge_hosts(inventory):
        job = certificates.job(inventory, edge)
        if job is None:
            continue
        sources = _sources(inventory, edge)
        owner = inventory.collective.name
        comment = " ".join(header(sources, collective=owner).replace("# ", "").splitlines())
        files[f"{edge}{CERTS_JOB}"] = Rendered(job.to_json(comment).encode(), sources, 0o644)
        files[f"{edge}{unit_file(UNIT)}.service"] = text(service_unit(), sources, collective=owner)
        files[f"{edge}{unit_file(UNIT)}.timer"] = text(timer_unit(), sources, collective=owner)
    return files


def service_unit() -> str:
    """Return the body of the ``.service`` unit that renews the edge's certificates once."""
    command = " ".join(word(part) for part in CERTS_COMMAND)
    lines = [
        "[Unit]",
        "Description=Renew the certificates this edge serves (allmende)",
        "Wants=network-online.target",
        "After=network-online.target haproxy.service",
        "",
        "[Service]",
        "Type=oneshot",
        "# No key belongs here: the job reads the ACME account key and the TSIG keys from the",
        "# files apply wrote (mode 0600).",
        f"ExecStart={command}",
        "Nice=10",
        "# Hardening: everything read-only but the certificates, HAProxy's run directory (its",
        f"# master socket) and allmende's own directories ({STATE_DIR}, {CACHE_DIR}).",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ProtectControlGroups=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        f"StateDirectory={STATE_NAME}",
        f"CacheDirectory={STATE_NAME}",
        f"ReadWritePaths={word('-' + HAPROXY_CERTS)}",
        f"ReadWritePaths={word('-' + HAPROXY_RUN)}",
    ]
    return "\n".join(lines) + "\n"


def timer_unit() -> str:
    """Return the body of the ``.timer`` unit that starts the renewal twice a day."""
    lines = [
        "[Unit]",
        "Description=Renew the certificates this edge serves, twice a day (allmende)",
        "",
        "[Timer]",
        f"OnCalendar={SCHEDULE}",
        "# Up to this much later, at random, so that not every edge asks its CA at once.",
        f"RandomizedDelaySec={RANDOMIZED_DELAY}",
        "# Run a renewal missed while the machine was off as soon as it is up again.",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"

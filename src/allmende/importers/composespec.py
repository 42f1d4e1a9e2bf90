"""What the Compose specification allows in a file, and the problems of a file that breaks it.

The keys are those of the official Compose JSON Schema (top level and services); ``x-`` keys
are extensions and always allowed. ``extends`` and ``include`` pull in other files or
services, which the importer does not resolve: their projects are refused with a way out.
"""

from __future__ import annotations

import re
from typing import Any

from allmende.errors import Problem
from allmende.inventory.validate import did_you_mean
from allmende.inventory.yamlpos import Document, KeyPath, dotted

TOP_KEYS = frozenset(
    {"version", "name", "include", "services", "networks", "volumes", "secrets", "configs"}
)
SERVICE_KEYS = frozenset(
    {
        *("annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup"),
        *("cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent"),
        *("cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus"),
        *("cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules"),
        *("devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file"),
        *("environment", "expose", "extends", "external_links", "extra_hosts", "gpus"),
        *("group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation"),
        *("label_file", "labels", "links", "logging", "mac_address", "mem_limit"),
        *("mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode"),
        *("networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform"),
        *("ports", "post_start", "pre_stop", "privileged", "profiles", "provider"),
        *("pull_policy", "pull_refresh_after", "read_only", "restart", "runtime", "scale"),
        *("secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period"),
        *("stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket"),
        *("user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir"),
    }
)
FLATTEN = "run `docker compose config > flat.yaml` and import flat.yaml"
MERGE_TAG = re.compile(r"unknown YAML tag !(override|reset)$")
NO_SERVICES = "a compose file needs a `services` mapping"
WITH_F = "`allmende import compose -f base.yaml -f this.yaml`"


def check_keys(data: dict[str, Any], doc: Document, later: bool = False) -> list[Problem]:
    """Return a Problem for each top-level or service key Compose does not know, for
    ``include`` and ``extends``, and for a first file without services (a ``later`` file,
    merged over the first, may leave them out)."""
    problems: list[Problem] = []

    def unknown(path: KeyPath, name: str, known: frozenset[str], what: str) -> None:
        if name.startswith("x-") or name in known:
            return
        hint = did_you_mean(name, known, "") or f"see the Compose specification for {what}"
        problems.append(
            Problem(doc.locate(path, key=True), dotted(path), f"unknown compose key `{name}`", hint)
        )

    def elsewhere(path: KeyPath, what: str) -> None:
        problems.append(
            Problem(
                doc.locate(path, key=True),
                dotted(path),
                f"{what}, which allmende does not resolve",
                FLATTEN,
            )
        )

    for key in data:
        unknown((key,), key, TOP_KEYS, "top-level keys")
    if "include" in data:
        elsewhere(("include",), "`include` pulls in other compose files")
    services = data.get("services")
    if services is None and later:
        return problems
    if not isinstance(services, dict):
        where = ("services",) if "services" in data else ()
        hint = f"if this file adds to another, import the two together: {WITH_F}" if data else ""
        problems.append(Problem(doc.locate(where), "services", NO_SERVICES, hint))
        return problems
    for name, service in services.items():
        if not isinstance(service, dict):
            path = ("services", name)
            problems.append(
                Problem(doc.locate(path), dotted(path), "a service must be a mapping of keys")
            )
            continue
        for key in service:
            unknown(("services", name, key), key, SERVICE_KEYS, "service keys")
        if "extends" in service:
            elsewhere(("services", name, "extends"), "`extends` builds on another service")
    return problems


def yaml_problems(problems: list[Problem]) -> list[Problem]:
    """Explain Compose's merge tags, which only mean something when files are merged."""
    out = []
    for p in problems:
        if MERGE_TAG.search(p.message):
            p = Problem(
                p.location,
                p.keypath,
                p.message + ", which only means something when files are merged",
                f"import it with the file it overrides: {WITH_F}",
            )
        out.append(p)
    return out

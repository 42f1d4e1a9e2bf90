"""What differs between an Incus instance as rendered and as it runs, and what brings it there.

For each instance of a definition file (``allmende.render.incus``), from what Incus answered
of it (``GET /1.0/instances?recursion=1``), the Step that brings it there:

* none found: create it (``POST``), start it, install its packages, run its setup steps and
  enable its services;
* one made by hand (no ``user.allmende.*`` record): adopt it, changed in place; its packages
  are installed and its services enabled, but its setup steps are taken as done;
* its image changed: make it anew; the old one is stopped and kept aside as
  ``<name>-previous`` (with its snapshots), a new one created; data in volumes is kept, and a
  rollback puts the old one back;
* its configuration, devices, profiles or description differ: change it in place with one
  ``PUT`` of the whole definition (Incus's own keys, ``volatile.*`` and ``image.*``, as they
  are), which Incus takes whole or refuses whole, the running instance untouched; restart it
  when its environment changed (its init reads it at start);
* new packages, setup steps or services: install, run or enable those (services gone are
  disabled);
* stopped: start it.

Before any change an instance gets a snapshot, ``before-apply-<date>-<time>``. What allmende
ran inside is recorded (``user.allmende.*``) only once it ran, so a failed step runs again at
the next apply. Each Step has its undo for a rollback: delete what was created, ``PUT`` back
the configuration that was found, put back the instance kept aside.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from allmende.engines.base import Command, Step
from allmende.engines.incus import commands as c
from allmende.errors import UserError
from allmende.render.incus_plan import IMAGE, PROVISIONED, SERVICES, SETUP, USER
from allmende.render.incus_plan import PACKAGES as PACKAGE_KEY

#: libyaml's safe loader where PyYAML has it (the definitions are read at every plan).
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Configuration keys Incus itself keeps; a ``PUT`` passes them on as they are.
INCUS_KEYS = ("volatile.", "image.")
#: The name of the instance an image change keeps aside.
KEPT = "-previous"
#: The start of the name of the snapshot taken before an apply changes an instance.
BEFORE_APPLY = "before-apply"


@dataclass(frozen=True)
class Judged:
    """One instance's Step, and whether it changes anything (then a snapshot comes first)."""

    step: Step
    changes: bool


def kept_name(name: str) -> str:
    """Return the name under which an instance made anew keeps its predecessor."""
    return f"{name[: 63 - len(KEPT)]}{KEPT}"


def _listed(config: Mapping[str, str], key: str) -> list[str]:
    try:
        value = json.loads(config.get(key) or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _ours(config: Mapping[str, Any]) -> dict[str, str]:
    """Return the keys of a configuration that allmende decides (not Incus's own, not the
    record of what was run inside)."""
    return {
        k: str(v)
        for k, v in config.items()
        if not k.startswith(INCUS_KEYS) and k not in PROVISIONED
    }


def _volumes(body: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    """Return the host directories of volumes the definition mounts that ``before`` did not."""
    old = {d.get("source") for d in before.values() if isinstance(d, dict)}
    return sorted(
        str(d["source"])
        for name, d in body.get("devices", {}).items()
        if name.startswith("volume-") and d.get("source") not in old
    )


def _differences(body: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """Return what differs between a definition and an instance, one phrase each."""
    said: list[str] = []
    want, have = _ours(body.get("config", {})), _ours(found.get("config", {}))
    for key in sorted(want.keys() | have.keys()):
        if want.get(key) != have.get(key):
            if key not in have:
                said.append(f"{key} set")
            elif key not in want:
                said.append(f"{key} removed")
            else:
                said.append(f"{key} {have[key]} -> {want[key]}")
    wanted_devices, devices = body.get("devices", {}), found.get("devices", {})
    for name in sorted(wanted_devices.keys() | devices.keys()):
        if name not in devices:
            said.append(f"device {name} added")
        elif name not in wanted_devices:
            said.append(f"device {name} removed")
        elif wanted_devices[name] != devices[name]:
            said.append(f"device {name} changed")
    if list(body.get("profiles", [])) != list(found.get("profiles", [])):
        said.append(
            f"profiles {', '.join(found.get('profiles') or []) or 'none'} -> "
            f"{', '.join(body.get('profiles') or [])}"
        )
    if body.get("description", "") != found.get("description", ""):
        said.append("description")
    return said


def _put_body(body: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``PUT`` that gives the instance the definition: Incus's own keys and the
    record of what ran inside as they are (the record changes only once it ran)."""
    config = _ours(body.get("config", {}))
    config.update(
        {k: str(v) for k, v in found.get("config", {}).items() if k.startswith(INCUS_KEYS)}
    )
    config.update({k: str(v) for k, v in found.get("config", {}).items() if k in PROVISIONED})
    return {
        "config": dict(sorted(config.items())),
        "devices": body.get("devices", {}),
        "profiles": list(body.get("profiles", [])),
        "description": body.get("description", ""),
    }


def _restore_body(found: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``PUT`` that gives an instance back what was found."""
    return {
        "config": dict(found.get("config", {})),
        "devices": dict(found.get("devices", {})),
        "profiles": list(found.get("profiles", [])),
        "description": found.get("description", ""),
    }


def _put_back(name: str, body: Mapping[str, Any], found: Mapping[str, Any]) -> list[Command]:
    """Return the commands that give an instance back what was found. A device the change
    replaced or removed is unplugged and plugged again: when Incus refuses a new device it
    keeps the old one in the configuration but has stopped it already (a proxy device no
    longer listens)."""
    wanted = body.get("devices", {})
    restored = _restore_body(found)
    touched = [n for n, d in restored["devices"].items() if wanted.get(n) != d]
    if not touched:
        return [c.put(name, restored)]
    without = {n: d for n, d in restored["devices"].items() if n not in touched}
    return [c.put(name, {**restored, "devices": without}), c.put(name, restored)]


def _environment_changed(body: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    def env(config: Mapping[str, Any]) -> dict[str, str]:
        return {k: str(v) for k, v in config.items() if k.startswith("environment.")}

    return env(body.get("config", {})) != env(found.get("config", {}))


def _provision(
    name: str, config: Mapping[str, str], done: Mapping[str, str] | None, adopted: bool
) -> tuple[list[Command], list[str]]:
    """Return what runs inside to bring the instance to the packages, setup steps and
    services of ``config``, given the record ``done`` (None: a new instance), and what it
    does in words."""
    if IMAGE not in config or PACKAGE_KEY not in config:
        return [], []  # an OCI instance: nothing is run inside
    packages, setup, services = (_listed(config, k) for k in (PACKAGE_KEY, SETUP, SERVICES))
    had = done or {}
    old_packages, old_setup, old_services = (
        _listed(had, k) for k in (PACKAGE_KEY, SETUP, SERVICES)
    )
    new_packages = [p for p in packages if p not in old_packages]
    new_setup = [] if adopted else [s for s in setup if s not in old_setup]
    new_services = [s for s in services if s not in old_services or adopted]
    if adopted:
        new_packages = packages
    gone = [s for s in old_services if s not in services]
    said = []
    if new_packages:
        said.append("install " + " ".join(new_packages))
    if new_setup:
        said.append(f"run {len(new_setup)} setup step{'s' if len(new_setup) != 1 else ''}")
    if new_services:
        said.append("enable " + " ".join(new_services))
    if gone:
        said.append("disable " + " ".join(gone))
    record = {k: config[k] for k in PROVISIONED}
    changed = record != {k: had.get(k) for k in PROVISIONED}
    commands: list[Command] = []
    if new_packages or new_setup or new_services or gone:
        commands.append(c.inside(name, c.WAIT))
    if new_packages:
        commands.append(c.inside(name, c.INSTALL, *new_packages))
    commands += [c.step(name, text) for text in new_setup]
    if new_services:
        commands.append(c.inside(name, c.ENABLE, *new_services))
    if gone:
        commands.append(c.inside(name, c.DISABLE, *gone))
    if changed:
        commands.append(c.record(name, record))
    return commands, said


def placed(body: Mapping[str, Any], real: Callable[[str], str]) -> dict[str, Any]:
    """Return a definition with the host paths its disk devices mount where they really are
    (``Site.real``: under the root standing in for ``/``)."""
    devices = {
        name: {**d, "source": real(d["source"])}
        if d.get("type") == "disk" and str(d.get("source", "")).startswith("/")
        else d
        for name, d in body.get("devices", {}).items()
    }
    return {**body, "devices": devices}


def judge(
    body: Mapping[str, Any], found: Mapping[str, Any] | None, real: Callable[[str], str]
) -> Judged:
    """Return what brings one instance from ``found`` (None: there is none) to its definition
    ``body``; ``real`` maps a host path to where it really is (``Site.real``)."""
    body = placed(body, real)
    name = str(body["name"])
    config = {k: str(v) for k, v in body.get("config", {}).items()}
    if found is None:
        return _create(name, body, config)
    have = {k: str(v) for k, v in found.get("config", {}).items()}
    adopted = not any(k.startswith(USER) for k in have)
    if not adopted and IMAGE in config and have.get(IMAGE) not in (None, config[IMAGE]):
        return _recreate(name, body, config, found)
    differences = _differences(body, found)
    inside, said = _provision(name, config, have, adopted)
    running = str(found.get("status", "")).lower() == "running"
    commands: list[Command] = []
    undo: list[Command] = []
    words: list[str] = []
    if differences:
        folders = _volumes(body, found.get("devices", {}))
        if folders:
            commands.append(c.mkdirs(folders))
        commands.append(c.put(name, _put_body(body, found)))
        undo += _put_back(name, body, found)
        words.append(
            ("adopt " if adopted else "change ") + f"{name} in place: " + ", ".join(differences)
        )
        if running and _environment_changed(body, found):
            commands.append(c.incus("restart", name))
            undo.append(c.incus("restart", name))
            words.append("restart it (its environment changes)")
    if not running:
        commands.append(c.incus("start", name))
        undo.append(c.incus("stop", name))
        words.append(f"start {name} (it is {str(found.get('status') or 'stopped').lower()})")
    commands += inside
    if said:
        words.append(f"in {name}: " + ", ".join(said))
    changes = bool(differences or said)
    return Judged(Step("; ".join(words), tuple(commands), tuple(undo)), changes)


def _create(name: str, body: Mapping[str, Any], config: dict[str, str]) -> Judged:
    post = dict(body)
    post["config"] = {k: v for k, v in config.items() if k not in PROVISIONED}
    commands: list[Command] = []
    folders = _volumes(body, {})
    if folders:
        commands.append(c.mkdirs(folders))
    commands += [c.create(post), c.incus("start", name)]
    inside, said = _provision(name, config, None, False)
    commands += inside
    what = f"create {name}" + (": " + ", ".join(said) if said else "")
    return Judged(Step(what, tuple(commands), (c.sh(c.DELETE_IF_THERE, name),)), True)


def _recreate(
    name: str,
    body: Mapping[str, Any],
    config: dict[str, str],
    found: Mapping[str, Any],
) -> Judged:
    old = found.get("config", {}).get(IMAGE)
    made = _create(name, body, config)
    aside = set_aside(name, found, "")
    what = (
        f"make {name} anew: its image changes ({old} -> {config[IMAGE]}); data in volumes is "
        f"kept, the old instance is kept stopped as {kept_name(name)}"
    )
    undo = (c.sh(c.DELETE_IF_THERE, name), *aside.undo)
    return Judged(Step(what, (*aside.commands, *made.step.commands), undo), True)


def set_aside(name: str, instance: Mapping[str, Any], why: str) -> Step:
    """Return the Step that stops an instance and keeps it aside as ``<name>-previous``, out
    of the way and not started with the host (a rollback puts it back; an earlier one kept
    aside goes)."""
    aside = kept_name(name)
    commands: list[Command] = [c.sh(c.DELETE_IF_THERE, aside)]
    if str(instance.get("status", "")).lower() == "running":
        commands.append(c.incus("stop", name))
    commands += [
        c.incus("rename", name, aside),
        c.incus("config", "set", aside, "boot.autostart=false"),
    ]
    what = f"set {name} aside: {why}; it is kept stopped as {aside}"
    return Step(what, tuple(commands), (c.sh(c.PUT_BACK, name, aside),))


def with_snapshot(name: str, judged: Judged, existing: bool) -> Step:
    """Return an instance's Step with a snapshot taken first where it changes an instance
    that exists (a new one has nothing to keep)."""
    step = judged.step
    if not (judged.changes and existing and step.commands):
        return step
    snapshot = c.sh(c.SNAPSHOT_NOW, name, BEFORE_APPLY)
    return Step(step.what, (snapshot, *step.commands), step.undo)


def definitions(project: bytes, where: str) -> dict[str, dict[str, Any]]:
    """Return the instance definitions of a rendered file, by name. Raise UserError if it is
    not one allmende rendered."""
    try:
        document = yaml.load(project, Loader=_Loader) or {}
        instances = document["instances"]
        if not isinstance(instances, dict) or not all(
            isinstance(v, dict) and v.get("name") == k for k, v in instances.items()
        ):
            raise ValueError("`instances` is not a mapping of definitions by name")
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: not an instance definition allmende rendered: {exc}") from None
    return instances


def combine(steps: Sequence[Step]) -> Step:
    """Return one Step doing ``steps`` in order (undone in the reverse order)."""
    done = [s for s in steps if s.commands]
    return Step(
        "; ".join(s.what for s in done),
        tuple(command for s in done for command in s.commands),
        tuple(command for s in reversed(done) for command in s.undo),
    )

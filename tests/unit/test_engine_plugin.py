"""An engine added by another package, as one module: plan and apply drive it with nothing else
changed. The toy engine lives in a temporary package made installed by its ``dist-info`` (an
entry point in the group ``allmende.engines``); the host is an in-memory one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from allmende import engines
from allmende.actions.apply import Outcome, plan_and_apply
from allmende.actions.plan import Seams
from allmende.connectors.base import Ran
from allmende.errors import ApplyFailed, InventoryError
from allmende.inventory.inventory import Inventory
from allmende.inventory.load import load
from allmende.plan.changes import Plan
from allmende.render.output import Rendered
from tests.engine_package import installed
from tests.memory import MemoryHost

TOY = '''
    """A toy engine: ``toyctl`` starts and stops a service from its ``toy.conf``."""

    from allmende.engines.base import Engine, Running


    class Toy(Engine):
        name = "toy"
        project_file = "toy.conf"
        runtimes = ("docker",)

        def up(self, site, service, secrets=()):
            return (("toyctl", "start", service, site.real(self.project(service)), *secrets),)

        def down(self, site, service):
            return (("toyctl", "stop", service),)

        def observe(self, site):
            return ("toyctl", "list")

        def parse(self, site, output):
            return {name: Running({"app": "running"}) for name in output.decode().split()}


    ENGINE = Toy()
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install the toy engine package for the test."""
    with installed(tmp_path, monkeypatch, "toy", TOY):
        yield


def write_inventory(root: Path, engine: str) -> Path:
    (root / "hosts").mkdir(parents=True)
    (root / "services").mkdir()
    (root / "allmende.yaml").write_text("name: toybox\n")
    (root / "hosts" / "box.yaml").write_text(f"description: The box\nengine: {engine}\n")
    (root / "services" / "notes.yaml").write_text(
        "description: Shared notes\nhost: box\n"
        "components:\n  app: {image: 'notes:1.2.3'}\n"
        "monitor: []\n"
    )
    return root


class Box:
    """The in-memory host ``box``, whose ``toyctl`` says what it runs."""

    def __init__(self) -> None:
        self.host = MemoryHost("box")
        self.running: set[str] = set()
        #: A project file holding this does not start.
        self.broken = b"broken"
        self.host.answer(["toyctl", "list"], self.list)
        self.host.answer(["toyctl", "start"], self.start)
        self.host.answer(["toyctl", "stop"], self.stop)

    def list(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        return Ran(0, " ".join(sorted(self.running)).encode(), b"")

    def start(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        if self.broken in self.host.files[command[3]][0]:
            return Ran(1, b"", b"toyctl: notes: no such image")
        self.running.add(command[2])
        return Ran(0, b"", b"")

    def stop(self, command: tuple[str, ...], input: bytes | None) -> Ran:
        self.running.discard(command[2])
        return Ran(0, b"", b"")


def seams(box: Box, conf: list[bytes]) -> Seams:
    """Render the toy's project file (render knows nothing of the toy) and reach the box."""

    def render(inventory: Inventory) -> dict[str, Rendered]:
        return {"box/srv/notes/toy.conf": Rendered(conf[0], ("services/notes.yaml",))}

    return Seams(render=render, connect=lambda inventory, name, env: box.host)


def apply(root: Path, box: Box, conf: list[bytes], tmp_path: Path) -> tuple[Plan, Outcome]:
    shown: list[Plan] = []
    env = {"ALLMENDE_STATE": str(tmp_path / "state.sqlite"), "USER": "tester"}
    outcome = plan_and_apply(
        root, env, show=shown.append, confirm=lambda plan: True, seams=seams(box, conf)
    )
    return shown[0], outcome


def test_an_engine_from_another_package_is_planned_and_applied(toy: None, tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inventory", "toy")
    box, conf = Box(), [b"port = 8080\n"]

    plan, outcome = apply(root, box, conf, tmp_path)
    assert [(c.kind, c.path) for c in plan.changes] == [("create", "/srv/notes/toy.conf")]
    assert [(a.verb, a.subject, a.commands) for a in plan.actions] == [
        ("up", "notes", (("toyctl", "start", "notes", "/srv/notes/toy.conf"),))
    ]
    assert outcome.ok and outcome.results["box"].done is not None
    assert box.host.text("/srv/notes/toy.conf") == "port = 8080\n"
    assert box.running == {"notes"}

    # Nothing changed and the engine says it runs: nothing to do.
    plan, outcome = apply(root, box, conf, tmp_path)
    assert plan.empty and outcome.status == "nothing to do"

    # Stopped behind allmende's back: the engine's answer brings it up again.
    box.running.clear()
    plan, outcome = apply(root, box, conf, tmp_path)
    assert [(a.verb, a.reason) for a in plan.actions] == [("up", "not running: app missing")]
    assert box.running == {"notes"}

    # A change that does not come up is rolled back, through the same engine.
    conf[0] = b"port = 9090 broken\n"
    plan, outcome = apply(root, box, conf, tmp_path)
    error = outcome.results["box"].error
    assert isinstance(error, ApplyFailed) and error.rolled_back and not error.problems
    assert "box: up notes: `toyctl start notes /srv/notes/toy.conf` failed (exit 1)" in str(error)
    assert "toyctl: notes: no such image" in str(error)
    assert box.host.text("/srv/notes/toy.conf") == "port = 8080\n"
    starts = [c for c in box.host.ran if c[:2] == ("toyctl", "start")]
    assert len(starts) == 4  # first apply, the restart, the failed change, its rollback
    assert box.running == {"notes"}


def test_an_engine_nobody_installed_is_refused_where_it_is_written(tmp_path: Path) -> None:
    engines.engines.cache_clear()
    root = write_inventory(tmp_path / "inventory", "toy")
    with pytest.raises(InventoryError) as caught:
        load(root, {})
    assert str(caught.value.problems[0]) == (
        "hosts/box.yaml:2:9: engine: `toy` is not one of compose, swarm, kubernetes, incus, systemd"
    )

"""What a stream of results means: a check's confirmed state, and when to alert.

A probe that fails is tried again (``retries``) before its result counts, so a result that
reaches a check is confirmed: a check goes ``down`` or ``degraded`` at once. Back ``up`` it
goes only after ``recover`` passes in a row (its first result ever counts at once): that is
the flap damping, a check that flaps stays in one incident.

An incident opens when a check leaves ``up`` and is alerted once; a change of state inside it
(``degraded`` to ``down``) is alerted too; its close is alerted once, as the recovery. Inside
a maintenance window nothing is alerted: a problem still there when the window ends is
alerted then, one that came and went inside it never.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from allmende.inventory.watchspec import Probe
from allmende.state.watchstore import CheckRow

#: How a problem of each kind of probe is named in alerts, by state.
LABELS = {
    ("tls", "degraded"): "certificate expiring",
    ("tls", "down"): "certificate invalid or unreachable",
    ("dns", "down"): "DNS answer wrong",
    ("backup", "down"): "backup late or missing",
}


def label(probe: Probe, state: str) -> str:
    """Return what an alert about ``probe`` in ``state`` calls the problem."""
    return LABELS.get((probe.kind, state), state)


@dataclass(frozen=True)
class Alert:
    """An alert to send: the problem (``recovery`` False) or its recovery, with the label it
    was raised under, since when, and the detail of the result that caused it."""

    probe: Probe
    label: str
    since: float
    detail: str
    recovery: bool = False


@dataclass
class Check:
    """One probe's check: its recorded ``row`` and the passes in a row since it last failed."""

    probe: Probe
    row: CheckRow
    passes: int = 0

    @classmethod
    def new(cls, probe: Probe, now: float) -> Check:
        return cls(probe, CheckRow(probe.id, "unknown", now, "up"))

    def observe(
        self, state: str, detail: str, now: float, recover: int, quiet: bool
    ) -> Alert | None:
        """Take one confirmed result; return the alert to send, if any (``quiet``: inside a
        maintenance window, nothing is sent now)."""
        row = self.row
        if state == "up":
            self.passes += 1
            if row.state != "up" and (row.state == "unknown" or self.passes >= recover):
                row = replace(row, state="up", since=now, detail=detail)
        else:
            self.passes = 0
            if state != row.state:
                row = replace(row, state=state, since=now, detail=detail)
            else:
                row = replace(row, detail=detail)
        self.row = row
        return None if quiet else self.due(now)

    def due(self, now: float) -> Alert | None:
        """Return the alert the check's state calls for and has not had, and note it sent."""
        row = self.row
        if row.state in ("up", "unknown"):
            if row.alerted == "up" or row.state == "unknown":
                return None
            alert = Alert(self.probe, row.label, row.opened or row.since, row.detail, True)
            self.row = replace(row, alerted="up", label="", opened=None)
            return alert
        if row.alerted == row.state:
            return None
        opened = row.opened if row.opened is not None else row.since
        name = label(self.probe, row.state)
        self.row = replace(row, alerted=row.state, label=name, opened=opened)
        return Alert(self.probe, name, opened, row.detail)

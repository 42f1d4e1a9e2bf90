"""Benchmark: a backup by allmende against plain `borg create` with the same options, side by
side, and a restore drill against a plain `borg extract`.

    .venv/bin/python bench/backup.py [--size-mib N] [--rounds R] [--keep-path]
                                                                  default: 1024 (1 GiB), 7

The data is mixed and made the same every time (a fixed seed): a third incompressible random
bytes in large files, a third text in thousands of small and middling files, a third copies
and near-copies of earlier files (what deduplication finds). Each side gets its own repository
(repokey-blake2, lz4) on this machine and runs first once, then R times again with nothing
changed, the two sides taking turns so that whatever else loads the machine falls on both
alike; the figures are medians. allmende's run is the whole job on this machine (the files
hashed for the file list, special files looked for, named pipes made, the file list and the
manifest read by Borg, Borg's answer read), without pruning; the plain run is the same `borg
create` command line. The drill extracts the archive into a scratch directory and compares
every file's checksum with the file list;
`borg check` before it is timed apart.
Both sides run with the PATH a systemd unit has (``UNIT_PATH``), as the backup timer on a host
runs: a development machine's own PATH may put wrappers before ``python3`` (pyenv's shim costs
more than the program it starts); ``--keep-path`` keeps this process's PATH instead.
Peak memory is the largest resident set of this process (allmende) and of any program it ran
(Borg, the hashing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from allmende.connectors.local import LocalConnector
from allmende.inventory.backupjob import Job
from allmende.operations import backup, borg, drill

PASSPHRASE = b"bench passphrase, not a secret"
#: systemd's PATH for units (``DefaultEnvironment``), which a host's backup timer runs with.
UNIT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORDS = [
    "commons",
    "village",
    "meadow",
    "wiki",
    "pad",
    "calendar",
    "music",
    "archive",
    "hackspace",
    "lan",
    "party",
    "borg",
    "restore",
    "drill",
    "manifest",
    "volume",
    "service",
    "host",
    "repository",
    "append",
    "only",
    "passphrase",
]


def make_data(root: Path, size: int) -> int:
    """Write about ``size`` bytes of mixed data under ``root``; return the number of files."""
    rng = random.Random(20261205)
    third = size // 3
    files = 0
    big = root / "media"
    big.mkdir(parents=True)
    written = 0
    while written < third:
        chunk = min(64 * 2**20, third - written)
        (big / f"blob-{files:03d}.bin").write_bytes(rng.randbytes(chunk))
        written += chunk
        files += 1
    text = root / "docs"
    written = 0
    while written < third:
        folder = text / f"{files // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        length = rng.choice((2_000, 8_000, 40_000, 300_000))
        words = " ".join(rng.choices(WORDS, k=length // 7))
        (folder / f"page-{files:06d}.txt").write_text(words)
        written += len(words)
        files += 1
    copies = root / "copies"
    copies.mkdir()
    sources = sorted(p for p in root.rglob("*") if p.is_file())
    written = 0
    while written < third and sources:
        source = rng.choice(sources)
        data = bytearray(source.read_bytes()[: third - written])
        if data and rng.random() < 0.5:
            data[rng.randrange(len(data))] ^= 0xFF  # a near-copy: one byte changed
        (copies / f"copy-{files:06d}{source.suffix}").write_bytes(bytes(data))
        written += len(data)
        files += 1
    return files


def borg_env(base: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BORG_PASSPHRASE_FD": "0",
        "BORG_BASE_DIR": str(base / "home"),
        "BORG_CACHE_DIR": str(base / "cache"),
        "TZ": "UTC",
    }


def run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run a Borg command with the passphrase on stdin; return its seconds."""
    started = time.perf_counter()
    subprocess.run(argv, input=PASSPHRASE, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


class Plain:
    """Plain Borg: its own repository and files cache, the same `borg create` options."""

    def __init__(self, work: Path, root: Path, job: Job) -> None:
        self.env = borg_env(work / "plain")
        self.work, self.root = work, root
        self.job = Job("bench", "local", str(work / "plain-repo"), "dump", "daily")
        self.paths = [p.lstrip("/") for p in job.paths]
        self.made = 0
        run(["borg", "init", "--encryption=repokey-blake2", self.job.repository], self.env, work)

    def create(self) -> float:
        self.made += 1
        return run(borg.create(self.job, f"bench-{self.made}", self.paths, []), self.env, self.root)

    def extract(self) -> float:
        scratch = self.work / "plain-extract"
        scratch.mkdir()
        try:
            return run(borg.extract(self.job, f"bench-{self.made}"), self.env, scratch)
        finally:
            shutil.rmtree(scratch)


class Allmende:
    """allmende's backup run of the job, and its verify (check, then the drill)."""

    def __init__(self, work: Path, root: Path, job: Job) -> None:
        self.host = LocalConnector("local", str(root))
        self.job = job
        env = {**os.environ, **borg.environment(job, self.host.real)}
        run(["borg", "init", "--encryption=repokey-blake2", job.repository], env, work)
        self.last = 0.0

    def create(self) -> float:
        time.sleep(max(0.0, self.last + 1.05 - time.time()))  # archive names are to the second
        started = time.perf_counter()
        asyncio.run(backup.run(self.host, self.job, PASSPHRASE))
        self.last = time.time()
        return time.perf_counter() - started

    def verify(self) -> tuple[float, float, int]:
        """Return the seconds of ``borg check`` and of the drill, and the files drilled."""
        marks: dict[str, float] = {}

        def say(line: str) -> None:
            marks.setdefault(
                "drill" if line.startswith("restore drill") else "check", time.perf_counter()
            )

        started = time.perf_counter()
        found = asyncio.run(drill.verify(self.host, self.job, PASSPHRASE, say))
        ended = time.perf_counter()
        if not found.ok:
            raise SystemExit(f"the drill failed: {found.problems}")
        return marks["drill"] - started, ended - marks["drill"], found.files


def side_by_side(work: Path, root: Path, job: Job, rounds: int) -> dict[str, list[float]]:
    """Time both sides: the first run once each; then ``rounds`` unchanged runs and as many
    extracts and drills, the two sides taking turns so that what else loads the machine
    falls on both alike."""
    theirs, ours = Plain(work, root, job), Allmende(work, root, job)
    figures: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        figures.setdefault(key, []).append(seconds)

    add("plain first", theirs.create())
    add("allmende first", ours.create())
    for number in range(rounds):
        turns = [("plain", theirs.create), ("allmende", ours.create)]
        for side, create in turns if number % 2 == 0 else turns[::-1]:
            add(f"{side} second", create())
    for _ in range(max(1, rounds // 2)):
        add("plain extract", theirs.extract())
        check, drilled, files = ours.verify()
        add("check", check)
        add("allmende drill", drilled)
        add("drilled files", files)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=7, help="unchanged runs per side")
    parser.add_argument("--keep-path", action="store_true", help="not the PATH of a unit")
    options = parser.parse_args()
    if not options.keep_path:
        os.environ["PATH"] = UNIT_PATH
    size = options.size_mib * 2**20
    if shutil.which("borg") is None:
        raise SystemExit("borg is not installed: apt-get install borgbackup")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        root = work / "host"
        files = make_data(root / "srv/bench/data", size)
        job = Job(
            "bench", "local", str(work / "allmende-repo"), "dump", "daily",
            paths=("/srv/bench/data",),
        )  # fmt: skip
        on_disk = sum(p.stat().st_size for p in (root / "srv").rglob("*") if p.is_file())
        for path in (root / "srv").rglob("*"):  # both sides start with the data in memory
            if path.is_file():
                path.read_bytes()
        print(f"data: {on_disk / 2**20:.0f} MiB in {files} files (lz4, repokey-blake2)")
        print(f"borg {shutil.which('borg')}, python3 {shutil.which('python3')}")
        figures = side_by_side(work, root, job, options.rounds)
    mid = {key: statistics.median(values) for key, values in figures.items()}
    print(f"{'':>22} {'plain borg':>11} {'allmende':>9} {'overhead':>9}")
    for label, text in (("first", "first run"), ("second", "second, unchanged")):
        theirs, ours = mid[f"plain {label}"], mid[f"allmende {label}"]
        overhead = (ours - theirs) / theirs * 100
        print(f"{text:>22} {theirs:>10.2f}s {ours:>8.2f}s {overhead:>8.1f}%")
    ratio = mid["allmende drill"] / mid["plain extract"]
    print(
        f"{'restore drill':>22} {mid['plain extract']:>10.2f}s {mid['allmende drill']:>8.2f}s "
        f"{ratio:>8.2f}x  (extract + compare {mid['drilled files']:.0f} files; target < 2x)"
    )
    print(f"{'borg check (verify)':>22} {'':>11} {mid['check']:>8.2f}s")
    spread = ", ".join(
        f"{side} {min(figures[f'{side} second']):.2f}-{max(figures[f'{side} second']):.2f}s"
        for side in ("plain", "allmende")
    )
    turns = statistics.median(
        (ours - theirs) / theirs * 100
        for theirs, ours in zip(figures["plain second"], figures["allmende second"], strict=True)
    )
    print(
        f"medians of {options.rounds} unchanged runs per side, taking turns ({spread}; the "
        f"median of each turn's overhead: {turns:.1f}%), and of "
        f"{max(1, options.rounds // 2)} extracts and drills"
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: allmende {own:.0f} MiB, the programs it ran {children:.0f} MiB")


if __name__ == "__main__":
    main()

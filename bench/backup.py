"""Benchmark: a backup by allmende against plain `borg create` with the same options, side by
side, and a restore drill against a plain `borg extract`.

    .venv/bin/python bench/backup.py [--size-mib N]      default: 1024 (1 GiB)

The data is mixed and made the same every time (a fixed seed): a third incompressible random
bytes in large files, a third text in thousands of small and middling files, a third copies
and near-copies of earlier files (what deduplication finds). Each side gets its own repository
(repokey-blake2, lz4) on this machine and runs twice: first, then again with nothing changed.
allmende's run is the whole job on this machine (the files hashed for the manifest, special
files looked for, named pipes made, Borg's answer read), without pruning; the plain run is the
same `borg create` command line. The drill extracts the archive into a scratch directory and
compares every file's checksum with the manifest; `borg check` before it is timed apart.
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
import subprocess
import tempfile
import time
from pathlib import Path

from allmende.connectors.local import LocalConnector
from allmende.inventory.backupjob import Job
from allmende.operations import backup, borg, drill

PASSPHRASE = b"bench passphrase, not a secret"
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


def plain(work: Path, root: Path, job: Job) -> dict[str, float]:
    """Time plain Borg: init, create twice, extract."""
    env = borg_env(work / "plain")
    repo = str(work / "plain-repo")
    run(["borg", "init", "--encryption=repokey-blake2", repo], env, work)
    plain_job = Job("bench", "local", repo, "dump", "daily")
    paths = [p.lstrip("/") for p in job.paths]
    figures = {}
    for label, name in (("first", "bench-1"), ("second", "bench-2")):
        figures[label] = run(borg.create(plain_job, name, paths, []), env, root)
    scratch = work / "plain-extract"
    scratch.mkdir()
    figures["extract"] = run(borg.extract(plain_job, "bench-2"), env, scratch)
    shutil.rmtree(scratch)
    return figures


def allmende(work: Path, root: Path, job: Job) -> dict[str, float]:
    """Time allmende's backup run twice and its verify (check, then the drill)."""
    host = LocalConnector("local", str(root))
    env = borg.environment(job, host.real)
    repo = job.repository
    run(["borg", "init", "--encryption=repokey-blake2", repo], {**os.environ, **env}, work)
    figures = {}
    for label in ("first", "second"):
        started = time.perf_counter()
        asyncio.run(backup.run(host, job, PASSPHRASE))
        figures[label] = time.perf_counter() - started
        time.sleep(1.1)  # archive names are to the second
    marks: dict[str, float] = {}

    def say(line: str) -> None:
        marks.setdefault(
            "drill" if line.startswith("restore drill") else "check", time.perf_counter()
        )

    started = time.perf_counter()
    found = asyncio.run(drill.verify(host, job, PASSPHRASE, say))
    ended = time.perf_counter()
    if not found.ok:
        raise SystemExit(f"the drill failed: {found.problems}")
    figures["check"] = marks["drill"] - started
    figures["drill"] = ended - marks["drill"]
    figures["drilled_files"] = found.files
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    size = parser.parse_args().size_mib * 2**20
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
        theirs = plain(work, root, job)
        ours = allmende(work, root, job)
    print(f"{'':>22} {'plain borg':>11} {'allmende':>9} {'overhead':>9}")
    for label, text in (("first", "first run"), ("second", "second, unchanged")):
        overhead = (ours[label] - theirs[label]) / theirs[label] * 100
        print(f"{text:>22} {theirs[label]:>10.2f}s {ours[label]:>8.2f}s {overhead:>8.1f}%")
    ratio = ours["drill"] / theirs["extract"]
    print(
        f"{'restore drill':>22} {theirs['extract']:>10.2f}s {ours['drill']:>8.2f}s "
        f"{ratio:>8.2f}x  (extract + compare {ours['drilled_files']:.0f} files; target < 2x)"
    )
    print(f"{'borg check (verify)':>22} {'':>11} {ours['check']:>8.2f}s")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory: allmende {own:.0f} MiB, the programs it ran {children:.0f} MiB")


if __name__ == "__main__":
    main()

"""Healthchecks: ``CMD`` and ``CMD-SHELL`` tests become a ``command``; a plain ``curl -f`` or
``wget`` of a local URL becomes an ``http`` check on the component's port.

Compose's timing defaults are kept (a missing ``timeout`` is Compose's 30s and a missing
``start_period`` its 0s, written out because the inventory's defaults are 5s and 60s).
``disable`` and ``test: [NONE]`` cannot be said in the inventory: the whole ``healthcheck`` is
then kept verbatim. ``start_interval`` and timings the inventory cannot hold (``0s``) are kept
alone under ``x-compose.healthcheck``, merged into the check rendered from the typed one.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from allmende.importers.context import ComponentContext
from allmende.importers.mounts import port_for

_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_LOCAL_URL = re.compile(
    r"^(?:http://)?(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::(?P<port>[0-9]+))?"
    r"(?P<path>/\S*)?$"
)
_OR_FAIL = re.compile(r"\s*\|\|\s*(?:exit\s+1|false)\s*$")
_CURL_VALUE = {"-o", "--output", "-m", "--max-time", "--connect-timeout", "--noproxy", "--retry"}
_CURL_PLAIN = {"--fail", "--silent", "--show-error", "--location", "--insecure", "--head"}
_WGET_PLAIN = {"-q", "--quiet", "--spider", "-nv", "--no-verbose", "--no-check-certificate"}
_WGET_VALUE = {"-O", "--output-document", "-t", "--tries", "-T", "--timeout"}


def duration(value: Any) -> str | None:
    """Given a Compose (Go) duration such as ``1m30s``, return it for the inventory (``90s``).

    Return None if it is not a duration or is finer than a millisecond.
    """
    text = str(value).strip()
    if not text or _PART.sub("", text):
        return None
    total = sum(float(n) * _MS[unit] for n, unit in _PART.findall(text))
    if total != int(total) or total <= 0:
        return "0s" if total == 0 else None
    ms = int(total)
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return None


def _url(argument: str) -> tuple[int, str] | None:
    match = _LOCAL_URL.match(argument)
    if match is None:
        return None
    return int(match.group("port") or 80), match.group("path") or "/"


def _curl(args: list[str]) -> tuple[int, str] | None:
    fail = False
    url = None
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _CURL_VALUE:
            skip = True
        elif arg in _CURL_PLAIN or arg.startswith(("--max-time=", "--connect-timeout=")):
            fail = fail or arg == "--fail"
        elif re.fullmatch(r"-[fsSLkI]+", arg):
            fail = fail or "f" in arg
        elif url is None and not arg.startswith("-"):
            url = _url(arg)
            if url is None:
                return None
        else:
            return None
    return url if fail else None


def _wget(args: list[str]) -> tuple[int, str] | None:
    url = None
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _WGET_VALUE:
            skip = True
        elif arg in _WGET_PLAIN or re.fullmatch(r"--(tries|timeout|output-document)=\S+", arg):
            continue
        elif re.fullmatch(r"-q?O-?|-qO", arg):
            skip = not arg.endswith("-")
        elif url is None and not arg.startswith("-"):
            url = _url(arg)
            if url is None:
                return None
        else:
            return None
    return url


def http_probe(words: list[str] | None, shell: str | None) -> tuple[int, str] | None:
    """Given a test as words (``CMD``) or a shell line (``CMD-SHELL``), return (port, path)
    if it only fetches a local HTTP URL and fails on an error status, else None."""
    if shell is not None:
        line = _OR_FAIL.sub("", shell)
        if re.search(r"[|&;<>$`()\\]", line):
            return None
        try:
            words = shlex.split(line)
        except ValueError:
            return None
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "curl":
        return _curl(words[1:])
    if program == "wget":
        return _wget(words[1:])
    return None


def _test(ctx: ComponentContext, test: Any) -> tuple[list[str] | None, str | None] | None:
    """Return (words, shell) of a healthcheck test, or None (and a problem) if unreadable."""
    if isinstance(test, str):
        return None, test
    if isinstance(test, list) and test and all(isinstance(t, str | int | float) for t in test):
        kind, rest = str(test[0]), [str(t) for t in test[1:]]
        if kind == "CMD" and rest:
            return rest, None
        if kind == "CMD-SHELL" and rest:
            return None, " ".join(rest)
    ctx.problem(("healthcheck", "test"), "expected [CMD, ...], [CMD-SHELL, ...] or a command line")
    return None


def map_healthcheck(ctx: ComponentContext) -> None:
    """Map the compose ``healthcheck`` into the component (see the module's text)."""
    check = ctx.compose.get("healthcheck")
    if check is None:
        return
    if not isinstance(check, dict):
        ctx.problem(("healthcheck",), "expected a mapping")
        return
    test = check.get("test")
    if check.get("disable") or test is None or test == ["NONE"]:
        ctx.keep("healthcheck", check, "disables or only retimes the image's healthcheck")
        return
    read = _test(ctx, test)
    if read is None:
        return
    words, shell = read
    typed = {"test", "interval", "timeout", "retries", "start_period"}
    rest = {k: v for k, v in check.items() if k not in typed}
    mapped: dict[str, Any] = {}
    probe = http_probe(words, shell)
    if probe is not None:
        mapped["http"] = probe[1]
        mapped["port"] = port_for(ctx, probe[0])
        ctx.differ(
            "healthcheck",
            f"asks http://127.0.0.1:{probe[0]}{probe[1]} with wget, else curl (an HTTP check "
            "of the inventory), where the original ran its own command",
        )
    elif words is not None:
        mapped["command"] = words
    else:
        mapped["command"] = ["/bin/sh", "-c", shell]
    for key, default, ours in (("interval", "30s", "30s"), ("timeout", "30s", "5s")):
        value = duration(check.get(key, default))
        if value is None or value == "0s":
            rest[key] = check[key]
        elif value != ours:
            mapped[key] = value
    start = duration(check.get("start_period", "0s"))
    if start is None:
        rest["start_period"] = check["start_period"]
    elif start != "60s":
        mapped["start_period"] = start
    retries = check.get("retries", 3)
    if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 1:
        if retries != 3:
            mapped["retries"] = retries
    else:
        rest["retries"] = retries
    ctx.component["healthcheck"] = mapped
    if rest:  # merged key by key into the check rendered from the typed one
        ctx.keep("healthcheck", rest, "start_interval and timings the inventory cannot say")

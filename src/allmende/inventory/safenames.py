"""Names that become paths, project names and command arguments: what none of them may be.

Whatever else a name's form (``names.format`` holds the house style), a host, service, zone,
component, volume, port, person or database name ends up in ``/srv/<service>/<volume>``, in
``docker compose -p <service>``, in container names and in rendered files. So at load time a
name is refused when it is empty, ``.`` or ``..``, holds a ``/``, starts with ``-`` (a program
would read it as an option) or holds a control or formatting character (a line break, an ESC
sequence, a right-to-left override).
"""

from __future__ import annotations

import unicodedata

#: The longest name any file system takes as one path component.
LONGEST = 255


def unsafe_character(text: str) -> str | None:
    """Return the first control or invisible formatting character in ``text`` (``\\n``,
    ``\\x1b``, U+202E ...), or None."""
    for character in text:
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp"):
            return character
    return None


def shown(text: str) -> str:
    """Return ``text`` quoted for a message: as it is when printable, else escaped."""
    if text.isprintable():
        return f"`{text}`"
    return repr(text)


def why_unsafe(name: str) -> str | None:
    """Return why ``name`` cannot be a host, service, component, volume, port, person,
    database or zone name (see the module docstring), or None if it can."""
    if not name:
        return "a name must not be empty"
    if name in (".", ".."):
        return (
            f"`{name}` cannot be a name: as a path it would mean a directory itself or its parent"
        )
    if "/" in name:
        return f"{shown(name)} contains `/`: a name must be one path component"
    character = unsafe_character(name)
    if character is not None:
        return f"{shown(name)} contains the control character {character!r}"
    if name.startswith("-"):
        return f"{shown(name)} starts with `-`: a program would read it as an option"
    if len(name.encode()) > LONGEST:
        return f"a name is at most {LONGEST} bytes long, this one has {len(name.encode())}"
    return None

"""The secret store (allmende.inventory.secrets) and `allmende secret` (allmende.cli.secret).

Every key lives under tmp_path: each test passes its own env mapping (or CliRunner env), so the
real home directory is never read or written.
"""

from __future__ import annotations

import io
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pyrage import x25519

from allmende.cli import secret as cli
from allmende.cli.main import main
from allmende.errors import SecretError
from allmende.inventory.secrets import (
    NAME_MAX,
    SecretStore,
    check_name,
    create_key,
    key_location,
)

VALUE = b"correct horse battery staple"
BINARY = bytes(range(256)) * 3


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    root = tmp_path / "inventory"
    root.mkdir()
    (root / "allmende.yaml").write_text("name: test\n")
    return root


def key_env(tmp_path: Path, who: str = "alex") -> dict[str, str]:
    """Return an environment whose key file (not yet created) is tmp_path/<who>/age.key."""
    home = tmp_path / f"home-{who}"
    return {"HOME": str(home), "ALLMENDE_AGE_KEY": str(tmp_path / who / "age.key")}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return key_env(tmp_path)


@pytest.fixture
def store(inventory: Path, env: dict[str, str]) -> SecretStore:
    create_key(inventory, env)
    return SecretStore(inventory, env)


def files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


# Names


@pytest.mark.parametrize(
    "name", ["a", "0", "music/django-secret", "a.b_c-d/0/x.y", "x" * NAME_MAX, "a/b.age"]
)
def test_valid_names(name: str) -> None:
    assert check_name(name) is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "must not be empty"),
        ("x" * (NAME_MAX + 1), "at most 200"),
        ("Music/secret", "uppercase"),
        ("music secret", "' '"),
        ("music\n", "'\\n'"),
        ("musik/geheimnis-ä", "'ä'"),
        ("/music", "empty part"),
        ("music/", "empty part"),
        ("music//x", "empty part"),
        ("../x", "must start with a lowercase letter or digit"),
        ("music/.hidden", "must start with a lowercase letter or digit"),
        ("-x", "must start with a lowercase letter or digit"),
    ],
)
def test_invalid_names_say_why(store: SecretStore, name: str, says: str) -> None:
    message = check_name(name)
    assert message is not None
    assert says in message
    with pytest.raises(SecretError, match="secret name"):
        store.set(name, VALUE)
    with pytest.raises(SecretError, match="secret name"):
        store.get(name)


# Round trips, names, removal


@pytest.mark.parametrize("value", [VALUE, b"two\nlines\n", "grüße 🔑".encode(), BINARY, b""])
def test_set_then_get_returns_the_value_unchanged(store: SecretStore, value: bytes) -> None:
    store.set("music/django-secret", value)
    assert store.get("music/django-secret") == value


def test_ciphertext_on_disk_is_age_and_holds_no_plaintext(store: SecretStore) -> None:
    store.set("music/django-secret", VALUE)
    data = (store.directory / "music" / "django-secret.age").read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    assert VALUE not in data
    assert b"horse" not in data


def test_set_replaces_the_value(store: SecretStore) -> None:
    store.set("wiki/admin", b"old")
    store.set("wiki/admin", b"new")
    assert store.get("wiki/admin") == b"new"


def test_names_are_sorted_nested_and_ignore_other_files(store: SecretStore) -> None:
    for name in ["wiki/admin", "music/django-secret", "music/db/password", "smtp"]:
        store.set(name, VALUE)
    (store.directory / "README.md").write_text("not a secret")
    (store.directory / "music" / ".django-secret.age.x1.tmp").write_bytes(b"left over")
    (store.directory / "Upper.age").write_bytes(b"not a valid name")
    expected = ["music/db/password", "music/django-secret", "smtp", "wiki/admin"]
    assert store.names() == expected
    assert store.exists("smtp")
    assert not store.exists("music")


def test_names_need_no_key_and_no_directory(inventory: Path) -> None:
    assert SecretStore(inventory, {}).names() == []
    for i in range(2000):
        path = inventory / "secrets" / f"s{i % 20}" / f"v{i}.age"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    names = SecretStore(inventory, {}).names()
    assert len(names) == 2000
    assert names == sorted(names)


def test_remove_deletes_the_value_and_empty_directories(store: SecretStore) -> None:
    store.set("music/db/password", VALUE)
    store.set("music/django-secret", VALUE)
    store.remove("music/db/password")
    assert store.names() == ["music/django-secret"]
    assert not (store.directory / "music" / "db").exists()
    store.remove("music/django-secret")
    assert store.names() == []
    assert not (store.directory / "music").exists()
    assert store.directory.is_dir()


def test_unknown_names_suggest_close_ones(store: SecretStore) -> None:
    store.set("music/django-secret", VALUE)
    with pytest.raises(SecretError, match=r"no secret music/djang0-secret: did you mean music/dj"):
        store.get("music/djang0-secret")
    with pytest.raises(SecretError, match=r"`allmende secret list -C .*` shows"):
        store.remove("entirely/else")


# Keys


def test_key_location_prefers_variable_then_xdg_then_home(inventory: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert key_location(inventory, env).path == tmp_path / "xdg" / "allmende" / "age.key"
    env["ALLMENDE_AGE_KEY"] = "~/keys/mine.key"
    assert key_location(inventory, env).path == home / "keys" / "mine.key"
    default = key_location(inventory, {"HOME": str(home), "XDG_CONFIG_HOME": "relative"})
    assert default.path == home / ".config" / "allmende" / "age.key"


def test_create_key_writes_a_private_key_and_a_recipient(inventory: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    key = create_key(inventory, env, comment="alex (laptop)")
    assert key.path == tmp_path / "home" / ".config" / "allmende" / "age.key"
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.path.parent.parent.stat().st_mode) == 0o700
    lines = key.path.read_text().splitlines()
    assert lines[1] == f"# public key: {key.public_key}"
    assert str(x25519.Identity.from_str(lines[2]).to_public()) == key.public_key
    recipients = (inventory / "secrets" / "recipients.txt").read_text()
    assert f"# alex (laptop)\n{key.public_key}\n" in recipients
    assert SecretStore(inventory, env).recipients() == [key.public_key]
    assert files_under(key.path.parent) == ["age.key"]


def test_create_key_never_overwrites(store: SecretStore, env: dict[str, str]) -> None:
    path = Path(env["ALLMENDE_AGE_KEY"])
    before = path.read_bytes()
    public = store.recipients()[0]
    with pytest.raises(SecretError, match="already exists") as caught:
        create_key(store.root, env)
    assert f"allmende secret recipient add {public}" in str(caught.value)
    assert path.read_bytes() == before
    assert "AGE-SECRET-KEY" not in str(caught.value)


def test_key_inside_the_inventory_is_refused(inventory: Path, tmp_path: Path) -> None:
    inside = {"ALLMENDE_AGE_KEY": str(inventory / "keys" / "age.key")}
    with pytest.raises(SecretError, match="inside the inventory"):
        create_key(inventory, inside)
    assert not (inventory / "keys").exists()
    link = tmp_path / "config"
    link.symlink_to(inventory)
    with pytest.raises(SecretError, match="inside the inventory"):
        SecretStore(inventory, {"XDG_CONFIG_HOME": str(link)}).key_location()


def test_key_inside_the_inventory_is_refused_when_reading(store: SecretStore) -> None:
    store.set("wiki/admin", VALUE)
    moved = store.root / "age.key"
    moved.write_bytes(Path(store.key_location().path).read_bytes())
    with pytest.raises(SecretError, match="inside the inventory"):
        SecretStore(store.root, {"ALLMENDE_AGE_KEY": str(moved)}).get("wiki/admin")


def test_missing_key_file_says_where_and_how_to_create_one(
    store: SecretStore, tmp_path: Path
) -> None:
    store.set("wiki/admin", VALUE)
    nowhere = tmp_path / "nowhere" / "age.key"
    with pytest.raises(SecretError) as caught:
        SecretStore(store.root, {"ALLMENDE_AGE_KEY": str(nowhere)}).get("wiki/admin")
    message = str(caught.value)
    assert str(nowhere) in message
    assert "ALLMENDE_AGE_KEY" in message
    assert "allmende secret init" in message


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"# only a comment\n", "holds no age private key"),
        (b"AGE-SECRET-KEY-1QQQQ\n", ":1: this age private key is damaged"),
        (b"# created\n-----BEGIN OPENSSH PRIVATE KEY-----\n", ":2: not an age private key"),
        (b"\xff\xfe", "not text"),
        (b"age-encryption.org/v1\n-> scrypt", "passphrase"),
    ],
)
def test_unusable_key_files(store: SecretStore, content: bytes, says: str) -> None:
    store.set("wiki/admin", VALUE)
    store.key_location().path.write_bytes(content)
    with pytest.raises(SecretError, match=says) as caught:
        store.get("wiki/admin")
    assert "QQQQ" not in str(caught.value)


def test_unreadable_key_file(store: SecretStore) -> None:
    store.set("wiki/admin", VALUE)
    path = store.key_location().path
    path.unlink()
    path.mkdir()
    with pytest.raises(SecretError, match=re.escape(f"cannot read the age key file {path}")):
        store.get("wiki/admin")


# Recipients


def test_each_of_two_recipients_can_decrypt(
    store: SecretStore, inventory: Path, tmp_path: Path
) -> None:
    sam = key_env(tmp_path, "sam")
    create_key(inventory, sam, comment="sam")
    store.set("wiki/admin", VALUE)
    assert store.get("wiki/admin") == VALUE
    assert SecretStore(inventory, sam).get("wiki/admin") == VALUE


def test_a_key_added_later_is_told_to_have_the_value_set_again(
    store: SecretStore, inventory: Path, tmp_path: Path
) -> None:
    store.set("wiki/admin", VALUE)
    sam = key_env(tmp_path, "sam")
    create_key(inventory, sam)
    with pytest.raises(SecretError, match="probably added after wiki/admin was last set"):
        SecretStore(inventory, sam).get("wiki/admin")
    store.set("wiki/admin", store.get("wiki/admin"))
    assert SecretStore(inventory, sam).get("wiki/admin") == VALUE


def test_a_foreign_key_gets_a_clear_message(
    store: SecretStore, inventory: Path, tmp_path: Path
) -> None:
    store.set("wiki/admin", VALUE)
    stranger = SecretStore(inventory, key_env(tmp_path, "stranger"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    create_key(elsewhere, key_env(tmp_path, "stranger"))
    public = SecretStore(elsewhere).recipients()[0]
    with pytest.raises(SecretError) as caught:
        stranger.get("wiki/admin")
    message = str(caught.value)
    assert message.startswith("cannot decrypt wiki/admin: it was not encrypted to your key")
    assert f"`allmende secret recipient add {public} -C " in message


def test_recipients_file_allows_comments_and_rejects_bad_lines(store: SecretStore) -> None:
    public = store.recipients()[0]
    store.recipients_file.write_text(f"# alex\n\n  {public.upper()}  \n# sam\n{public}\n")
    assert store.recipients() == [public]
    store.recipients_file.write_text(f"{public}\nssh-ed25519 AAAA sam@laptop\n")
    with pytest.raises(SecretError, match=r"secrets/recipients.txt:2: not an age public key"):
        store.set("wiki/admin", VALUE)


def test_add_recipient_validates_and_ignores_duplicates(store: SecretStore) -> None:
    other = str(x25519.Identity.generate().to_public())
    assert store.add_recipient(other.upper(), comment="sam") is True
    assert store.add_recipient(other) is False
    assert store.recipients()[1] == other
    for bad in ["age1notakey", "ssh-ed25519 AAAA", ""]:
        with pytest.raises(SecretError, match="public key"):
            store.add_recipient(bad)
    private = str(x25519.Identity.generate())
    with pytest.raises(SecretError, match="that is a private key") as caught:
        store.add_recipient(private)
    assert private not in str(caught.value)
    assert private not in store.recipients_file.read_text()


def test_set_without_recipients_says_what_to_do(inventory: Path, env: dict[str, str]) -> None:
    store = SecretStore(inventory, env)
    with pytest.raises(SecretError, match=r"recipients.txt does not exist.*allmende secret init"):
        store.set("wiki/admin", VALUE)
    store.directory.mkdir()
    store.recipients_file.write_text("# nobody yet\n")
    with pytest.raises(SecretError, match=r"recipients\.txt is empty"):
        store.set("wiki/admin", VALUE)
    assert store.names() == []


# Damage and atomicity


def test_damaged_values_are_reported(store: SecretStore) -> None:
    store.set("wiki/admin", VALUE)
    path = store.path("wiki/admin")
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SecretError, match=r"secrets/wiki/admin.age is damaged"):
        store.get("wiki/admin")
    path.write_bytes(b"plain text, never encrypted")
    with pytest.raises(SecretError, match="damaged or not age-encrypted"):
        store.get("wiki/admin")


def test_set_leaves_no_temporary_files(store: SecretStore) -> None:
    store.set("music/django-secret", VALUE)
    store.set("music/django-secret", b"again")
    assert files_under(store.directory) == [
        ".lock",
        "music",
        "music/django-secret.age",
        "recipients.txt",
    ]


def test_failing_encryption_keeps_the_old_value(store: SecretStore) -> None:
    store.set("wiki/admin", b"old")
    recipients = store.recipients_file.read_text()
    store.recipients_file.write_text("age1damaged\n")
    with pytest.raises(SecretError, match=r"recipients\.txt:1"):
        store.set("wiki/admin", b"new")
    store.recipients_file.write_text(recipients)
    assert store.get("wiki/admin") == b"old"


def test_failing_write_keeps_the_old_value(
    store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("wiki/admin", b"old")
    before = files_under(store.directory)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(SecretError, match=r"cannot write secrets/wiki/admin\.age: No space left"):
        store.set("wiki/admin", b"new")
    monkeypatch.undo()
    assert files_under(store.directory) == before
    assert store.get("wiki/admin") == b"old"


def test_values_stay_out_of_messages_and_reprs(store: SecretStore) -> None:
    store.set("wiki/admin", VALUE)
    assert VALUE.decode() not in repr(store)
    assert store.key_location().path.read_text() not in repr(store)
    assert "ALLMENDE_AGE_KEY" not in repr(store)
    store.path("wiki/admin").write_bytes(b"garbage")
    with pytest.raises(SecretError) as caught:
        store.get("wiki/admin")
    assert VALUE.decode() not in str(caught.value)


# Command line


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    env = key_env(tmp_path)
    return CliRunner(env={**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")})


def run(runner: CliRunner, inventory: Path, *args: str, stdin: bytes | None = None) -> Result:
    return runner.invoke(cli.secret, [*args, "--inventory", str(inventory)], input=stdin)


def failure(result: Result) -> str:
    """Return what a failed command shows the user, asserting it failed with a SecretError."""
    assert isinstance(result.exception, SecretError), result.output
    return result.output + str(result.exception)


def test_cli_round_trip(runner: CliRunner, inventory: Path, tmp_path: Path) -> None:
    result = run(runner, inventory, "init", "--comment", "alex")
    assert result.exit_code == 0, result.output
    assert f"Created your private age key at {tmp_path / 'alex' / 'age.key'}." in result.stdout

    result = run(runner, inventory, "set", "music/django-secret", stdin=VALUE)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Stored music/django-secret, encrypted to 1 recipient.\n"
    assert VALUE.decode() not in result.output

    result = run(runner, inventory, "get", "music/django-secret")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == VALUE

    assert run(runner, inventory, "list").stdout == "music/django-secret\n"
    assert run(runner, inventory, "rm", "music/django-secret").stdout == (
        "Removed music/django-secret.\n"
    )
    assert run(runner, inventory, "list").stdout == ""


def test_cli_keeps_binary_and_newlines_exactly(runner: CliRunner, inventory: Path) -> None:
    run(runner, inventory, "init")
    for value in [BINARY, b"ends with newline\n", b"no newline"]:
        assert run(runner, inventory, "set", "blob", stdin=value).exit_code == 0
        assert run(runner, inventory, "get", "blob").stdout_bytes == value


def test_cli_set_from_file(runner: CliRunner, inventory: Path, tmp_path: Path) -> None:
    run(runner, inventory, "init")
    source = tmp_path / "tls.key"
    source.write_bytes(BINARY)
    assert run(runner, inventory, "set", "tls/key", "--from-file", str(source)).exit_code == 0
    assert run(runner, inventory, "get", "tls/key").stdout_bytes == BINARY


def test_cli_set_asks_twice_without_echo_on_a_terminal(
    runner: CliRunner, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(runner, inventory, "init")
    monkeypatch.setattr(cli, "_stdin_is_terminal", lambda: True)
    result = run(runner, inventory, "set", "wiki/admin", stdin=b"typed secret\ntyped secret\n")
    assert result.exit_code == 0, result.output
    assert "typed secret" not in result.output
    assert "Repeat for confirmation" in result.stderr
    assert run(runner, inventory, "get", "wiki/admin").stdout_bytes == b"typed secret"


def test_cli_recipient_add(runner: CliRunner, inventory: Path) -> None:
    public = str(x25519.Identity.generate().to_public())
    result = run(runner, inventory, "recipient", "add", public, "--comment", "sam")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Added {public} to secrets/recipients.txt.\n")
    again = run(runner, inventory, "recipient", "add", public)
    assert again.stdout == f"{public} is already in secrets/recipients.txt.\n"
    assert "# sam\n" in (inventory / "secrets" / "recipients.txt").read_text()


def test_cli_errors_never_show_the_value(
    runner: CliRunner, inventory: Path, tmp_path: Path
) -> None:
    secret = b"do-not-print-me-0451"
    # no recipients yet
    assert secret.decode() not in failure(run(runner, inventory, "set", "a", stdin=secret))
    run(runner, inventory, "init")
    # an invalid name, an empty value
    shown = failure(run(runner, inventory, "set", "Bad Name", stdin=secret))
    assert "uppercase" in shown
    assert secret.decode() not in shown
    assert "value is empty" in failure(run(runner, inventory, "set", "a", stdin=b""))
    # stored, then read with a foreign key, and damaged
    assert run(runner, inventory, "set", "a", stdin=secret).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "allmende.yaml").write_text("name: elsewhere\n")
    stranger = CliRunner(env=key_env(tmp_path, "stranger"))
    assert run(stranger, elsewhere, "init").exit_code == 0
    foreign = failure(run(stranger, inventory, "get", "a"))
    assert "was not encrypted to your key" in foreign
    assert secret.decode() not in foreign
    path = inventory / "secrets" / "a.age"
    path.write_bytes(path.read_bytes()[:-4])
    damaged = failure(run(runner, inventory, "get", "a"))
    assert "damaged" in damaged
    assert secret.decode() not in damaged


def test_cli_refuses_a_directory_that_is_no_inventory(runner: CliRunner, tmp_path: Path) -> None:
    assert "is not an inventory" in failure(run(runner, tmp_path, "list"))


def test_cli_names_an_inventory_it_cannot_read(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "is_file", denied)
    assert f"cannot read {tmp_path}: Permission denied" in failure(run(runner, tmp_path, "list"))


def test_cli_says_when_the_value_cannot_be_printed(
    runner: CliRunner, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(runner, inventory, "init")
    assert run(runner, inventory, "set", "a", stdin=b"value").exit_code == 0

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.click, "get_binary_stream", lambda name: Full())
    shown = failure(run(runner, inventory, "get", "a"))
    assert "cannot write the value of a: No space left on device" in shown


def test_main_reports_a_value_file_it_cannot_read(
    runner: CliRunner,
    inventory: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(runner, inventory, "init")
    source = tmp_path / "value"
    source.write_bytes(b"x")
    read_bytes = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self == source:
            raise OSError(5, "Input/output error")
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    args = ["secret", "set", "a", "--from-file", str(source), "--inventory", str(inventory)]
    assert main(args) == 2
    assert capsys.readouterr().err == f"cannot read {source}: Input/output error\n"


# Hostile and careless use


def test_a_key_file_others_can_read_is_refused(store: SecretStore) -> None:
    store.set("wiki/admin", VALUE)
    path = store.key_location().path
    path.chmod(0o644)
    with pytest.raises(SecretError) as caught:
        store.get("wiki/admin")
    assert str(caught.value) == (
        f"the age key file {path} can be read by others (mode 0644): run `chmod 600 {path}`; "
        "whoever could read it may have a copy, so think about a new key"
    )
    path.chmod(0o600)
    assert store.get("wiki/admin") == VALUE


def test_members_adding_recipients_at_once_lose_none(store: SecretStore) -> None:
    keys = [str(x25519.Identity.generate().to_public()) for _ in range(24)]
    stores = [SecretStore(store.root, {}) for _ in keys]
    with ThreadPoolExecutor(max_workers=12) as pool:
        added = list(
            pool.map(lambda pair: pair[0].add_recipient(pair[1]), zip(stores, keys, strict=True))
        )
    assert all(added)
    assert set(keys) <= set(store.recipients())
    assert len(store.recipients()) == len(keys) + 1
    assert files_under(store.directory) == [".lock", "recipients.txt"]


def test_set_warns_when_your_own_key_is_no_recipient(
    runner: CliRunner, inventory: Path, tmp_path: Path
) -> None:
    assert run(runner, inventory, "init").exit_code == 0
    recipients = inventory / "secrets" / "recipients.txt"
    other = str(x25519.Identity.generate().to_public())
    recipients.write_text(f"{other}\n")
    result = run(runner, inventory, "set", "wiki/admin", stdin=VALUE)
    assert result.exit_code == 0, result.output
    own = SecretStore(inventory, key_env(tmp_path)).own_public_key()
    assert result.stderr == (
        f"warning: your key {own} is not a recipient (not in secrets/recipients.txt): you "
        "cannot read wiki/admin back, nor plan or apply what uses it\n"
    )
    recipients.write_text(f"{other}\n{own}\n")
    assert run(runner, inventory, "set", "wiki/admin", stdin=VALUE).stderr == ""

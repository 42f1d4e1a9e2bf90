"""The paths on hosts are a contract with every host already set up: they change only on
purpose."""

from __future__ import annotations

from allmende.inventory import hostpaths


def test_a_service_keeps_everything_under_its_directory() -> None:
    assert hostpaths.project_file("wiki", "compose") == "/srv/wiki/compose.yaml"
    assert hostpaths.project_file("wiki", "swarm") == "/srv/wiki/stack.yaml"
    assert hostpaths.project_file("wiki", "kubernetes") == "/srv/wiki/kubernetes.yaml"
    assert hostpaths.volume_dir("wiki", "images") == "/srv/wiki/images"
    assert hostpaths.secret_file("wiki", "wiki-db") == "/srv/wiki/secrets/wiki-db"
    assert hostpaths.kubernetes_secrets("wiki") == "/srv/wiki/secrets/kubernetes.yaml"
    assert hostpaths.dump_file("wiki", "wiki", "pgdump") == "/srv/wiki/dumps/wiki.pgdump"


def test_the_service_of_a_path() -> None:
    assert hostpaths.service_of("/srv/wiki/compose.yaml") == "wiki"
    assert hostpaths.service_of("/srv/wiki/secrets/db") == "wiki"
    assert hostpaths.service_of("/srv/wiki") is None
    assert hostpaths.service_of("/etc/haproxy/haproxy.cfg") is None


def test_haproxy_systemd_and_allmende_paths() -> None:
    assert hostpaths.PROXY_FILES == (
        "/etc/haproxy/haproxy.cfg",
        "/etc/haproxy/certs.list",
        "/etc/haproxy/errors/allmende-503.http",
    )
    assert hostpaths.certificate("example.org") == "/etc/haproxy/certs/example.org.pem"
    paths = hostpaths.HAPROXY_PATHS
    assert (paths.config, paths.master_socket, paths.pidfile) == (
        "/etc/haproxy/haproxy.cfg",
        "/run/haproxy/master.sock",
        "/run/haproxy/haproxy.pid",
    )
    assert hostpaths.unit_file("a.timer") == "/etc/systemd/system/a.timer"
    assert hostpaths.HAPROXY_DROP_IN == "/etc/systemd/system/haproxy.service.d/allmende.conf"
    assert hostpaths.MANIFEST == "/var/lib/allmende/manifest.json"
    assert hostpaths.APPLY_LOCK == "/var/lib/allmende/apply.lock"
    assert hostpaths.MANAGED == (
        "/srv/",
        "/etc/haproxy/",
        "/etc/systemd/system/",
        "/etc/allmende/incus/",
        "/etc/allmende/backup/",
        "/usr/local/lib/allmende/",
        "/etc/allmende/watch.json",
        "/etc/allmende/watch/",
    )
    assert hostpaths.watch_key("far") == "/etc/allmende/watch/far.ssh-key"
    assert hostpaths.WATCH_KNOWN_HOSTS == "/etc/allmende/watch/known_hosts"
    assert hostpaths.WATCH_AUTHORIZED == "/etc/allmende/watch/authorized_keys"


def test_incus_paths() -> None:
    assert hostpaths.project_file("music", "incus") == "/srv/music/incus.yaml"
    assert hostpaths.INCUS_PRESEED == "/etc/allmende/incus/preseed.yaml"
    assert hostpaths.incus_host_file("gateway") == "/etc/allmende/incus/hosts/gateway.yaml"
    assert hostpaths.incus_snapshot_rootfs("default", "music-app", "auto-1") == (
        "/var/lib/incus/storage-pools/default/containers-snapshots/music-app/auto-1/rootfs"
    )

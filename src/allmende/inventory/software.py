"""Software and what a service running it offers: services are named by the latter."""

from __future__ import annotations

#: Software -> what a service running it usually offers.
SOFTWARE = {
    "apache": "website",
    "authentik": "login",
    "bigbluebutton": "meetings",
    "bitwarden": "passwords",
    "caddy": "website",
    "codimd": "pad",
    "conduit": "chat",
    "dendrite": "chat",
    "discourse": "forum",
    "dokuwiki": "wiki",
    "dovecot": "mail",
    "drupal": "website",
    "element": "chat",
    "etherpad": "pad",
    "forgejo": "git",
    "funkwhale": "music",
    "gancio": "calendar",
    "ghost": "blog",
    "gitea": "git",
    "gitlab": "git",
    "grafana": "dashboards",
    "haproxy": "proxy",
    "hedgedoc": "pad",
    "httpd": "website",
    "influxdb": "metrics",
    "jellyfin": "media",
    "jitsi": "video-calls",
    "keycloak": "login",
    "lemmy": "forum",
    "listmonk": "newsletter",
    "mailcow": "mail",
    "mailman": "lists",
    "mariadb": "database",
    "mastodon": "social",
    "mattermost": "chat",
    "mediawiki": "wiki",
    "minio": "storage",
    "mobilizon": "events",
    "mysql": "database",
    "nextcloud": "cloud",
    "nginx": "website",
    "owncloud": "cloud",
    "paperless": "documents",
    "peertube": "video",
    "pgadmin": "database-admin",
    "phpmyadmin": "database-admin",
    "pixelfed": "photos",
    "plex": "media",
    "postfix": "mail",
    "postgres": "database",
    "postgresql": "database",
    "prometheus": "metrics",
    "redis": "cache",
    "rocketchat": "chat",
    "roundcube": "webmail",
    "synapse": "chat",
    "thttpd": "website",
    "traefik": "proxy",
    "uptime-kuma": "status",
    "vaultwarden": "passwords",
    "wordpress": "blog",
    "zammad": "helpdesk",
    "zulip": "chat",
}


def suggestion(name: str) -> str | None:
    """Given a service name, return a name by function if the name is a software's, else None."""
    if name in SOFTWARE:
        return SOFTWARE[name]
    parts = name.split("-")
    for i, part in enumerate(parts):
        if part in SOFTWARE:
            rest = [p for j, p in enumerate(parts) if j != i]
            return "-".join(rest) if rest else SOFTWARE[part]
    return None

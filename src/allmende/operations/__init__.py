"""The recurring jobs that change hosts: backups and restores (and, later, certificates and the
watcher), and the alerts they send."""

"""Apply a plan to the hosts: write files atomically under a per-host lock (``files``, ``lock``)."""

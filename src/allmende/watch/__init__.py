"""The watcher: every route, exposed port, certificate, DNS name and backup of the inventory,
probed by one light asyncio process (``runner``), with results and alerts kept in the state
database (``state.watchstore``)."""

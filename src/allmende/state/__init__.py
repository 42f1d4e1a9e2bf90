"""What allmende remembers between runs: one SQLite file."""

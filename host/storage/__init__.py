"""What lasts: SQLite store, submit queue, sealed token and keys, state, recovery."""

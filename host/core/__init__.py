"""Needed by every layer: errors, values, config, logs, health notes, the retry policy."""

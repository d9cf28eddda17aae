"""Attention-based flattring: the pure engine, its SQL rows, its service thread."""

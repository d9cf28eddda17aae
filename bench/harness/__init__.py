"""Benchmark harness for the Flattr companion host.

Each figure is a function ``(Config, Context) -> FigureResult`` in its own module;
it either measures or raises ``NotAvailable`` naming the missing part, so the
harness runs at every stage of the project. ``bench/run.py`` is the entry point.
"""

"""One module per benchmark figure; each exposes ``KEY``, ``TITLE`` and ``run``."""

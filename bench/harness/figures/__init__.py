"""One module per figure of issue 6; each exposes ``KEY``, ``TITLE`` and ``run``."""

"""The wire, sans I/O: the frame codec, messages and their rules, URL normalisation."""

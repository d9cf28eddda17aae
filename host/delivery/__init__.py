"""Flattrs to the Flattr API: HTTP client and its classification, proxy, submitter."""

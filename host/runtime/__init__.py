"""The running host: the stdio edge, the request service, the caller check."""

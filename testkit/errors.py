"""The exception root of the test kit."""


class FlattrTestingError(Exception):
    """Root of every error the test kit raises itself (browser, host, extension set-up)."""

"""The exception hierarchy of the host: one root, one class per kind of failure.

Messages name the value and the limit, e.g. "frame of 2097152 bytes exceeds limit
of 1048576", so that a log line alone explains what happened.
"""

from __future__ import annotations


class FlattrHostError(Exception):
    """Root of every error the host raises on purpose."""


class ConfigError(FlattrHostError):
    """The configuration (file or environment) holds a value the host cannot use."""


class FrameError(FlattrHostError):
    """The byte stream from the browser cannot be read as native messaging frames."""


class FrameTooLarge(FrameError):
    """A frame's length exceeds the limit for its direction."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds limit of {limit}")
        self.size = size
        self.limit = limit


class TruncatedFrame(FrameError):
    """The stream ended in the middle of a frame."""


class InvalidFrame(FrameError):
    """A complete frame whose payload is not a UTF-8 JSON object."""


class RequestError(FlattrHostError):
    """A request that gets an error reply; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str, request_id: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        #: ``message`` without the refused value (a site, a URL, a type name): what
        #: the log shows above debug, since values may be browsing history.
        self.reason = message if reason is None else reason


class CallerRefused(FlattrHostError):
    """The process was started by something other than an allowed extension."""


class StoreError(FlattrHostError):
    """The data directory or the SQLite store cannot be used."""


class StoreBusy(StoreError):
    """Another process held the store's write lock longer than this connection waits.

    Raised before the transaction began: nothing was changed, the caller may retry.
    """


class TransitionError(FlattrHostError):
    """A state machine was asked for a transition that is not allowed from its state."""


class InstallError(FlattrHostError):
    """Installing or removing a browser manifest failed."""

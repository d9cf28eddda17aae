"""Flattr companion native messaging host.

The browser starts the host over stdio (see ``docs/protocol.md``). The host owns
what must be trusted or must last: the access token (encrypted at rest), the
subscription state and the durable bulk-submit queue.

Importing this package is cheap on purpose: it pulls in nothing but constants.
"""

__version__ = "0.1.0"

#: Version of the wire protocol spoken with the extension (docs/protocol.md).
PROTOCOL_VERSION = 1

#: Native messaging host name, as in the manifests and ``connectNative``.
HOST_NAME = "com.flattr.companion"

"""``python -m flattr_host``: the same as the ``flattr-host`` command."""

import sys

from flattr_host.tools.cli import main

sys.exit(main())

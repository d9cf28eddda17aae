#!/bin/sh
# Written by `flattr-host install` (flattr-companion @VERSION@) for @BROWSER@; re-run install to change it.
# A browser started from a desktop launcher or the macOS Dock passes no shell PATH:
# the interpreter is fixed here by absolute path, and the settings below are the
# ones in force at install time (an environment variable set by the browser wins).
@ENVIRONMENT@
# -S skips site.py and the .pth files (an editable install's import hook alone costs
# ~10 ms); the one-line bootstrap registers the package and site-packages itself.
exec @PYTHON@ -S -c @BOOT@ "$@"

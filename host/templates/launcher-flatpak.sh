#!/bin/sh
# Written by `flattr-host install` (flattr-companion @VERSION@) for @BROWSER@ (Flatpak @APP_ID@); re-run install to change it.
# Inside the Flatpak sandbox the host's Python is not visible, so this runs the
# real launcher outside it. That needs the browser to be allowed to talk to Flatpak:
#   flatpak override --user --talk-name=org.freedesktop.Flatpak @APP_ID@
exec flatpak-spawn --host @HOST_LAUNCHER@ "$@"

@echo off
rem Written by `flattr-host install` (flattr-companion @VERSION@) for @BROWSER@; re-run install to change it.
rem The interpreter is fixed by absolute path; -u keeps stdin and stdout binary
rem (native messaging frames are raw bytes). A variable set by the browser wins.
@ENVIRONMENT@
@PYTHON@ -u -c "import sys; from flattr_host.__main__ import main; sys.exit(main())" %*

"""The ``flattr-host`` command's tools for people: ``install``, ``uninstall``,
``doctor``, ``logs``, ``inspect``, ``status``, ``queue``, ``attention``,
``extension``, ``completion``. A browser's arguments (``chrome-extension://ID/``, or
Firefox's manifest path and add-on id) never reach it: :mod:`flattr_host.__main__`
runs the message loop for those, without loading ``argparse`` or this module.
Errors to the user are one line on stderr and a non-zero exit, no traceback.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~2.5 ms at start-up; the browser path never needs it
    from typing import Any


def main(argv: list[str] | None = None) -> int:
    """Run one tool command (``flattr-host status``, ``install`` ...); return the exit
    status."""
    args = sys.argv[1:] if argv is None else argv
    from flattr_host.core.errors import FlattrHostError

    parser = _parser()
    options = parser.parse_args(args)
    if not hasattr(options, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        result: int = options.func(options)
        return result
    except FlattrHostError as exc:
        sys.stderr.write(f"flattr-host: {exc}\n")
        return 1
    except OSError as exc:  # a folder we cannot write, a missing file, ...
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"flattr-host: {exc.strerror or exc}{where}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import sqlite3

        if isinstance(exc, sqlite3.Error):  # e.g. the store is locked by a stuck process
            from flattr_host.storage.store import is_corruption_error

            hint = ("; it is damaged: the next host start keeps a copy, salvages the "
                    "pending flattrs and starts a fresh store" if is_corruption_error(exc)
                    else "")
            sys.stderr.write(f"flattr-host: the store cannot be used: {exc}{hint}\n")
            return 1
        raise


def _parser() -> Any:
    import argparse

    from flattr_host import __version__

    parser = argparse.ArgumentParser(
        prog="flattr-host",
        description="Flattr companion native messaging host. Browsers start it as "
        "`flattr-host chrome-extension://ID/`; people use the commands below.",
    )
    parser.add_argument("--version", action="version", version=f"flattr-host {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    # -- install / uninstall / doctor / logs / inspect ------------------------------
    browsers = "chrome, chromium, edge, brave, vivaldi, firefox, or all"
    install = sub.add_parser("install", help="write the host manifest for a browser")
    _location_options(install, browsers)
    install.add_argument("--extension-id", action="append", dest="extension_ids",
                         help="allowed extension id (repeatable; default: this project's; "
                              "32 letters a-p for Chromium browsers, an add-on id for Firefox)")
    install.set_defaults(func=_install)

    uninstall = sub.add_parser("uninstall", help="remove what install wrote")
    _location_options(uninstall, browsers)
    uninstall.add_argument("--purge", action="store_true",
                           help="also remove the data directory (token key, store with the "
                                "queued flattrs, logs) and the token's key in the OS keyring")
    uninstall.set_defaults(func=_uninstall)

    doctor = sub.add_parser("doctor", help="check every link from browser to host and API")
    _location_options(doctor, browsers, default=None)
    doctor.add_argument("--extension-id", action="append", dest="extension_ids",
                        help="extension id the browser runs (default: this project's)")
    doctor.add_argument("--timeout", type=float, default=5.0,
                        help="seconds the launcher has to answer hello (default 5)")
    doctor.add_argument("--skip-api", action="store_true", help="do not contact the API")
    doctor.set_defaults(func=_doctor)

    logs = sub.add_parser("logs", help="show the host's log (newest last)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--level", choices=["debug", "info", "warning", "error"],
                      help="only this level and above")
    logs.add_argument("--json", action="store_true", help="raw JSON lines")
    logs.add_argument("-n", "--lines", type=int, help="only the last N records")
    logs.set_defaults(func=_logs)

    inspect = sub.add_parser("inspect", help="live view of the running hosts (FLATTR_INSPECT=1)")
    inspect.add_argument("--json", action="store_true", help="raw JSON events")
    inspect.add_argument("--once", action="store_true",
                         help="print each host's current state and exit")
    inspect.set_defaults(func=_inspect)

    extension = sub.add_parser("extension", help="where the extension this package carries is")
    extension.set_defaults(func=_extension)

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh", "fish"])
    completion.set_defaults(func=_completion)

    status = sub.add_parser("status", help="signed in?, subscription, queue counts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    queue = sub.add_parser("queue", help="inspect and manage the flattr queue")
    qsub = queue.add_subparsers(metavar="ACTION")
    qlist = qsub.add_parser("list", help="list queued items (shows URLs)")
    qlist.add_argument("--failed", action="store_true", help="only failed items")
    qlist.add_argument("--status", choices=["pending", "in_flight", "done", "failed", "expired"])
    qlist.add_argument("--json", action="store_true")
    qlist.set_defaults(func=_queue_list)
    qretry = qsub.add_parser("retry-failed", help="send failed items again")
    qretry.set_defaults(func=_queue_retry)
    qclear = qsub.add_parser("clear", help="delete failed items")
    qclear.add_argument("--failed", action="store_true", required=True)
    qclear.set_defaults(func=_queue_clear)

    # -- attention ------------------------------------------------------------------------
    attention = sub.add_parser("attention", help="attention counters (browsing history)")
    asub = attention.add_subparsers(metavar="ACTION")
    alist = asub.add_parser("list", help="list counted pages (shows URLs) and opted-in sites")
    alist.add_argument("--json", action="store_true", help="machine-readable output")
    alist.set_defaults(func=_attention_list)
    aclear = asub.add_parser("clear", help="delete attention counters (all by default)")
    which = aclear.add_mutually_exclusive_group()
    which.add_argument("--site", help="only the pages of this site (e.g. blog.example)")
    which.add_argument("--url", help="only this page (normalized first)")
    aclear.set_defaults(func=_attention_clear)
    return parser


def _open() -> tuple[Any, Any, Any]:
    import os

    from flattr_host.core import config as config_mod
    from flattr_host.core.logs import Logger
    from flattr_host.storage.parts import open_store

    os.umask(0o077)
    config = config_mod.load()
    log = Logger(config.log_dir, config.log_level, config.log_max_bytes, config.log_backups,
                 component="cli")
    return config, log, open_store(config, log)


def _open_parts() -> tuple[Any, Any]:
    """The configuration, and the store with the parts on it (``storage.parts.build``)."""
    from flattr_host.storage.parts import build

    config, log, store = _open()
    return config, build(config, store, log)


# -- install / uninstall / doctor / logs / inspect handlers ----------------------------

def _location_options(parser: Any, browsers: str, default: str | None = "chromium") -> None:
    from pathlib import Path

    parser.add_argument("--browser", default=default,
                        help=f"{browsers} (default: {default or 'every browser found'})")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--user", dest="scope", action="store_const", const="user",
                       help="this user's folders (default)")
    scope.add_argument("--system", dest="scope", action="store_const", const="system",
                       help="system-wide folders (needs root / administrator)")
    parser.set_defaults(scope="user")
    parser.add_argument("--user-data-dir", type=Path,
                        help="the browser profile's --user-data-dir (Chrome, Chromium, Edge; "
                             "not Windows, where only the registry counts)")
    parser.add_argument("--home", type=Path,
                        help="use DIR as the home folder (tests; Firefox reads DIR/.mozilla)")
    parser.add_argument("--manifest-dir", type=Path, metavar="DIR",
                        help="a browser we do not list (a fork: LibreWolf, Thorium, ...): the "
                             "folder it reads host manifests from; see --family")
    parser.add_argument("--family", choices=["chromium", "firefox"],
                        help="with --manifest-dir: the manifest's kind (default: that of "
                             "--browser, else chromium)")


def _custom(options: Any, plat: Any) -> Any:
    """The --manifest-dir location, or None; --family without it is an error."""
    from flattr_host.core.errors import InstallError
    from flattr_host.tools import doctor

    if options.manifest_dir is None:
        if options.family is not None:
            raise InstallError("--family goes with --manifest-dir")
        return None
    if options.user_data_dir is not None or options.scope == "system":
        raise InstallError("--manifest-dir names the folder itself: it does not go with "
                           "--user-data-dir or --system")
    return doctor.custom_location(options, plat)


def _install(options: Any) -> int:
    import os
    from pathlib import Path

    from flattr_host.core import config as config_mod
    from flattr_host.tools import install

    os.umask(0o022)  # manifests and launchers must be readable by the browser
    config = config_mod.load()
    plat = install.current_platform(options.home)
    custom = _custom(options, plat)
    if custom is not None:
        done = install.install_custom(custom, plat, options.extension_ids, Path(config.home))
    else:
        done = install.install(options.browser, plat, options.scope, options.user_data_dir,
                               options.extension_ids, Path(config.home))
    for item in done:
        verb = "installed" if item.changed else "unchanged"
        print(f"{verb:<10}{item.location.browser:<9}{item.location.describe()}")
        print(f"{'':<19}launcher {item.launcher}")
        shared = install.sharing(item.location, plat)
        if shared:
            what = "registration" if item.location.registry else "folder"
            print(f"{'':<19}(this {what} is shared with {', '.join(shared)})")
        for note in item.notes:
            print(f"note: {note}")
    return 0


def _data_home(config_mod: Any) -> Any:
    """The data directory, even when its config.json is broken (purge must still work)."""
    import os
    from pathlib import Path

    from flattr_host.core.errors import ConfigError

    try:
        return Path(config_mod.load().home)
    except ConfigError:
        raw = os.environ.get("FLATTR_HOST_HOME")
        return Path(os.path.expanduser(raw) if raw else config_mod.default_home())


def _uninstall(options: Any) -> int:

    from flattr_host.core import config as config_mod
    from flattr_host.tools import install

    plat = install.current_platform(options.home)
    custom = _custom(options, plat)
    report = install.uninstall_report(options.browser, plat, options.scope,
                                      options.user_data_dir, custom)
    for path in report.removed:
        print(f"removed {path}")
    for path, why in report.left:
        print(f"left    {path}: {why}")
    if not report.removed and not report.left:
        print("nothing to remove")
    home = _data_home(config_mod)
    if not options.purge:
        state = "stays" if home.exists() else "does not exist"
        print(f"data directory {state}: {home} (`flattr-host uninstall --purge` removes it)")
        return 0
    if _purge_key(home) != 0:
        return 1
    contents = install.data_dir_contents(home)
    if not home.exists():
        print(f"data directory {home} does not exist: nothing to purge")
        return 0
    print(f"purging data directory {home}:")
    for entry, what in contents:
        print(f"  {entry.name}: {what or 'not created by the host (kept)'}")
    purged = install.purge_data_dir(home)
    for path in purged.removed:
        print(f"removed {path}")
    for path, why in purged.left:
        print(f"left    {path}: {why}")
    return 0


def _purge_key(home: Any) -> int:
    """Remove the data directory's keyring entry (the key file goes with the folder).

    A broken ``config.json`` or store does not stop a purge: the default backend is
    assumed, and a keyring that cannot be reached is an error only when the store
    says the key is there.
    """
    import os

    from flattr_host.core import config as config_mod
    from flattr_host.core.errors import ConfigError
    from flattr_host.storage.keys import KeyUnavailable, remove_keyring_entry

    try:
        config = config_mod.load()
        setting, key_home, db_path = config.key_backend, config.home, config.db_path
    except ConfigError as exc:
        print(f"config.json cannot be read ({exc}); assuming key_backend auto")
        setting, key_home, db_path = "auto", str(home), os.path.join(str(home), "host.db")
    if setting == "file":
        print("key_backend is file: no keyring entry to remove")
        return 0
    try:
        backend, removed = remove_keyring_entry(key_home)
    except KeyUnavailable as exc:
        recorded = _recorded_backend(db_path)
        if setting == "keyring" or recorded not in ("file", None):
            sys.stderr.write(f"flattr-host: cannot remove the token key from the keyring: "
                             f"{exc}\n")
            return 1
        why = "the host kept its key in the file" if recorded == "file" else \
            "the store cannot be read to tell where the key was"
        print(f"the keyring cannot be reached ({exc}); {why}")
        return 0
    print(f"removed the token key from {backend}" if removed
          else f"no token key in {backend}")
    return 0


def _doctor(options: Any) -> int:
    from flattr_host.tools import doctor

    return doctor.main(options)


def _logs(options: Any) -> int:
    from flattr_host.tools import logview

    return logview.main(options)


def _inspect(options: Any) -> int:
    from flattr_host.tools import inspect_client

    return inspect_client.client_main(options)


def _extension(_options: Any) -> int:
    from flattr_host.tools.extension_files import extension_folder

    folder = extension_folder()
    print(folder)
    return 0


def _completion(options: Any) -> int:
    from flattr_host.tools.completion import script

    sys.stdout.write(script(options.shell, _parser()))
    return 0


def _recorded_backend(db_path: str) -> str | None:
    """The key backend the host last recorded, read-only (None: unknown)."""
    import os
    import sqlite3

    if not os.path.exists(db_path):
        return "file"  # no store: no host ever made a key
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM kv WHERE key = 'key_backend'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return "file" if row is None or row[0] in ("file", "none") else str(row[0])


def _status(options: Any) -> int:
    import json
    import time

    from flattr_host.core import health
    from flattr_host.runtime.service import build_state

    config, parts = _open_parts()
    with parts.store:
        state = build_state(parts, time.time())
        parts.close()
    state["home"] = str(config.home)
    # Threads of running hosts that stopped (delivery, attention, inspector).
    state["hostProblems"] = health.running_problems(config.home)
    if options.json:
        print(json.dumps(state, indent=2))
        return 0
    q = state["queue"]
    print(f"data directory   {state['home']}")
    print(f"signed in        {'yes' if state['authenticated'] else 'no'}")
    print(f"subscription     {'active' if state['subscription']['active'] else 'inactive'}")
    key = state["key"]
    print(f"token key        {key['backend'] or 'none yet'}"
          + (f" ({key['reason']})" if key["reason"] else ""))
    print(f"queue            {q['pending']} pending, {q['inFlight']} in flight, "
          f"{q['failed']} failed, {q['expired']} expired")
    if q["paused"]:
        print(f"paused           {q['paused']}")
    if q["nextAttemptAt"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(q["nextAttemptAt"] / 1000))
        print(f"next attempt     {when}")
    if state["problem"]:
        print(f"problem          {state['problem']['message']}")
    for problem in state["hostProblems"]:
        print(f"problem          host {problem['pid']}: {problem['message']}")
    return 0


def _queue_list(options: Any) -> int:
    import json
    import time

    _config, parts = _open_parts()
    status = "failed" if options.failed else options.status
    with parts.store:
        items = parts.queue.items(status)
    if options.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no items")
    for item in items:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item["created_at"]))
        extra = f"  ({item['reason']})" if item["reason"] else ""
        if item["status"] == "done" and item["outcome"]:
            # The server's word for each URL when it gave one (flattr_once, ...),
            # "accepted" when it only said the batch was taken (docs/protocol.md).
            extra = f"  [{item['outcome']}]{extra}"
        print(f"{item['id']:>6}  {item['status']:<9}  {when}  {item['url']}{extra}")
    return 0


def _queue_retry(_options: Any) -> int:
    import time

    _config, parts = _open_parts()
    with parts.store:
        count = parts.queue.retry_failed(time.time())
    print(f"{count} failed items will be sent again by the next running host")
    return 0


def _queue_clear(_options: Any) -> int:
    _config, parts = _open_parts()
    with parts.store:
        count = parts.queue.clear_failed()
    print(f"deleted {count} failed items")
    return 0


# -- attention handlers -----------------------------------------------------------------

def _attention_list(options: Any) -> int:
    import json

    from flattr_host.attention import store as attention_store
    from flattr_host.attention.engine import threshold_at

    _config, _log, store = _open()
    with store, store.read() as conn:
        count_all, sites = attention_store.read_settings(conn)
        pages = attention_store.load_counters(conn)
    for page in pages:
        page["is_audio"] = bool(page["is_audio"])
        page["next_threshold_s"] = threshold_at(page["next_index"], page["is_audio"])
    if options.json:
        print(json.dumps({"count_all": count_all, "sites": sites, "pages": pages}, indent=2))
        return 0
    print(f"count every site  {'yes' if count_all else 'no'}")
    print(f"sites             {', '.join(sites) if sites else '(none)'}")
    if not pages:
        print("no counted pages")
    for page in pages:
        kind = "audio " if page["is_audio"] else ""
        print(f"{page['attention_s']:>9.1f} s  next {kind}flattr at "
              f"{page['next_threshold_s']:.0f} s  flattrs {page['next_index']:>3}  {page['url']}")
    return 0


def _attention_clear(options: Any) -> int:
    from flattr_host.attention import store as attention_store
    from flattr_host.core.errors import FlattrHostError
    from flattr_host.protocol.urlnorm import UrlError, normalize

    url: str | None = None
    if options.url is not None:
        try:
            url = normalize(options.url)
        except UrlError as exc:
            raise FlattrHostError(f"--url: {exc}") from None
    _config, _log, store = _open()
    with store, store.write() as conn:
        if url is not None:
            gone = attention_store.delete_counters(conn, [url])
        elif options.site is not None:
            gone = attention_store.delete_site(conn, options.site.lower().removeprefix("www."))
        else:
            gone = attention_store.delete_counters(conn)
    # Recorded with the new generation: a running host forgets these pages (and only
    # these) on its next write, also those it had counted but not written yet.
    print(f"deleted {len(gone)} attention counters")
    return 0

"""State shared by the figures of one run: workspace, commands, fake site, drain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness import spawn
from harness.model import Config, NotAvailable

if TYPE_CHECKING:
    from harness.fakesite import FakeSite


class Context:
    """Lazily built, cached resources; errors are cached too so they are reported once."""

    def __init__(self, cfg: Config, ws: spawn.Workspace) -> None:
        self.cfg = cfg
        self.ws = ws
        self._cache: dict[str, Any] = {}
        self.fake_site: FakeSite | None = None
        self.shared: dict[str, Any] = {}  # results one figure leaves for another

    def _cached(self, key: str, build: Any) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", build())
            except NotAvailable as exc:
                self._cache[key] = ("na", exc)
        kind, value = self._cache[key]
        if kind == "na":
            raise value
        return value

    def host(self) -> tuple[spawn.Command, list[str]]:
        """The host command (launcher or -m) and how it was found."""
        result: tuple[spawn.Command, list[str]] = self._cached(
            "host", lambda: spawn.host_command(self.ws)
        )
        return result

    def c_echo(self) -> tuple[spawn.Command | None, str]:
        """The compiled C echo host, or None and why."""
        result: tuple[spawn.Command | None, str] = self._cached(
            "c_echo", lambda: spawn.c_echo_command(self.ws)
        )
        return result

    def site(self) -> FakeSite:
        """A running fake site (started on first use, stopped by ``close``)."""
        from harness.fakesite import FakeSite

        def start() -> FakeSite:
            site = FakeSite.start(self.ws, timeout_s=self.cfg.timeout_s,
                                  persistent=self.cfg.fake_site_persistent)
            self.fake_site = site
            return site

        result: FakeSite = self._cached("site", start)
        return result

    def close(self) -> None:
        """Stop what the run started."""
        if self.fake_site is not None:
            self.fake_site.stop()
            self.fake_site = None

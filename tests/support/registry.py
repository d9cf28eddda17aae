"""A Windows registry for the installer's tests (winreg cannot run here)."""

from __future__ import annotations


class FakeRegistry:
    """Default values of registry keys, as winreg would hold them: ``values`` maps
    ``(hive, key)`` to the value, and is the caller's dict when one is given."""

    def __init__(self, values: dict[tuple[str, str], str] | None = None) -> None:
        self.values: dict[tuple[str, str], str] = {} if values is None else values

    def get(self, hive: str, key: str) -> str | None:
        return self.values.get((hive, key))

    def set(self, hive: str, key: str, value: str) -> None:
        self.values[(hive, key)] = value

    def delete(self, hive: str, key: str) -> None:
        del self.values[(hive, key)]

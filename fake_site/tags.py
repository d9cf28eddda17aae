"""The tag filter syntax of ``/things/search`` (api-v2/things.md, "Tags").

``|`` is OR, ``&`` is AND (binding tighter than ``|``) and ``!`` is NOT: every
tag after a ``!`` excludes. ``game | games ! software`` matches things tagged
game or games but not software; ``photo & flickr ! illustrations`` needs both
photo and flickr and no illustrations. Tags compare case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_TOKEN = re.compile(r"\s*([|&!])\s*|\s*([^|&!]+?)\s*(?=[|&!]|$)")


@dataclass(frozen=True)
class TagFilter:
    """Alternatives (each a set of required tags) and excluded tags."""

    any_of: tuple[frozenset[str], ...]
    none_of: frozenset[str]

    def matches(self, tags: Iterable[str]) -> bool:
        """Whether a thing with these tags passes the filter."""
        have = {t.lower() for t in tags}
        if have & self.none_of:
            return False
        return not self.any_of or any(group <= have for group in self.any_of)


def parse_tags(expr: str) -> TagFilter:
    """Parse a tag expression; tags next to each other without an operator are ORed."""
    groups: list[set[str]] = [set()]
    excluded: set[str] = set()
    negate = False
    pending_op = "|"
    for match in _TOKEN.finditer(expr.strip()):
        op, word = match.group(1), match.group(2)
        if op == "!":
            negate = True
        elif op is not None:
            pending_op = op
        elif word:
            tag = word.strip().lower()
            if negate:
                excluded.add(tag)
            elif pending_op == "&":
                groups[-1].add(tag)
            else:
                if groups[-1]:
                    groups.append(set())
                groups[-1].add(tag)
            pending_op = "|"
    return TagFilter(tuple(frozenset(g) for g in groups if g), frozenset(excluded))

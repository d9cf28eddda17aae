"""JSON objects of API v2 in the documented field order (api-v2/*.md, examples.json).

Links always use the canonical names (``https://api.flattr.com/rest/v2/...``,
``https://flattr.com/...``), however the server was reached, as the real API did.
Where the examples disagree, the choice is noted at the function.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from .store import Flattr, Store, Thing, User

API_BASE = "https://api.flattr.com/rest/v2"
SITE_BASE = "https://flattr.com"


def mini_user(user: User) -> dict[str, Any]:
    """The Mini User object. Profile links use ``/profile/`` (the THING examples)."""
    return {
        "type": "user",
        "resource": f"{API_BASE}/users/{user.username}",
        "link": f"{SITE_BASE}/profile/{user.username}",
        "username": user.username,
    }


def full_user(user: User, scopes: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The User object; ``email`` with scope email or extendedread, ``registered_at``
    with extendedread (api-v2/users.md)."""
    obj = mini_user(user)
    obj.update({
        "firstname": user.firstname,
        "lastname": user.lastname,
        "avatar": user.avatar,
        "about": user.about,
        "city": user.city,
        "country": user.country,
        "url": user.url,
    })
    if scopes & {"email", "extendedread"}:
        obj["email"] = user.email
    if "extendedread" in scopes:
        obj["registered_at"] = user.registered_at
    return obj


def _owner(store: Store, thing: Thing, full: bool) -> dict[str, Any] | None:
    # Unclaimed things (partner identifiers, URLs flattred in bulk) have no
    # Flattr owner yet; the fake renders that as null (undocumented upstream).
    owner = store.user_by_id(thing.owner_id) if thing.owner_id is not None else None
    if owner is None:
        return None
    return full_user(owner) if full else mini_user(owner)


def thing_public(store: Store, thing: Thing, *, full: bool = False) -> dict[str, Any]:
    """The Thing object as seen without a token (THING_PUBLIC)."""
    return {
        "type": "thing",
        "resource": f"{API_BASE}/things/{thing.id}",
        "link": f"{SITE_BASE}/thing/{thing.id}",
        "id": thing.id,
        "url": thing.url,
        "language": thing.language,
        "category": thing.category,
        "owner": _owner(store, thing, full),
        "hidden": thing.hidden,
        "image": thing.image,
        "created_at": thing.created_at,
        "tags": list(thing.tags),
        "flattrs": store.flattr_count(thing.id),
        "description": thing.description,
        "title": thing.title,
    }


def thing_for(store: Store, thing: Thing, viewer: User | None, *,
              full: bool = False) -> dict[str, Any]:
    """The Thing object for a viewer: THING for a token holder, THING_FULL for the owner.

    ``subscribed`` is always false: thing subscriptions are not simulated.
    """
    obj = thing_public(store, thing, full=full)
    if viewer is None:
        return obj
    if viewer.id == thing.owner_id:
        obj["last_flattr_at"] = store.last_flattr_at(thing.id)
        obj["updated_at"] = thing.updated_at
    obj["flattred"] = store.has_flattred(viewer.id, thing.id)
    obj["subscribed"] = False
    return obj


def mini_thing(store: Store, thing: Thing) -> dict[str, Any]:
    """The Mini Thing in the order of the flattr-create answer (FLATTR_CREATE)."""
    return {
        "type": "thing",
        "resource": f"{API_BASE}/things/{thing.id}",
        "link": f"{SITE_BASE}/thing/{thing.id}",
        "id": thing.id,
        "flattrs": store.flattr_count(thing.id),
        "url": thing.url,
        "title": thing.title,
        "image": thing.image,
    }


def flattr_obj(store: Store, flattr: Flattr, *, full: bool = False) -> dict[str, Any]:
    """The Flattr object (FLATTR): mini thing with its owner, the flattrer, created_at."""
    thing = store.thing(flattr.thing_id)
    user = store.user_by_id(flattr.user_id)
    assert thing is not None and user is not None
    if full:
        thing_json = thing_public(store, thing, full=True)
    else:
        thing_json = {
            "type": "thing",
            "resource": f"{API_BASE}/things/{thing.id}",
            "link": f"{SITE_BASE}/thing/{thing.id}",
            "id": thing.id,
            "url": thing.url,
            "title": thing.title,
            "image": thing.image,
            "flattrs": store.flattr_count(thing.id),
            "owner": _owner(store, thing, False),
        }
    return {
        "type": "flattr",
        "thing": thing_json,
        "owner": full_user(user) if full else mini_user(user),
        "created_at": flattr.created_at,
    }


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")


def activity(store: Store, flattr: Flattr) -> dict[str, Any]:
    """One Activity Streams item for a flattr (ACTIVITIES), times in UTC."""
    thing = store.thing(flattr.thing_id)
    user = store.user_by_id(flattr.user_id)
    assert thing is not None and user is not None
    when = datetime.datetime.fromtimestamp(flattr.created_at, datetime.UTC)
    slug = _slug(thing.title)
    return {
        "published": when.isoformat(timespec="seconds"),
        "title": f'{user.username} flattred "{thing.title}"',
        "actor": {
            "displayName": user.username,
            "url": f"{SITE_BASE}/profile/{user.username}",
            "objectType": "person",
        },
        "verb": "like",
        "object": {
            "displayName": thing.title,
            "url": f"{SITE_BASE}/thing/{thing.id}" + (f"/{slug}" if slug else ""),
            "objectType": "bookmark",
        },
        "id": f"tag:flattr.com,{when:%Y-%m-%d}:{user.username}/flattr/{thing.id}",
    }

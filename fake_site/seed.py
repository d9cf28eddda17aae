"""Demo data (``--seed``): the users, things and flattrs of the API v2 examples.

Every seeded user's password is its username. ``alice`` has an active
subscription, ``bob`` an inactive one; the others are the people of the
documentation examples so responses can be compared with them.
"""

from __future__ import annotations

from .store import Store

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 - published demo credential
DEMO_REDIRECT_URI = "http://localhost"

_BLOG_DESCRIPTION = (
    "We have been working hard to deliver a great experience for developers and tried to "
    "build a good foundation for easily add new features. The API will remain in beta for a "
    "while for us to kill quirks and refine some of the resources, this means there might be "
    "big changes without notice for ..."
)

USERS: tuple[dict[str, object], ...] = (
    {"username": "flattr", "firstname": "Flattr.com",
     "about": "This is the official Flattr account. We made this site :)",
     "url": "http://flattr.com", "email": "info@flattr.com", "registered_at": 1270166816,
     "subscription_active": True},
    {"username": "gnuproject", "firstname": "GNU", "registered_at": 1280000000},
    {"username": "qzio", "registered_at": 1290000000, "subscription_active": True},
    {"username": "smgt", "firstname": "Simon", "registered_at": 1300000000},
    {"username": "pthulin", "registered_at": 1310000000, "subscription_active": True},
    {"username": "acoustid", "registered_at": 1315000000},
    {"username": "alice", "firstname": "Alice", "email": "alice@example.com",
     "registered_at": 1500000000, "subscription_active": True},
    {"username": "bob", "firstname": "Bob", "email": "bob@example.com",
     "registered_at": 1500000001, "subscription_active": False},
)

THINGS: tuple[dict[str, object], ...] = (
    {"thing_id": 313733, "owner": "gnuproject", "url": "https://flattr.com/profile/gnuproject",
     "title": "GNU's not Unix!", "category": "software", "tags": ["gnu", "software"],
     "image": "https://flattr.com/thing/image/3/1/3/7/3/3/medium.png", "created_at": 1310000000,
     "description": "The GNU operating system."},
    {"thing_id": 423405, "owner": "flattr",
     "url": "http://blog.flattr.net/2011/10/api-v2-beta-out-whats-changed/",
     "title": "API v2 beta out - what's changed?", "category": "text", "tags": ["api"],
     "image": "http://flattr.com/thing/image/4/2/3/4/0/5/medium.png", "created_at": 1319704532,
     "description": _BLOG_DESCRIPTION},
    {"thing_id": 450287, "owner": "smgt", "url": "https://github.com/simon/flattr",
     "title": "Ruby gem wrapping Flattrs API", "category": "software",
     "tags": ["gem", "ruby", "programming", "opensource", "flattr", "api"],
     "created_at": 1323614098, "description": "A ruby gem wrapping Flattrs API."},
    {"thing_id": 459394, "owner": "acoustid", "url": "https://acoustid.org/",
     "title": "Acoustid", "category": "software", "tags": ["audio", "opensource"],
     "created_at": 1324000000, "description": "Open source audio identification."},
)

# (flattrer, thing id, unix time); qzio's and pthulin's are the doc examples.
FLATTRS: tuple[tuple[str, int, int], ...] = (
    ("qzio", 313733, 1316697578),
    ("pthulin", 459394, 1325668032),
    ("qzio", 423405, 1320262599),
    ("pthulin", 423405, 1320200000),
    ("gnuproject", 423405, 1320100000),
    ("alice", 450287, 1510000000),
)


def seed(store: Store) -> None:
    """Insert the demo data into an empty store."""
    ids: dict[str, int] = {}
    for spec in USERS:
        fields = dict(spec)
        name = str(fields.pop("username"))
        registered_at = int(str(fields.pop("registered_at")))
        active = bool(fields.pop("subscription_active", False))
        text = {k: str(v) for k, v in fields.items()}
        user = store.create_user(name, name, registered_at=registered_at,
                                 subscription_active=active, **text)
        ids[name] = user.id
    for spec in THINGS:
        store.create_thing(
            str(spec["url"]),
            thing_id=int(str(spec["thing_id"])),
            owner_id=ids[str(spec["owner"])],
            title=str(spec["title"]),
            description=str(spec.get("description", "")),
            tags=[str(t) for t in spec.get("tags", [])],  # type: ignore[attr-defined]
            category=str(spec["category"]),
            image=str(spec.get("image", "")),
            created_at=int(str(spec["created_at"])),
        )
    for username, thing_id, when in FLATTRS:
        store.add_flattr(ids[username], thing_id, when)
    store.create_app(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REDIRECT_URI, "Demo app")

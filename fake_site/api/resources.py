"""REST v2 resources (documents 003, 004 and api-v2/): users, things, flattrs,
activities, categories, languages, rate limit and partner verification.

The bulk endpoint the extension uses is in :mod:`fake_flattr.api.bulk`.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..catalog import CATEGORIES, CATEGORY_IDS, LANGUAGE_IDS, LANGUAGES
from ..context import UnknownOwner
from ..render import (
    API_BASE,
    activity,
    flattr_obj,
    full_user,
    mini_thing,
    thing_for,
    thing_public,
)
from ..store import Flattr, Thing, User, parse_whole
from ..tags import parse_tags
from ..urls import is_flattrable, parse_auto_submit
from .core import (
    STREAM_TYPE,
    ApiCall,
    ApiError,
    Reply,
    Route,
    invalid_parameters,
    not_found,
    route,
)

SEARCH_SORTS = ("relevance", "trend", "flattrs", "flattrs_month", "flattrs_week", "flattrs_day")


def _page(items: list[Any], count: int, page: int) -> list[Any]:
    return items[(page - 1) * count: page * count]


def _user_named(call: ApiCall) -> User:
    user = call.ctx.store.user_by_name(call.params["username"])
    if user is None:
        raise not_found("The requested user could not be found")
    return user


def _thing_by_id(call: ApiCall, raw: str) -> Thing:
    thing_id = parse_whole(raw)
    thing = None if thing_id is None else call.ctx.store.thing(thing_id)
    if thing is None:
        raise not_found()
    return thing


# -- rate limit, categories, languages -------------------------------------

async def rate_limit(call: ApiCall) -> Reply:
    """GET /rate_limit: the caller's budget; not itself rate limited (document 002)."""
    token = call.token if call.token is not None and not call.token.revoked else None
    key = f"token:{token.token}" if token else f"addr:{call.request.remote}"
    budget = call.ctx.limiter.peek(key)
    reset = datetime.datetime.fromtimestamp(budget.reset, datetime.UTC)
    return Reply({
        "hourly_limit": budget.limit,
        "remaining_hits": budget.remaining,
        "current_hits": budget.current,
        "reset_time_in_seconds": budget.reset,
        "reset_time": reset.strftime("%a, %d %b %Y %H:%M:%S +0000 GMT"),
    })


async def categories(call: ApiCall) -> Reply:
    """GET /categories."""
    return Reply([{"id": i, "text": t} for i, t in CATEGORIES])


async def languages(call: ApiCall) -> Reply:
    """GET /languages."""
    return Reply([{"id": i, "text": t} for i, t in LANGUAGES])


# -- users -------------------------------------------------------------------

async def get_user(call: ApiCall) -> Reply:
    """GET /users/:username: the public User object."""
    return Reply(full_user(_user_named(call)))


async def get_me(call: ApiCall) -> Reply:
    """GET /user: the authenticated user; email/registered_at by scope."""
    return Reply(full_user(call.require_user(), call.scopes))


# -- things ------------------------------------------------------------------

def _things_list(call: ApiCall, owner: User) -> Reply:
    count, page = call.paging()
    viewer = call.user
    things = [t for t in call.ctx.store.things(owner_id=owner.id)
              if not t.hidden or (viewer is not None and viewer.id == owner.id)]
    full = call.flag("full")
    return Reply([thing_for(call.ctx.store, t, viewer, full=full)
                  for t in _page(things, count, page)])


async def user_things(call: ApiCall) -> Reply:
    """GET /users/:username/things."""
    return _things_list(call, _user_named(call))


async def my_things(call: ApiCall) -> Reply:
    """GET /user/things."""
    return _things_list(call, call.require_user())


async def get_things(call: ApiCall) -> Reply:
    """GET /things/:id (one thing) or /things/:id,:id (several, as a list)."""
    raw = call.params["ids"]
    full = call.flag("full")
    if "," not in raw:
        return Reply(thing_for(call.ctx.store, _thing_by_id(call, raw), call.user, full=full))
    return _many(call, raw)


def _many(call: ApiCall, raw: str) -> Reply:
    ids = [p.strip() for p in raw.split(",") if p.strip()]
    numbers = [parse_whole(p) for p in ids]
    if not numbers or None in numbers:
        raise not_found("The requested thing(s) could not be found")
    found = [t for t in (call.ctx.store.thing(n) for n in numbers if n is not None)
             if t is not None]
    if not found:
        raise not_found("The requested thing(s) could not be found")
    # The multiple-things example lists public things (THING_MANY).
    return Reply([thing_public(call.ctx.store, t, full=call.flag("full")) for t in found])


async def get_things_query(call: ApiCall) -> Reply:
    """GET /things?id=:id,:id."""
    raw = call.params.get("id", "")
    if not raw:
        raise invalid_parameters("parameter id is required: thing ids separated by commas")
    return _many(call, raw)


async def lookup(call: ApiCall) -> Reply:
    """GET /things/lookup?url=: 302 + Location when known, 404 message otherwise."""
    url = call.params.get("url", "")
    if not url:
        raise invalid_parameters("parameter url is required")
    auto = parse_auto_submit(url)
    target = auto.url if auto is not None else url
    thing = call.ctx.store.thing_by_url(target)
    if thing is None:
        return Reply({"message": "not_found", "description": "No thing was found"}, status=404)
    if auto is not None and auto.user_id:
        owner = call.ctx.store.user_by_name(auto.user_id)
        if owner is None or owner.id != thing.owner_id:
            raise ApiError(400, "validation",
                           "Owner mismatch. Current thing owned by other account.")
    location = f"{API_BASE}/things/{thing.id}"
    return Reply({"message": "found", "location": location}, status=302,
                 headers={"Location": location})


def _relevance(thing: Thing, words: list[str]) -> int:
    text = thing.title.lower()
    return sum(text.count(w) * 3 + thing.description.lower().count(w) for w in words)


async def search(call: ApiCall) -> Reply:
    """GET /things/search: filters query, url, tags, language, category, user; sort; paging."""
    count, page = call.paging()
    store = call.ctx.store
    things = [t for t in store.things() if not t.hidden]
    words = call.params.get("query", "").lower().split()
    if words:
        things = [t for t in things if all(
            w in f"{t.title} {t.description} {t.url} {' '.join(t.tags)}".lower() for w in words
        )]
    if call.params.get("url"):
        things = [t for t in things if t.url == call.params["url"]]
    if call.params.get("tags"):
        tag_filter = parse_tags(call.params["tags"])
        things = [t for t in things if tag_filter.matches(t.tags)]
    for name in ("language", "category"):
        if call.params.get(name):
            wanted = {v.strip() for v in call.params[name].split(",") if v.strip()}
            things = [t for t in things if getattr(t, name) in wanted]
    if call.params.get("user"):
        owner = store.user_by_name(call.params["user"])
        things = [t for t in things if owner is not None and t.owner_id == owner.id]
    sort = call.params.get("sort") or "relevance"
    if sort not in SEARCH_SORTS:
        raise invalid_parameters(f"sort must be one of {', '.join(SEARCH_SORTS)}, got {sort!r}")
    things = _sorted(call, things, sort, words)
    shown = _page(things, count, page)
    return Reply({
        "total_items": len(things),
        "items": len(shown),
        "page": page,
        "things": [thing_public(store, t, full=call.flag("full")) for t in shown],
    })


def _sorted(call: ApiCall, things: list[Thing], sort: str, words: list[str]) -> list[Thing]:
    store = call.ctx.store
    if sort == "relevance":
        return sorted(things, key=lambda t: (-_relevance(t, words), -t.id))
    windows = {"flattrs_month": 30 * 86400, "flattrs_week": 7 * 86400, "flattrs_day": 86400,
               "trend": 7 * 86400}
    since = call.ctx.now() - windows[sort] if sort in windows else 0

    def score(t: Thing) -> int:
        return sum(1 for f in store.flattrs(thing_id=t.id) if f.created_at >= since)

    return sorted(things, key=lambda t: (-score(t), -t.id))


def _thing_fields(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("title", "description"):
        if name in fields:
            out[name] = str(fields[name])
    if "category" in fields or creating:
        category = str(fields.get("category") or "rest")
        if category not in CATEGORY_IDS:
            raise ApiError(400, "validation", f"Invalid category {category!r}")
        out["category"] = category
    if "language" in fields or creating:
        language = str(fields.get("language") or "en_GB")
        if language not in LANGUAGE_IDS:
            raise ApiError(400, "validation", f"Invalid language {language!r}")
        out["language"] = language
    if "tags" in fields:
        raw = fields["tags"]
        tags = raw if isinstance(raw, list) else str(raw).split(",")
        out["tags"] = [str(t).strip() for t in tags if str(t).strip()]
    if "hidden" in fields:
        out["hidden"] = int(str(fields["hidden"]).lower() in ("1", "true"))
    return out


async def create_thing(call: ApiCall) -> Reply:
    """POST /things (scope thing): 201 with THING_CREATE."""
    user = call.require_user()
    fields = await call.fields()
    url = fields.get("url")
    if not is_flattrable(url):
        raise ApiError(400, "validation", "Invalid url")
    assert isinstance(url, str)
    if call.ctx.store.thing_by_url(url) is not None:
        raise ApiError(400, "validation", "A thing with this url already exists")
    values = _thing_fields(fields, creating=True)
    thing = call.ctx.store.create_thing(
        url, created_at=call.ctx.now(), owner_id=user.id, title=values.get("title", url),
        description=values.get("description", ""), tags=values.get("tags", []),
        language=values["language"], category=values["category"],
        hidden=bool(values.get("hidden", 0)),
    )
    return Reply({"id": thing.id, "link": f"{API_BASE}/things/{thing.id}", "message": "ok",
                  "description": "Thing was created successfully"}, status=201)


def _owned_thing(call: ApiCall, what: str) -> Thing:
    user = call.require_user()
    thing = _thing_by_id(call, call.params["ids"])
    if thing.owner_id != user.id:
        raise ApiError(403, "forbidden", f"Cannot {what} the thing: it is not yours")
    return thing


async def update_thing(call: ApiCall) -> Reply:
    """PATCH /things/:id (or POST with _method=patch), scope thing, owner only."""
    thing = _owned_thing(call, "update")
    fields = await call.fields()
    values = _thing_fields(fields, creating=False)
    call.ctx.store.update_thing(thing.id, values, call.ctx.now())
    return Reply({"message": "ok", "description": "Thing was updated correctly"})


async def post_thing(call: ApiCall) -> Reply:
    """POST /things/:id: only the documented ``_method=patch`` workaround."""
    fields = await call.fields()
    if str(fields.get("_method", "")).lower() != "patch":
        raise ApiError(400, "invalid_request", "POST here needs _method=patch")
    if "thing" not in call.scopes:
        raise ApiError(403, "insufficient_scope", "this resource needs the scope 'thing'")
    return await update_thing(call)


async def delete_thing(call: ApiCall) -> Reply:
    """DELETE /things/:id: 204, empty body."""
    thing = _owned_thing(call, "delete")
    call.ctx.store.delete_thing(thing.id)
    return Reply(None, status=204)


# -- flattrs -----------------------------------------------------------------

def _flattr_list(call: ApiCall, flattrs: list[Flattr]) -> Reply:
    count, page = call.paging()
    full = call.flag("full")
    return Reply([flattr_obj(call.ctx.store, f, full=full) for f in _page(flattrs, count, page)])


async def user_flattrs(call: ApiCall) -> Reply:
    """GET /users/:username/flattrs."""
    return _flattr_list(call, call.ctx.store.flattrs(user_id=_user_named(call).id))


async def my_flattrs(call: ApiCall) -> Reply:
    """GET /user/flattrs."""
    return _flattr_list(call, call.ctx.store.flattrs(user_id=call.require_user().id))


async def thing_flattrs(call: ApiCall) -> Reply:
    """GET /things/:id/flattrs (document 003 lists 401 for it: a token is needed)."""
    thing = _thing_by_id(call, call.params["ids"])
    return _flattr_list(call, call.ctx.store.flattrs(thing_id=thing.id))


def _flattr_reply(call: ApiCall, thing: Thing) -> Reply:
    user = call.require_user()
    store = call.ctx.store
    if thing.owner_id == user.id:
        raise ApiError(403, "flattr_owner", "User is the owner of the thing")
    if store.has_flattred(user.id, thing.id):
        raise ApiError(403, "flattr_once", "The current user have already flattred the thing")
    # The subscription is the account's means to flattr in this fake.
    if not user.subscription_active:
        raise ApiError(401, "no_means", "Current user don't have enough means to flattr")
    outcome = call.ctx.flattr(user, thing)
    if outcome != "ok":
        raise ApiError(403, outcome, "The flattr was not made")
    fresh = store.thing(thing.id)
    assert fresh is not None
    return Reply({"message": "ok", "description": "Thing was successfully flattred",
                  "thing": mini_thing(store, fresh)})


async def flattr_thing(call: ApiCall) -> Reply:
    """POST /things/:id/flattr (scope flattr)."""
    thing_id = parse_whole(call.params["ids"])
    thing = None if thing_id is None else call.ctx.store.thing(thing_id)
    if thing is None:
        raise not_found("Thing does not exist")
    return _flattr_reply(call, thing)


async def flattr_url(call: ApiCall) -> Reply:
    """POST /flattr {url}: registered URLs and auto-submit URLs (which create the thing)."""
    fields = await call.fields()
    url = fields.get("url")
    if not isinstance(url, str) or not url:
        raise ApiError(400, "invalid_request", "Parameter url is required")
    if not is_flattrable(url):
        raise ApiError(400, "invalid_request", f"url is not a flattrable URL: {url[:200]!r}")
    call.require_user()
    try:
        thing = call.ctx.thing_for_url(url, create_plain=False)
    except UnknownOwner as exc:
        raise not_found(f"No user named {exc.args[0]!r} for this auto-submit URL") from exc
    if thing is None:
        raise not_found("Thing does not exist")
    return _flattr_reply(call, thing)


# -- activities --------------------------------------------------------------

def _activities(call: ApiCall, user: User) -> Reply:
    kind = call.params.get("type") or "outgoing"
    if kind not in ("outgoing", "incoming"):
        raise invalid_parameters(f"type must be incoming or outgoing, got {kind!r}")
    store = call.ctx.store
    flattrs = (store.flattrs(user_id=user.id) if kind == "outgoing"
               else store.flattrs(owner_id=user.id))
    count, page = call.paging()
    return Reply({"items": [activity(store, f) for f in _page(flattrs, count, page)]},
                 content_type=STREAM_TYPE)


async def user_activities(call: ApiCall) -> Reply:
    """GET /users/:username/activities (Activity Streams JSON)."""
    return _activities(call, _user_named(call))


async def my_activities(call: ApiCall) -> Reply:
    """GET /user/activities."""
    return _activities(call, call.require_user())


# -- partner identity verification (document 001) ----------------------------

def _verify(call: ApiCall, target: User, identity: object) -> Reply:
    caller = call.require_user()
    if not isinstance(identity, str) or ":" not in identity:
        raise ApiError(401, "unauthorized", "The identifier is missing or invalid")
    partner = call.ctx.store.partner_for(identity)
    token = call.token
    allowed = partner is not None and token is not None and (
        (partner.client_id is not None and partner.client_id == token.client_id)
        or (partner.username is not None and partner.username == caller.username)
    )
    if not allowed:
        raise ApiError(401, "unauthorized",
                       f"Not allowed to verify identifiers like {identity!r}")
    call.ctx.store.link_identity(identity, target.id)
    claimed = call.ctx.store.claim_things(identity, target.id)
    return Reply({"message": "ok", "description": f"Identity verified; {claimed} things claimed"})


async def verify_user(call: ApiCall) -> Reply:
    """POST /users/:username/verify {identity}."""
    target = _user_named(call)
    return _verify(call, target, (await call.fields()).get("identity"))


async def verify_me(call: ApiCall) -> Reply:
    """POST /user/verify {identity}."""
    return _verify(call, call.require_user(), (await call.fields()).get("identity"))


def routes() -> list[Route]:
    """Every resource of this module (order matters: literal paths first)."""
    activity_formats = frozenset({"as"})
    return [
        route("GET", "/rate_limit", rate_limit, rate_limited=False),
        route("GET", "/categories", categories, auth="none"),
        route("GET", "/languages", languages, auth="none"),
        route("GET", "/user", get_me, auth="user"),
        route("GET", "/user/things", my_things, auth="user"),
        route("GET", "/user/flattrs", my_flattrs, auth="user"),
        route("GET", "/user/activities", my_activities, auth="user", formats=activity_formats),
        route("POST", "/user/verify", verify_me, auth="user"),
        route("GET", "/users/{username}", get_user),
        route("GET", "/users/{username}/things", user_things),
        route("GET", "/users/{username}/flattrs", user_flattrs),
        route("GET", "/users/{username}/activities", user_activities,
              formats=activity_formats),
        route("POST", "/users/{username}/verify", verify_user, auth="user"),
        route("GET", "/things", get_things_query),
        route("POST", "/things", create_thing, auth="user", scope="thing"),
        route("GET", "/things/lookup", lookup),
        route("GET", "/things/search", search),
        route("GET", "/things/{ids}", get_things),
        route("PATCH", "/things/{ids}", update_thing, auth="user", scope="thing"),
        route("POST", "/things/{ids}", post_thing, auth="user"),
        route("DELETE", "/things/{ids}", delete_thing, auth="user", scope="thing"),
        route("GET", "/things/{ids}/flattrs", thing_flattrs, auth="user"),
        route("POST", "/things/{ids}/flattr", flattr_thing, auth="user", scope="flattr"),
        route("POST", "/flattr", flattr_url, auth="user", scope="flattr"),
    ]

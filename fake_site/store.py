"""All state of the fake site in one SQLite database.

With ``--data-dir`` the database is ``<data-dir>/state.sqlite3`` and survives a
restart; without it the database lives in memory. Every method runs one short
statement or transaction on the event-loop thread: SQLite answers in
microseconds here, far below anything the tests measure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import FakeSiteError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    firstname TEXT NOT NULL DEFAULT '',
    lastname TEXT NOT NULL DEFAULT '',
    avatar TEXT NOT NULL DEFAULT '',
    about TEXT NOT NULL DEFAULT '',
    city TEXT NOT NULL DEFAULT '',
    country TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    registered_at INTEGER NOT NULL,
    subscription_active INTEGER NOT NULL DEFAULT 0,
    subscription_version INTEGER NOT NULL DEFAULT 0,
    subscription_expires_at REAL
);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    scopes TEXT NOT NULL,
    kind TEXT NOT NULL,
    client_id TEXT,
    extension_id TEXT,
    code TEXT,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    code TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS things (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    owner_id INTEGER REFERENCES users(id),
    owner_identifier TEXT,
    title TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    language TEXT NOT NULL DEFAULT 'en_GB',
    category TEXT NOT NULL DEFAULT 'rest',
    hidden INTEGER NOT NULL DEFAULT 0,
    image TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flattrs (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    thing_id INTEGER NOT NULL REFERENCES things(id),
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, thing_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    web_token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS partners (
    prefix TEXT PRIMARY KEY,
    hook_url TEXT NOT NULL,
    client_id TEXT,
    username TEXT
);
CREATE TABLE IF NOT EXISTS identities (
    identifier TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id)
);
"""

TABLES = (
    "identities", "partners", "sessions", "flattrs", "codes", "tokens", "apps", "things", "users"
)


class StoreError(FakeSiteError):
    """A state change that the data does not allow (duplicate name, unknown user...)."""


#: The largest id SQLite's INTEGER holds.
MAX_ID = 2**63 - 1


def parse_whole(raw: str) -> int | None:
    """A whole number as a URL or a parameter gives it (an id, a count, a time):
    ASCII digits, at most 19 (SQLite's INTEGER has 19); None for anything else.
    "²" is a digit to ``str.isdigit`` but no number, and ``int`` itself refuses a
    5,000-digit one; :meth:`Store.thing` bounds ids to SQLite's range."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    return int(raw)


@dataclass(frozen=True)
class User:
    """One flattr.com account."""

    id: int
    username: str
    firstname: str
    lastname: str
    avatar: str
    about: str
    city: str
    country: str
    url: str
    email: str
    registered_at: int
    subscription_active: bool
    subscription_version: int
    subscription_expires_at: float | None


@dataclass(frozen=True)
class Token:
    """A bearer token; ``scopes`` is the set granted at issue time."""

    token: str
    user_id: int
    scopes: frozenset[str]
    kind: str
    client_id: str | None
    extension_id: str | None
    revoked: bool


@dataclass(frozen=True)
class Thing:
    """A flattrable thing. ``owner_id`` is None while the thing is unclaimed."""

    id: int
    url: str
    owner_id: int | None
    owner_identifier: str | None
    title: str
    description: str
    tags: tuple[str, ...]
    language: str
    category: str
    hidden: bool
    image: str
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Flattr:
    """One flattr: ``user_id`` flattred ``thing_id`` at ``created_at``."""

    id: int
    user_id: int
    thing_id: int
    created_at: int


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its user, CSRF token and page API token."""

    sid: str
    user: User
    csrf: str
    web_token: str


@dataclass(frozen=True)
class App:
    """A registered OAuth client."""

    client_id: str
    client_secret: str
    redirect_uri: str
    name: str


@dataclass(frozen=True)
class Partner:
    """A community partner: owns identifiers starting with ``prefix``."""

    prefix: str
    hook_url: str
    client_id: str | None
    username: str | None


def hash_password(password: str, salt: str | None = None) -> str:
    """Salted PBKDF2 hash as ``salt$hex`` (cheap: this is a fake, not a vault)."""
    salt = salt if salt is not None else secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000).hex()
    return f"{salt}${digest}"


def _check_password(password: str, stored: str) -> bool:
    salt, _, _digest = stored.partition("$")
    return hmac.compare_digest(hash_password(password, salt), stored)


class Store:
    """Typed access to the SQLite state. ``path`` None means in memory."""

    def __init__(self, path: Path | None) -> None:
        target = str(path) if path is not None else ":memory:"
        self.db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA foreign_keys = ON")
        if path is not None:
            self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def clear(self) -> None:
        """Delete every row of every table (admin reset)."""
        with self.db:
            self.db.execute("BEGIN")
            for table in TABLES:
                self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    def is_empty(self) -> bool:
        """True when no user exists (a fresh database)."""
        return self.db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None

    # -- users -----------------------------------------------------------

    def create_user(
        self,
        username: str,
        password: str,
        *,
        registered_at: int,
        subscription_active: bool = False,
        firstname: str = "",
        lastname: str = "",
        about: str = "",
        url: str = "",
        email: str = "",
        city: str = "",
        country: str = "",
        avatar: str = "",
    ) -> User:
        """Create an account; raises StoreError if the username is taken."""
        try:
            self.db.execute(
                "INSERT INTO users (username, password, firstname, lastname, avatar, about, city,"
                " country, url, email, registered_at, subscription_active)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    username, hash_password(password), firstname, lastname, avatar, about, city,
                    country, url, email, registered_at, int(subscription_active),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"username {username!r} is already taken") from exc
        user = self.user_by_name(username)
        assert user is not None
        return user

    @staticmethod
    def _user(row: sqlite3.Row | None) -> User | None:
        if row is None:
            return None
        return User(
            id=row["id"], username=row["username"], firstname=row["firstname"],
            lastname=row["lastname"], avatar=row["avatar"], about=row["about"],
            city=row["city"], country=row["country"], url=row["url"], email=row["email"],
            registered_at=row["registered_at"],
            subscription_active=bool(row["subscription_active"]),
            subscription_version=row["subscription_version"],
            subscription_expires_at=row["subscription_expires_at"],
        )

    def user_by_name(self, username: str) -> User | None:
        """The user called ``username`` (case-sensitive), or None."""
        row = self.db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return self._user(row)

    def user_by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        row = self.db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        return self._user(row)

    def check_login(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None."""
        row = self.db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is None or not _check_password(password, row["password"]):
            return None
        return self._user(row)

    def set_subscription(
        self, user_id: int, active: bool, expires_at: float | None = None
    ) -> User:
        """Set the subscription state; bumps ``subscription_version`` on every call."""
        self.db.execute(
            "UPDATE users SET subscription_active = ?, subscription_expires_at = ?,"
            " subscription_version = subscription_version + 1 WHERE id = ?",
            (int(active), expires_at, user_id),
        )
        user = self.user_by_id(user_id)
        if user is None:
            raise StoreError(f"no user with id {user_id}")
        return user

    def expired_subscriptions(self, now: float) -> list[User]:
        """Active subscriptions whose expiry time has passed."""
        rows = self.db.execute(
            "SELECT * FROM users WHERE subscription_active = 1"
            " AND subscription_expires_at IS NOT NULL AND subscription_expires_at <= ?",
            (now,),
        ).fetchall()
        return [u for u in (self._user(r) for r in rows) if u is not None]

    # -- tokens ----------------------------------------------------------

    def mint_token(
        self,
        user_id: int,
        scopes: Iterable[str],
        kind: str,
        *,
        now: float,
        client_id: str | None = None,
        extension_id: str | None = None,
        code: str | None = None,
    ) -> str:
        """Issue a new 40-hex-digit bearer token and return it."""
        token = secrets.token_hex(20)
        self.db.execute(
            "INSERT INTO tokens (token, user_id, scopes, kind, client_id, extension_id, code,"
            " created_at) VALUES (?,?,?,?,?,?,?,?)",
            (token, user_id, " ".join(sorted(set(scopes))), kind, client_id, extension_id, code,
             now),
        )
        return token

    def token(self, token: str) -> Token | None:
        """The token record (revoked or not), or None if never issued."""
        row = self.db.execute("SELECT * FROM tokens WHERE token = ?", (token,)).fetchone()
        if row is None:
            return None
        return Token(
            token=row["token"], user_id=row["user_id"],
            scopes=frozenset(row["scopes"].split()), kind=row["kind"],
            client_id=row["client_id"], extension_id=row["extension_id"],
            revoked=bool(row["revoked"]),
        )

    def revoke_token(self, token: str) -> int:
        """Revoke one token; returns how many were revoked (0 or 1)."""
        cur = self.db.execute(
            "UPDATE tokens SET revoked = 1 WHERE token = ? AND revoked = 0", (token,)
        )
        return cur.rowcount

    def revoke_user_tokens(self, user_id: int, *, kind: str | None = None,
                           extension_id: str | None = None) -> int:
        """Revoke a user's tokens, optionally only of one kind / extension id."""
        sql = "UPDATE tokens SET revoked = 1 WHERE user_id = ? AND revoked = 0"
        args: list[object] = [user_id]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if extension_id is not None:
            sql += " AND extension_id = ?"
            args.append(extension_id)
        return self.db.execute(sql, args).rowcount

    def revoke_code_tokens(self, code: str) -> int:
        """Revoke the tokens issued for an authorization code (code replay)."""
        return self.db.execute(
            "UPDATE tokens SET revoked = 1 WHERE code = ? AND revoked = 0", (code,)
        ).rowcount

    # -- OAuth apps and codes -------------------------------------------

    def create_app(self, client_id: str, client_secret: str, redirect_uri: str, name: str) -> App:
        """Register an OAuth client; raises StoreError if the id is taken."""
        try:
            self.db.execute(
                "INSERT INTO apps VALUES (?,?,?,?)", (client_id, client_secret, redirect_uri, name)
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"client_id {client_id!r} is already registered") from exc
        return App(client_id, client_secret, redirect_uri, name)

    def app(self, client_id: str) -> App | None:
        """The registered app, or None."""
        row = self.db.execute("SELECT * FROM apps WHERE client_id = ?", (client_id,)).fetchone()
        if row is None:
            return None
        return App(row["client_id"], row["client_secret"], row["redirect_uri"], row["name"])

    def create_code(self, client_id: str, user_id: int, redirect_uri: str,
                    scopes: Iterable[str], expires_at: float) -> str:
        """Issue a single-use authorization code."""
        code = secrets.token_urlsafe(24)
        self.db.execute(
            "INSERT INTO codes (code, client_id, user_id, redirect_uri, scopes, expires_at)"
            " VALUES (?,?,?,?,?,?)",
            (code, client_id, user_id, redirect_uri, " ".join(sorted(set(scopes))), expires_at),
        )
        return code

    def peek_code(self, code: str) -> sqlite3.Row | None:
        """A code's row without changing it (None if unknown)."""
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM codes WHERE code = ?", (code,)
        ).fetchone()
        return row

    def use_code(self, code: str) -> sqlite3.Row | None:
        """Mark a code used and return its row as it was before (None if unknown)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row: sqlite3.Row | None = self.db.execute(
                "SELECT * FROM codes WHERE code = ?", (code,)
            ).fetchone()
            if row is not None:
                self.db.execute("UPDATE codes SET used = 1 WHERE code = ?", (code,))
        return row

    # -- sessions --------------------------------------------------------

    def create_session(self, user_id: int, now: float) -> Session:
        """A new login session with its CSRF token and a page token for API calls."""
        sid, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(18)
        web_token = self.mint_token(user_id, ("flattr", "thing"), "web", now=now)
        self.db.execute("INSERT INTO sessions VALUES (?,?,?,?,?)",
                        (sid, user_id, csrf, now, web_token))
        session = self.session(sid)
        assert session is not None
        return session

    def session(self, sid: str) -> Session | None:
        """The live session for a session id, or None."""
        row = self.db.execute(
            "SELECT u.*, s.sid AS sid, s.csrf AS csrf, s.web_token AS web_token"
            " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.sid = ?", (sid,)
        ).fetchone()
        user = self._user(row)
        if user is None:
            return None
        return Session(str(row["sid"]), user, str(row["csrf"]), str(row["web_token"]))

    def delete_session(self, sid: str) -> None:
        """Log out: the session and its page token end."""
        row = self.db.execute("SELECT web_token FROM sessions WHERE sid = ?", (sid,)).fetchone()
        if row is not None:
            self.revoke_token(str(row[0]))
        self.db.execute("DELETE FROM sessions WHERE sid = ?", (sid,))

    # -- things ----------------------------------------------------------

    @staticmethod
    def _thing(row: sqlite3.Row | None) -> Thing | None:
        if row is None:
            return None
        return Thing(
            id=row["id"], url=row["url"], owner_id=row["owner_id"],
            owner_identifier=row["owner_identifier"], title=row["title"],
            description=row["description"], tags=tuple(json.loads(row["tags"])),
            language=row["language"], category=row["category"], hidden=bool(row["hidden"]),
            image=row["image"], created_at=row["created_at"], updated_at=row["updated_at"],
        )

    def create_thing(
        self,
        url: str,
        *,
        created_at: int,
        owner_id: int | None = None,
        owner_identifier: str | None = None,
        title: str = "",
        description: str = "",
        tags: Iterable[str] = (),
        language: str = "en_GB",
        category: str = "rest",
        hidden: bool = False,
        image: str = "",
        thing_id: int | None = None,
    ) -> Thing:
        """Create a thing; raises StoreError if the URL is already a thing."""
        try:
            cur = self.db.execute(
                "INSERT INTO things (id, url, owner_id, owner_identifier, title, description,"
                " tags, language, category, hidden, image, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (thing_id, url, owner_id, owner_identifier, title, description,
                 json.dumps(list(tags)), language, category, int(hidden), image, created_at),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"url {url!r} is already a thing") from exc
        thing = self.thing(int(cur.lastrowid or 0))
        assert thing is not None
        return thing

    def thing(self, thing_id: int) -> Thing | None:
        """The thing with this id, or None."""
        if not 0 <= thing_id <= MAX_ID:
            return None
        return self._thing(
            self.db.execute("SELECT * FROM things WHERE id = ?", (thing_id,)).fetchone()
        )

    def thing_by_url(self, url: str) -> Thing | None:
        """The thing registered for exactly this URL, or None."""
        return self._thing(
            self.db.execute("SELECT * FROM things WHERE url = ?", (url,)).fetchone()
        )

    def things(self, *, owner_id: int | None = None) -> list[Thing]:
        """All things (of one owner if given), newest first."""
        if owner_id is None:
            rows = self.db.execute("SELECT * FROM things ORDER BY created_at DESC, id DESC")
        else:
            rows = self.db.execute(
                "SELECT * FROM things WHERE owner_id = ? ORDER BY created_at DESC, id DESC",
                (owner_id,),
            )
        return [t for t in (self._thing(r) for r in rows.fetchall()) if t is not None]

    def update_thing(self, thing_id: int, fields: dict[str, object], now: int) -> None:
        """Set some of title, description, tags, language, category, hidden."""
        allowed = {"title", "description", "tags", "language", "category", "hidden"}
        sets, args = [], []
        for name, value in fields.items():
            if name not in allowed:
                raise StoreError(f"field {name!r} cannot be updated; allowed: {sorted(allowed)}")
            sets.append(f"{name} = ?")
            args.append(json.dumps(value) if name == "tags" else value)
        sets.append("updated_at = ?")
        args.extend([now, thing_id])
        self.db.execute(f"UPDATE things SET {', '.join(sets)} WHERE id = ?", args)  # noqa: S608

    def delete_thing(self, thing_id: int) -> None:
        """Delete a thing and its flattrs."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM flattrs WHERE thing_id = ?", (thing_id,))
            self.db.execute("DELETE FROM things WHERE id = ?", (thing_id,))

    def claim_things(self, identifier: str, user_id: int) -> int:
        """Give every unclaimed thing of ``identifier`` to the user; returns how many."""
        return self.db.execute(
            "UPDATE things SET owner_id = ? WHERE owner_identifier = ? AND owner_id IS NULL",
            (user_id, identifier),
        ).rowcount

    # -- flattrs ---------------------------------------------------------

    def add_flattr(self, user_id: int, thing_id: int, created_at: int) -> bool:
        """Record a flattr; False if this user had already flattred the thing."""
        try:
            self.db.execute(
                "INSERT INTO flattrs (user_id, thing_id, created_at) VALUES (?,?,?)",
                (user_id, thing_id, created_at),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def has_flattred(self, user_id: int, thing_id: int) -> bool:
        """Whether the user has flattred the thing."""
        return self.db.execute(
            "SELECT 1 FROM flattrs WHERE user_id = ? AND thing_id = ?", (user_id, thing_id)
        ).fetchone() is not None

    def flattr_count(self, thing_id: int) -> int:
        """Number of flattrs the thing has received."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM flattrs WHERE thing_id = ?", (thing_id,)
        ).fetchone()
        return int(row[0])

    def last_flattr_at(self, thing_id: int) -> int:
        """Unix time of the thing's latest flattr, 0 if none."""
        row = self.db.execute(
            "SELECT MAX(created_at) FROM flattrs WHERE thing_id = ?", (thing_id,)
        ).fetchone()
        return int(row[0] or 0)

    def flattrs(self, *, user_id: int | None = None, thing_id: int | None = None,
                owner_id: int | None = None) -> list[Flattr]:
        """Flattrs made by a user, received by a thing, or received by an owner; newest first."""
        sql = "SELECT f.* FROM flattrs f JOIN things t ON t.id = f.thing_id WHERE 1 = 1"
        args: list[object] = []
        if user_id is not None:
            sql += " AND f.user_id = ?"
            args.append(user_id)
        if thing_id is not None:
            sql += " AND f.thing_id = ?"
            args.append(thing_id)
        if owner_id is not None:
            sql += " AND t.owner_id = ?"
            args.append(owner_id)
        sql += " ORDER BY f.created_at DESC, f.id DESC"
        return [
            Flattr(r["id"], r["user_id"], r["thing_id"], r["created_at"])
            for r in self.db.execute(sql, args).fetchall()
        ]

    # -- partners and identities ---------------------------------------

    def set_partner(self, prefix: str, hook_url: str, client_id: str | None,
                    username: str | None) -> Partner:
        """Register (or replace) the partner owning identifiers that start with ``prefix``."""
        self.db.execute(
            "INSERT OR REPLACE INTO partners VALUES (?,?,?,?)",
            (prefix, hook_url, client_id, username),
        )
        return Partner(prefix, hook_url, client_id, username)

    def partner_for(self, identifier: str) -> Partner | None:
        """The partner with the longest prefix matching ``identifier`` (prefix + ':')."""
        best: Partner | None = None
        for row in self.db.execute("SELECT * FROM partners").fetchall():
            prefix = str(row["prefix"])
            if identifier.startswith(prefix + ":") and (
                best is None or len(prefix) > len(best.prefix)
            ):
                best = Partner(prefix, row["hook_url"], row["client_id"], row["username"])
        return best

    def link_identity(self, identifier: str, user_id: int) -> None:
        """Record that ``identifier`` belongs to the user."""
        self.db.execute("INSERT OR REPLACE INTO identities VALUES (?,?)", (identifier, user_id))

    def identity_owner(self, identifier: str) -> int | None:
        """The user id an identifier was verified for, or None."""
        row = self.db.execute(
            "SELECT user_id FROM identities WHERE identifier = ?", (identifier,)
        ).fetchone()
        return None if row is None else int(row[0])

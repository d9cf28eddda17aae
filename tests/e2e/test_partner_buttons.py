"""A community partner's page with embedded Flattr buttons, in real browsers with the
extension installed (docs/fake-site.md, "Partner integration").

The partner page is served by a real HTTP server on http://127.0.0.1:<port> (not
flattr.com). It loads ``//api.flattr.com/js/0.6/load.js`` as api-v2/button.md shows:
in Chromium over plain HTTP (``api.flattr.com:80`` is mapped to the fake's HTTP
port, and ``https=1`` or the default scheme picks the iframes' scheme); in Firefox,
whose CONNECT proxy only tunnels HTTPS, as ``https://api.flattr.com/...``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from fake_flattr.hook_receiver import HookReceiver
from tests.support.e2e import (
    WAIT_MS,
    BrowserDriver,
    ChromiumPage,
    ExtensionBrowser,
    FirefoxBrowser,
    FirefoxFrame,
    FirefoxPage,
    FlattrPage,
    LaunchFn,
    Site,
    log_in,
    resolver_rules,
)
from tests.support.partner_site import PartnerSite

pytestmark = pytest.mark.browsers("chromium", "firefox")

SEEDED_THING = 313733


def partner_page(loader: str, body: str, script: str = "") -> str:
    """A partner page as api-v2/button.md writes it: the async loader in <head>."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop articles</title>
<script type="text/javascript">
(function () {{
  var s = document.createElement('script');
  var t = document.getElementsByTagName('script')[0];
  s.type = 'text/javascript';
  s.async = true;
  s.src = {json.dumps(loader)};
  t.parentNode.insertBefore(s, t);
}})();
</script>
<style>.FlattrButton {{ display: none; }}</style>
</head><body><h1>Shop articles</h1>
{body}
<script>{script}</script>
</body></html>"""


@dataclass
class Partner:
    site: Site
    pages: PartnerSite
    hooks: HookReceiver
    token: str  # the partner's own API token (it may verify partner:shop:* identifiers)
    loader_base: str  # "//api.flattr.com" or "https://api.flattr.com"


@pytest.fixture
def browser(request: pytest.FixtureRequest, e2e_browser: str, site: Site,
            site_endpoints: Any) -> Iterator[BrowserDriver]:
    """The suite's browser; Chromium also maps http://api.flattr.com to the HTTP port."""
    if e2e_browser == "firefox":
        yield request.getfixturevalue("browser")
        return
    api_http = getattr(site_endpoints, "api_http", "") or (
        site_endpoints.get("api_http", "") if isinstance(site_endpoints, dict) else "")
    assert api_http, "the fake site reports no plain-HTTP API port"
    rules = (f"MAP api.flattr.com:80 127.0.0.1:{urlsplit(api_http).port}, "
             + resolver_rules(site.site, site.api))
    launch: LaunchFn = request.getfixturevalue("launch")
    yield launch(extra_args=(f"--host-resolver-rules={rules}",))


@pytest.fixture
def partner(site: Site, e2e_browser: str) -> Iterator[Partner]:
    """A registered partner (namespace ``partner:shop``) with its site and hook receiver."""
    owner = site.create_user("shopco")
    site.admin("POST", "config", {"webhook_retry_delays": [0.05]})
    with PartnerSite() as pages, HookReceiver() as hooks:
        site.admin("POST", "partners", {"prefix": "partner:shop", "hook_url": hooks.url,
                                        "username": "shopco"})
        base = "//api.flattr.com" if e2e_browser == "chromium" else "https://api.flattr.com"
        yield Partner(site, pages, hooks, str(owner["token"]), base)


# -- browser-neutral helpers ---------------------------------------------------------


def pause(page: FlattrPage) -> None:
    """A short wait that lets Playwright deliver events (frame URLs, new pages)."""
    if isinstance(page, ChromiumPage):
        page.page.wait_for_timeout(50)
    else:
        time.sleep(0.05)


def frame_for(page: FlattrPage, needle: str, timeout: float = WAIT_MS / 1000) -> Any:
    """The child frame whose URL contains ``needle`` (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [f for f in page.frames() if needle in f.url]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no frame with {needle!r}: {[f.url for f in page.frames()]}")
        pause(page)


def in_frame(page: FlattrPage, frame: Any, condition: str,
             timeout: float = WAIT_MS / 1000) -> None:
    """Wait until ``condition`` holds in the frame's document."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            if page.evaluate(f"Boolean({condition})", frame):
                return
            last = page.evaluate("document.body && document.body.outerHTML", frame)
        except Exception as error:  # the frame is still navigating
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition} not true in {frame.url} ({last})")
        pause(page)


def state(page: FlattrPage, frame: Any) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate(
        "({...document.body.dataset, className: document.body.className,"
        " count: (document.getElementById('count') || {}).textContent,"
        " message: (document.getElementById('message') || {}).textContent,"
        " error: (document.getElementById('error') || {}).textContent})", frame)
    return value


def click_flattr(browser: BrowserDriver, page: FlattrPage, frame: Any,
                 expect_window: bool) -> FlattrPage | None:
    """Click the button's Flattr as a user would; returns the window it opened."""
    if isinstance(browser, ExtensionBrowser):
        assert isinstance(page, ChromiumPage)
        if not expect_window:
            frame.click("#flattr")
            return None
        with page.page.context.expect_page() as opened:
            frame.click("#flattr")
        return browser.wrap(opened.value)
    assert isinstance(browser, FirefoxBrowser) and isinstance(frame, FirefoxFrame)
    before = {c["context"] for c in browser.bidi.get_tree(0)}
    browser.bidi.evaluate("void document.getElementById('flattr').click()", frame.context,
                          user_activation=True)
    if not expect_window:
        return None
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        fresh = [c for c in browser.bidi.get_tree(0) if c["context"] not in before]
        if fresh:
            window = FirefoxPage(browser, str(fresh[0]["context"]))
            browser.pages.append(window)
            return window
        if time.monotonic() > deadline:
            raise TimeoutError("the button opened no window")
        time.sleep(0.05)


def api_get(site: Site, path: str) -> Any:
    request = urllib.request.Request(site.api + path, headers={"Accept": "application/json"})  # noqa: S310 - https to the fake site
    with urllib.request.urlopen(request, context=site._tls, timeout=30) as resp:  # noqa: S310 - https to the fake site
        return json.loads(resp.read())


def api_post(site: Site, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - https to the fake site
        site.api + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=site._tls, timeout=30) as resp:  # noqa: S310 - https to the fake site
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def frame_sizes(page: FlattrPage) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('iframe.FlattrButton-frame')]"
        ".map((f) => [f.src, [Number(f.width), Number(f.height)]]))")
    return sizes


# -- the tests -----------------------------------------------------------------------

ARTICLES = """
<article><h2>Item one</h2>
<a class="FlattrButton" style="display:none;" title="Item one"
   rel="flattr;owner:partner:shop:1;tags:shoes,red;button:compact;"
   href="https://shop.example/item/1">First item<br>of the shop</a></article>
<article><h2>Item two</h2>
<a class="FlattrButton" style="display:none;" title="Item two"
   data-fvar-owner="twitter:user:id:123" data-fvar-category="software" data-fvar-popout="0"
   href="https://shop.example/item/2">Second item</a></article>
<article><h2>Our blog</h2>
<a class="FlattrButton" style="display:none;" title="Shop blog"
   href="https://shop.example/blog">The shop's own blog</a></article>
<article><h2>Someone's famous thing</h2>
<a class="FlattrButton" style="display:none;" href="{seeded}">Seeded</a></article>
"""


def test_partner_buttons_flattr_hook_verify_and_claim(browser: BrowserDriver,
                                                      partner: Partner) -> None:
    site = partner.site
    seeded = api_get(site, f"/rest/v2/things/{SEEDED_THING}")
    loader = (partner.loader_base + "/js/0.6/load.js?mode=auto&https=1&uid=flattr"
              "&category=text&language=sv_SE&html5-key-prefix=data-fvar")
    url = partner.pages.put("/articles", partner_page(loader, ARTICLES.format(
        seeded=seeded["url"])))
    page = browser.open(url)

    # They render: four HTTPS iframes (https=1), each with its count.
    one = frame_for(page, "item%2F1")
    two = frame_for(page, "item%2F2")
    blog = frame_for(page, "shop.example%2Fblog")
    three = frame_for(page, "url=" + quote(seeded["url"], safe=""))
    for frame in (one, two, blog, three):
        assert frame.url.startswith("https://api.flattr.com/button/view/?"), frame.url
        in_frame(page, frame, "document.body.dataset.state === 'ready'")
    assert page.evaluate("document.querySelectorAll('a.FlattrButton').length") == 0
    first = state(page, one)
    assert (first["className"], first["count"], first["popout"]) == ("compact", "0", "1")
    assert (state(page, two)["className"], state(page, two)["popout"]) == ("default", "0")
    assert state(page, three)["count"] == str(seeded["flattrs"]) and seeded["flattrs"] > 0
    # The loader's uid is the default owner; a button's own owner replaces it.
    assert "uid=flattr" in blog.url and "uid=" not in one.url and "uid=" not in two.url
    if isinstance(page, ChromiumPage):  # a real hover (BiDi cannot hover into a frame)
        height = frame_sizes(page)[one.url][1]
        one.hover("#button")
        in_frame(page, one, "!document.getElementById('popout').hidden")
        assert "Item one" in page.evaluate("document.getElementById('popout').textContent", one)
        page.wait_for(f"document.querySelector('iframe').height > {height}")
    # The extension's content script stays off the partner page and its buttons.
    assert page.session_extension() is None and page.events("flattr-installed") == []
    assert page.events("flattr-installed", one) == []

    # A visitor who is not logged in clicks: Flattr asks to log in, then comes back
    # and the flattr is made.
    window = click_flattr(browser, page, one, expect_window=True)
    assert window is not None
    log_in(window, "alice")
    in_frame(page, one, "document.body.dataset.state === 'flattred'")
    assert state(page, one)["count"] == "1"

    # The thing exists with its owner identifier and the definition's metadata.
    event = partner.hooks.wait_for("pendingclickcreate")
    thing_id = int(event.form["thing_id"])
    assert event.form == {
        "_event": "pendingclickcreate", "thing_id": str(thing_id),
        "thing_owner_id": "partner:shop:1", "thing_clicks_total": "1",
        "flattrer_username": "alice", "claim_url": f"https://flattr.com/claim/{thing_id}"}
    thing = api_get(site, f"/rest/v2/things/{thing_id}")
    assert (thing["url"], thing["title"], thing["description"], thing["tags"],
            thing["category"], thing["language"], thing["owner"], thing["flattrs"]) == (
        "https://shop.example/item/1", "Item one", "First item\nof the shop",
        ["shoes", "red"], "text", "sv_SE", None, 1)

    # The partner verifies its user's Flattr account: the pending thing is claimed.
    site.create_user("shopper")
    status, answer = api_post(site, "/rest/v2/users/shopper/verify", partner.token,
                              {"identity": "partner:shop:1"})
    assert status == 200, answer
    assert api_get(site, f"/rest/v2/things/{thing_id}")["owner"]["username"] == "shopper"

    # Reloaded, the button shows the new count and the claim; a second flattr by the
    # same user gets the documented flattr_once, shown in the button.
    page = browser.open(url)
    one = frame_for(page, "item%2F1")
    in_frame(page, one, "document.body.dataset.state === 'ready'")
    assert (state(page, one)["count"], state(page, one)["claimed"]) == ("1", "true")
    click_flattr(browser, page, one, expect_window=False)
    in_frame(page, one, "document.body.dataset.error === 'flattr_once'")
    assert "already flattred" in state(page, one)["message"]
    assert partner.hooks.rejected == []

    # The extension is installed and working in this very browser.
    home = browser.open("https://flattr.com/")
    home.wait_event("flattr-installed")
    assert page.session_extension() is None and page.events("flattr-installed") == []


MANUAL = """
<p><a class="FlattrButton" href="https://b.example/manual" title="Manual one"
      rel="flattr;uid:flattr;">A manual button</a></p>
<p><a class="FlattrButton" title="No URL here" rel="flattr;uid:flattr;">no url</a></p>
<p><a class="FlattrButton" href="https://b.example/badcat" title="Bad category"
      rel="flattr;uid:flattr;category:music;">bad category</a></p>
<p><a class="FlattrButton" href="https://b.example/fb" title="Facebook owner"
      data-flattr-owner="facebook:42">unsupported owner</a></p>
<div id="own"></div>
<div id="ghost"><span>Ghost's thing:</span></div>
"""

RENDER_JS = """
FlattrLoader.render({url: 'https://b.example/alice', uid: 'alice', title: 'Alice own',
                     description: 'Mine', button: 'default'}, 'own', 'replace');
FlattrLoader.render({url: 'https://b.example/ghost', uid: 'ghost', title: 'Ghost thing'},
                    document.getElementById('ghost'), 'append');
"""


def test_manual_mode_javascript_api_and_invalid_definitions(browser: BrowserDriver,
                                                            partner: Partner) -> None:
    loader = partner.loader_base + "/js/0.6/load.js?mode=manual&button=compact"
    url = partner.pages.put("/manual", partner_page(loader, MANUAL))
    page = browser.open(url)
    page.wait_for("window.FlattrLoader && window.FlattrLoader.simulated === true")
    # Manual mode: nothing happens until the page calls setup() / render().
    assert page.evaluate("document.querySelectorAll('iframe').length") == 0
    assert page.evaluate("FlattrLoader.setup().length") == 4
    assert page.evaluate("FlattrLoader.setup().length") == 0  # each definition once
    assert page.evaluate("new Promise((done) => FlattrLoader.addLoadEvent(() => done('ran')))"
                         ) == "ran"  # after load: at once
    page.evaluate(f"void (() => {{ {RENDER_JS} }})()")
    bad_calls = page.evaluate("""[["nope", "append"], ["own-missing", "replace"],
        [document.body, "inside"]].map(([target, how]) => {
          try { FlattrLoader.render({url: 'https://b.example/x', uid: 'flattr'}, target, how);
                return "rendered"; } catch (error) { return error.message; } })""")
    assert bad_calls == ['FlattrLoader.render: no element "nope"',
                         'FlattrLoader.render: no element "own-missing"',
                         "FlattrLoader.render: insert method must be append, before or replace,"
                         ' got "inside"'], bad_calls
    scheme = "http" if browser.name == "chromium" else "https"  # that of load.js

    errors = {
        "No+URL+here": ("invalid_definition", "url is required"),
        "Bad+category": ("invalid_definition", "category 'music' is not one of"),
        "Facebook+owner": ("unsupported_owner", "'facebook:42' is not a supported identifier"),
        "Ghost+thing": ("not_found", "no Flattr user named 'ghost'"),
    }
    for needle, (code, words) in errors.items():
        frame = frame_for(page, needle)
        assert frame.url.startswith(f"{scheme}://api.flattr.com/button/view/?"), frame.url
        in_frame(page, frame, "document.body.dataset.state === 'error'")
        shown = state(page, frame)
        assert words in shown["error"], shown
        assert page.evaluate("document.body.dataset.error", frame) == code
    # The errored iframes grew to show their text (the button asked the loader).
    page.wait_for("[...document.querySelectorAll('iframe.FlattrButton-frame')]"
                  ".filter((f) => Number(f.width) >= 250).length === 4")
    sizes = frame_sizes(page)
    assert sum(1 for w, _ in sizes.values() if w >= 250) == 4, sizes
    ghost_frame = page.evaluate("document.querySelector('#ghost iframe') !== null")
    assert ghost_frame, "append put the iframe inside the target"

    manual = frame_for(page, "b.example%2Fmanual")
    in_frame(page, manual, "document.body.dataset.state === 'ready'")
    assert state(page, manual)["className"] == "compact"  # the loader's default
    own = frame_for(page, "Alice+own")
    in_frame(page, own, "document.body.dataset.state === 'ready'")
    assert state(page, own)["className"] == "default"  # the button's own setting

    # Alice flattrs her own thing: the documented flattr_owner, in the button.
    window = click_flattr(browser, page, own, expect_window=True)
    assert window is not None
    log_in(window, "alice")
    in_frame(page, own, "document.body.dataset.error === 'flattr_owner'")
    assert "You own this thing" in state(page, own)["message"]
    # The manual button still works for her.
    click_flattr(browser, page, manual, expect_window=False)
    in_frame(page, manual, "document.body.dataset.state === 'flattred'")
    assert state(page, manual)["count"] == "1"
    assert page.session_extension() is None and page.events("flattr-installed") == []

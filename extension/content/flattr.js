// Flattr Companion: the flattr.com page protocol (document 000, docs/protocol.md).
//
// Runs at document_start in the top frame of https://flattr.com/* pages only.
// Page CustomEvents are always untrusted (isTrusted is false for anything a page
// dispatches), so the protection is: exact origin, top frame, strict validation of
// every detail (lib/validate.js), and one token per handshake started on this page.
// Rejected events are logged with console.warn and otherwise ignored.
"use strict";

(() => {
  // The manifest already restricts matches and frames; check again because a
  // content script must never act for another origin (http:, another port, a
  // look-alike host) or inside a frame.
  if (location.protocol !== "https:" || location.host !== "flattr.com" || window.top !== window) return;

  const validate = globalThis.FlattrValidate;
  const BUILD = typeof globalThis.FLATTR_BUILD === "string" ? globalThis.FLATTR_BUILD : "dev";
  const VERSION = chrome.runtime.getManifest().version;
  const EXTENSION_ID = chrome.runtime.id;
  const SESSION_KEY = "extension";

  // Tokens are accepted only as the answer to our own flattr-authenticate: each
  // dispatched flattr-authenticate allows one flattr-token on this page.
  let handshakesOpen = 0;
  let port = null;
  let gone = false;

  function warn(reason) {
    console.warn(`flattr-companion: ignored: ${reason}`);
  }

  /** Dispatch an event the page can read. Chrome structured-clones `detail` into the
   *  page world; Firefox needs cloneInto, or the page gets "Permission denied". */
  function dispatch(name, detail) {
    let pageDetail = detail === undefined ? null : detail;
    if (pageDetail !== null && typeof cloneInto === "function") {
      pageDetail = cloneInto(pageDetail, window); // eslint-disable-line no-undef
    }
    document.dispatchEvent(new CustomEvent(name, { detail: pageDetail }));
  }

  function extensionAlive() {
    try {
      return Boolean(chrome.runtime && chrome.runtime.id);
    } catch (error) {
      return false; // "Extension context invalidated"
    }
  }

  async function toWorker(message) {
    if (!extensionAlive()) throw new Error("the extension is gone");
    const reply = await chrome.runtime.sendMessage(message);
    if (!reply || reply.ok !== true) {
      const error = reply && reply.error ? reply.error : { code: "internal", message: "no reply" };
      throw Object.assign(new Error(error.message), { code: error.code });
    }
    return reply;
  }

  function readDetail(event) {
    try {
      return event.detail;
    } catch (error) {
      return undefined;
    }
  }

  function onTrigger(event) {
    const checked = validate.triggerDetail(readDetail(event));
    if (!checked.ok) return warn(checked.reason);
    handshakesOpen = Math.min(handshakesOpen + 1, 4);
    dispatch("flattr-authenticate", { build: BUILD, id: EXTENSION_ID, version: VERSION });
  }

  async function onToken(event) {
    const checked = validate.tokenDetail(readDetail(event));
    if (!checked.ok) return warn(checked.reason);
    if (handshakesOpen === 0) return warn("flattr-token without a preceding flattr-trigger on this page");
    handshakesOpen -= 1;
    let authenticated = false;
    try {
      // The detail goes on as checked (a fresh copy of the documented keys); the
      // worker relays it to the host as it is.
      const reply = await toWorker({ type: "page-token", detail: checked.value });
      // On the sign-in tab the extension opened itself, the tab has been closed
      // instead of answering (document 000, "Initiated by extension").
      if (reply.closed === true) return;
      authenticated = reply.authenticated === true;
    } catch (error) {
      console.warn(`flattr-companion: storing the token failed: ${error.message}`);
    }
    if (!gone) dispatch("flattr-authenticated", { authenticated });
  }

  async function onSubscription(event) {
    const checked = validate.subscriptionDetail(readDetail(event));
    if (!checked.ok) return warn(checked.reason);
    try {
      await toWorker({ type: "page-subscription", detail: checked.value });
    } catch (error) {
      console.warn(`flattr-companion: updating the subscription failed: ${error.message}`);
    }
  }

  const listeners = {
    "flattr-trigger": onTrigger,
    "flattr-token": onToken,
    "flattr-subscription": onSubscription,
  };

  /** The extension was disabled, reloaded or removed: say so and stop listening.
   *  Chromium runs this (port onDisconnect); in Firefox content/watchdog.js does. */
  function uninstall() {
    if (gone) return;
    gone = true;
    for (const [name, listener] of Object.entries(listeners)) document.removeEventListener(name, listener);
    try {
      sessionStorage.removeItem(SESSION_KEY);
    } catch (error) {
      // sessionStorage can be blocked; nothing to remove then
    }
    dispatch("flattr-uninstalled");
  }

  // The port carries no messages. Its onDisconnect fires when the extension goes
  // away; it also fires when Chromium stops an idle service worker, in which case
  // chrome.runtime.id is still defined and we simply reconnect.
  function watchExtension() {
    if (!extensionAlive()) return uninstall();
    try {
      port = chrome.runtime.connect({ name: "flattr-page" });
    } catch (error) {
      return uninstall();
    }
    port.onDisconnect.addListener(() => {
      port = null;
      void chrome.runtime.lastError; // silence "Unchecked runtime.lastError"
      if (extensionAlive()) setTimeout(watchExtension, 100);
      else uninstall();
    });
  }

  // Answer content/watchdog.js (page world) synchronously. Firefox discards this
  // script on removal without running any of it, so the missing answer is the only
  // signal there (docs/firefox.md). Kept after uninstall() so the watchdog stays
  // quiet once this script has reported removal itself (Chromium).
  const pong = () => document.dispatchEvent(new CustomEvent("flattr-companion-pong"));
  document.addEventListener("flattr-companion-ping", pong);
  pong(); // arms a watchdog that started first

  // Identification (document 000): sessionStorage first, so the page's own scripts
  // see it from their first line; the event once the page's scripts have had the
  // chance to listen (document_start runs before any of them).
  try {
    sessionStorage.setItem(SESSION_KEY, VERSION);
  } catch (error) {
    console.warn("flattr-companion: sessionStorage is unavailable; identification by event only");
  }
  for (const [name, listener] of Object.entries(listeners)) document.addEventListener(name, listener);
  watchExtension();
  function announce() {
    if (!gone) dispatch("flattr-installed");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", announce, { once: true });
  else announce();
})();

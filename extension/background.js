// Flattr Companion: service worker (Chromium) / background script (Firefox).
//
// The worker decides nothing. It keeps one native port to the host
// `com.flattr.companion` (docs/protocol.md), relays validated requests from the
// flattr.com content script and from the popup, and forwards the host's `state`
// events to open popups. Persistent state (token, subscription, queue) lives in the
// host only: the extension uses no chrome.storage at all.
//
// Everything that must survive a worker restart is re-created at start-up: the
// listeners below are registered synchronously at the top level (MV3 rule) and the
// native port is opened at once.
"use strict";

if (typeof globalThis.FlattrValidate === "undefined" && typeof importScripts === "function") {
  // Chromium loads only this file as the service worker; Firefox lists all three
  // files in background.scripts.
  importScripts("build.js", "lib/validate.js");
}

const HOST_NAME = "com.flattr.companion";
const SIGN_IN_URL = "https://flattr.com/oauth/ext";
const SIGN_IN_PATH = "/oauth/ext";
const FIX_COMMANDS = ["flattr-host install --browser chromium", "flattr-host doctor"];

// Chrome drops a host frame that is not valid JSON without a word, so every request
// needs its own deadline. set-token and flattr wait for a durable commit: allow more.
const REQUEST_TIMEOUT_MS = { default: 5000, hello: 10000, "set-token": 15000, flattr: 15000 };
// Reconnect after onDisconnect: 0.5 s, 1 s, 2 s ... capped at 30 s. A popup or a page
// request while disconnected reconnects at once.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 30000;
const MAX_REQUEST_ID = Number.MAX_SAFE_INTEGER; // protocol: 0 <= id <= 2^53 - 1

/** Error with a protocol-like code: host codes, or our own `host_unavailable`, `timeout`. */
class HostError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------
// The native link: runtime plumbing only (a port, request ids, pending callbacks).
// Request payloads are never kept here, so a token passes through and is gone.
// ---------------------------------------------------------------------------
const link = {
  port: null,
  nextId: 1,
  pending: new Map(), // id -> {resolve, reject, timer}
  attempts: 0,
  reconnectTimer: null,
  readyWaiters: [], // {resolve, reject} waiting for hello
  // What the popup shows. phase: "connecting" | "ready" | "missing" | "broken".
  status: { phase: "connecting", problem: null, host: null, state: null },
};

function setStatus(patch) {
  Object.assign(link.status, patch);
  broadcastStatus();
}

/** Classify a disconnect reason from chrome.runtime.lastError / port.error. */
function classifyDisconnect(message) {
  const text = String(message || "the host closed the connection");
  if (/not found|no such native application/i.test(text)) {
    return { phase: "missing", problem: `The Flattr Companion host is not installed (${text})` };
  }
  if (/forbidden/i.test(text)) {
    return { phase: "broken", problem: `The host does not allow this extension (${text})` };
  }
  return { phase: "broken", problem: `The Flattr Companion host stopped (${text})` };
}

function connect() {
  if (link.port) return;
  clearTimeout(link.reconnectTimer);
  link.reconnectTimer = null;
  let port;
  try {
    port = chrome.runtime.connectNative(HOST_NAME);
  } catch (error) {
    onLinkDown(String(error && error.message ? error.message : error));
    return;
  }
  link.port = port;
  port.onMessage.addListener((message) => onHostMessage(port, message));
  port.onDisconnect.addListener(() => {
    if (link.port !== port) return;
    const lastError = chrome.runtime.lastError; // reading it also silences Chrome's warning
    const reason = (lastError && lastError.message) || (port.error && port.error.message) || "";
    link.port = null;
    onLinkDown(reason);
  });
  setStatus({ phase: "connecting" });
  sendHello(port);
}

async function sendHello(port) {
  const manifest = chrome.runtime.getManifest();
  try {
    const result = await request(
      "hello",
      { extension: { id: chrome.runtime.id, version: manifest.version, build: String(globalThis.FLATTR_BUILD || "dev") } },
      { skipReady: true },
    );
    if (link.port !== port) return;
    link.attempts = 0;
    setStatus({ phase: "ready", problem: null, host: result.host || null, state: result.state || null });
    for (const waiter of link.readyWaiters.splice(0)) waiter.resolve();
  } catch (error) {
    if (link.port !== port) return;
    console.warn("flattr: hello failed:", error.code, error.message);
    // A host that cannot answer hello is unusable: drop the port and retry later.
    link.port = null;
    try {
      port.disconnect();
    } catch (ignored) {
      // already closed
    }
    onLinkDown(`no answer to hello (${error.message})`);
  }
}

function onLinkDown(reason) {
  const { phase, problem } = classifyDisconnect(reason);
  console.warn("flattr: native host unavailable:", reason);
  for (const [id, entry] of link.pending) {
    clearTimeout(entry.timer);
    entry.reject(new HostError("host_unavailable", problem));
    link.pending.delete(id);
  }
  for (const waiter of link.readyWaiters.splice(0)) {
    waiter.reject(new HostError("host_unavailable", problem));
  }
  setStatus({ phase, problem, host: null });
  scheduleReconnect();
}

function scheduleReconnect() {
  if (link.reconnectTimer !== null) return;
  const delay = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** link.attempts);
  link.attempts = Math.min(link.attempts + 1, 30);
  link.reconnectTimer = setTimeout(() => {
    link.reconnectTimer = null;
    connect();
  }, delay);
}

/** Resolve once hello has been answered; connect now if we are between retries. */
function whenReady(timeoutMs) {
  if (link.status.phase === "ready" && link.port) return Promise.resolve();
  if (!link.port) {
    link.attempts = 0;
    connect();
    if (link.status.phase === "ready" && link.port) return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    const waiter = { resolve, reject };
    const timer = setTimeout(() => {
      link.readyWaiters = link.readyWaiters.filter((w) => w !== waiter);
      reject(new HostError("host_unavailable", link.status.problem || "the host did not answer in time"));
    }, timeoutMs);
    waiter.resolve = () => {
      clearTimeout(timer);
      resolve();
    };
    waiter.reject = (error) => {
      clearTimeout(timer);
      reject(error);
    };
    link.readyWaiters.push(waiter);
  });
}

/**
 * Send one request and resolve with its `result`, or reject with a HostError whose
 * code is the host's error code, `timeout` or `host_unavailable`.
 */
async function request(type, fields = {}, { skipReady = false } = {}) {
  const timeoutMs = REQUEST_TIMEOUT_MS[type] || REQUEST_TIMEOUT_MS.default;
  if (!skipReady) await whenReady(timeoutMs);
  const port = link.port;
  if (!port) throw new HostError("host_unavailable", link.status.problem || "no connection to the host");
  const id = link.nextId;
  link.nextId = link.nextId >= MAX_REQUEST_ID ? 1 : link.nextId + 1;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      link.pending.delete(id);
      reject(new HostError("timeout", `the host did not answer '${type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    link.pending.set(id, { resolve, reject, timer });
    try {
      port.postMessage(Object.assign({}, fields, { id, type }));
    } catch (error) {
      clearTimeout(timer);
      link.pending.delete(id);
      reject(new HostError("host_unavailable", String(error && error.message ? error.message : error)));
    }
  });
}

function onHostMessage(port, message) {
  if (link.port !== port) return;
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    console.warn("flattr: ignoring a host frame that is not an object");
    return;
  }
  if (message.event === "state") {
    if (typeof message.state === "object" && message.state !== null) setStatus({ state: message.state });
    return;
  }
  if (!Number.isSafeInteger(message.id)) {
    if (message.ok === false && message.error) {
      console.warn("flattr: host error without id:", message.error.code, message.error.message);
    }
    return;
  }
  const entry = link.pending.get(message.id);
  if (!entry) return; // late reply after its timeout
  link.pending.delete(message.id);
  clearTimeout(entry.timer);
  if (message.ok === true) {
    entry.resolve(typeof message.result === "object" && message.result !== null ? message.result : {});
  } else {
    const error = message.error || {};
    entry.reject(new HostError(String(error.code || "internal"), String(error.message || "host error")));
  }
}

/** Ask for the current state and remember it (the popup shows it). */
async function refreshState() {
  const state = await request("get-state");
  setStatus({ state });
  return state;
}

// ---------------------------------------------------------------------------
// Popups: long-lived ports named "popup" get every status change.
// ---------------------------------------------------------------------------
const popupPorts = new Set();

function statusSnapshot() {
  return {
    phase: link.status.phase,
    problem: link.status.problem,
    fix: link.status.phase === "missing" || link.status.phase === "broken" ? FIX_COMMANDS : [],
    host: link.status.host,
    state: link.status.state,
  };
}

function broadcastStatus() {
  const message = { kind: "status", status: statusSnapshot() };
  for (const port of popupPorts) {
    try {
      port.postMessage(message);
    } catch (error) {
      popupPorts.delete(port);
    }
  }
}

// Only this extension's own pages have chrome-extension://<our id>/ URLs (content
// scripts report the web page's URL), so the URL identifies the popup even when it
// is opened in a tab.
function isPopupSender(sender) {
  return (
    sender.id === chrome.runtime.id &&
    typeof sender.url === "string" &&
    sender.url.startsWith(chrome.runtime.getURL("popup/"))
  );
}

/** A content script in the top frame of an https://flattr.com page. */
function isFlattrPageSender(sender) {
  return (
    sender.id === chrome.runtime.id &&
    !!sender.tab &&
    sender.frameId === 0 &&
    FlattrValidate.isFlattrPage(sender.url)
  );
}

// ---------------------------------------------------------------------------
// Sign-in tabs opened by the extension (document 000, "Initiated by extension").
// Kept in memory only: the worker stays alive while its native port is open (Chrome
// 105+), which is the only time a handshake can succeed. If the worker was restarted
// in between, the tab is simply not recognised: it stays open and the page gets
// flattr-authenticated instead, which is harmless.
// ---------------------------------------------------------------------------
const signInTabIds = new Set();

async function openSignIn() {
  const tab = await chrome.tabs.create({ url: SIGN_IN_URL, active: true });
  signInTabIds.add(tab.id);
  return { opened: true };
}

/** Close the sign-in tab, opening a new tab first if it is the window's last one. */
async function closeSignInTab(tab) {
  const siblings = await chrome.tabs.query({ windowId: tab.windowId });
  if (siblings.length <= 1) await chrome.tabs.create({ windowId: tab.windowId, active: true });
  await chrome.tabs.remove(tab.id);
  signInTabIds.delete(tab.id);
}

// ---------------------------------------------------------------------------
// Message handlers. Each returns a plain JSON-safe reply object.
// ---------------------------------------------------------------------------
function errorReply(error) {
  const code = error instanceof HostError ? error.code : "internal";
  const message = error instanceof HostError ? error.message : "unexpected error in the extension";
  if (!(error instanceof HostError)) console.error("flattr:", error);
  return { ok: false, error: { code, message } };
}

async function handlePageMessage(message, sender) {
  switch (message.type) {
    case "page-token": {
      const checked = FlattrValidate.tokenDetail({
        accessToken: message.accessToken,
        ...("subscription" in message ? { subscription: message.subscription } : {}),
      });
      if (!checked.ok) return { ok: false, error: { code: "invalid_request", message: checked.reason } };
      let authenticated = false;
      try {
        const result = await request("set-token", checked.value);
        authenticated = result.authenticated === true;
      } catch (error) {
        console.warn("flattr: set-token failed:", error.code, error.message);
      }
      const ownSignIn =
        authenticated &&
        new URL(sender.url).pathname === SIGN_IN_PATH &&
        signInTabIds.has(sender.tab.id);
      if (ownSignIn) {
        try {
          await closeSignInTab(sender.tab);
          return { ok: true, authenticated, closed: true };
        } catch (error) {
          console.warn("flattr: cannot close the sign-in tab:", error && error.message);
        }
      }
      return { ok: true, authenticated, closed: false };
    }
    case "page-subscription": {
      const checked = FlattrValidate.subscription(message.subscription);
      if (!checked.ok) return { ok: false, error: { code: "invalid_request", message: checked.reason } };
      await request("set-subscription", { subscription: checked.value });
      return { ok: true };
    }
    default:
      return { ok: false, error: { code: "unknown_type", message: `unknown page message type` } };
  }
}

async function handlePopupMessage(message) {
  switch (message.type) {
    case "popup-sign-in":
      return { ok: true, result: await openSignIn() };
    case "popup-sign-out":
      return { ok: true, result: await request("sign-out") };
    case "popup-refresh":
      return { ok: true, result: await refreshState() };
    case "popup-flattr": {
      const checked = FlattrValidate.flattrUrl(message.url);
      if (!checked.ok) return { ok: false, error: { code: "invalid_request", message: checked.reason } };
      const result = await request("flattr", { urls: [checked.value] });
      refreshState().catch(() => {});
      return { ok: true, result };
    }
    default:
      return { ok: false, error: { code: "unknown_type", message: "unknown popup message type" } };
  }
}

// ---------------------------------------------------------------------------
// Top-level listeners (registered synchronously on every worker start).
// ---------------------------------------------------------------------------
chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (typeof message !== "object" || message === null || typeof message.type !== "string") return false;
  let handler = null;
  if (message.type.startsWith("page-") && isFlattrPageSender(sender)) handler = handlePageMessage;
  else if (message.type.startsWith("popup-") && isPopupSender(sender)) handler = handlePopupMessage;
  if (!handler) {
    console.warn("flattr: ignoring a message from an unexpected sender:", message.type);
    return false;
  }
  handler(message, sender).then(sendResponse, (error) => sendResponse(errorReply(error)));
  return true; // the reply is sent asynchronously
});

chrome.runtime.onConnect.addListener((port) => {
  if (port.name === "popup" && isPopupSender(port.sender)) {
    popupPorts.add(port);
    port.onDisconnect.addListener(() => popupPorts.delete(port));
    port.postMessage({ kind: "status", status: statusSnapshot() });
    if (!link.port) {
      // The user is looking: retry now instead of waiting for the backoff.
      link.attempts = 0;
      connect();
    } else if (link.status.phase === "ready") {
      refreshState().catch(() => {});
    }
    return;
  }
  if (port.name === "flattr-page" && isFlattrPageSender(port.sender)) {
    // The page's content script holds this port only to notice when the extension
    // goes away (disabled, reloaded, removed): its onDisconnect then fires there.
    return;
  }
  port.disconnect();
});

chrome.tabs.onRemoved.addListener((tabId) => {
  signInTabIds.delete(tabId);
});

connect();

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

// Chrome drops a host frame that is not valid JSON without a word, so every request
// needs its own deadline. set-token, flattr and retry-failed wait for a durable
// commit: allow more.
const REQUEST_TIMEOUT_MS = { default: 5000, hello: 10000, "set-token": 15000, flattr: 15000, "retry-failed": 15000 };
// Reconnect after onDisconnect: 0.5 s, 1 s, 2 s ... capped at 30 s. A popup or a page
// request while disconnected reconnects at once.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_CAP_MS = 30000;
const MAX_REQUEST_ID = Number.MAX_SAFE_INTEGER; // protocol: 0 <= id <= 2^53 - 1
// `busy`: another host process held the store; nothing changed (docs/protocol.md#errors).
// Requests from the flattr.com page have no user to click again: try a few more times.
const BUSY_RETRIES = 3;
const BUSY_PAUSE_MS = 1000;

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
  // What the popup shows. phase: "connecting" | "ready" | "missing" | "broken";
  // problem: null or {code: "missing" | "forbidden" | "stopped", detail: the
  // browser's own words}, which the popup puts into the user's language.
  status: { phase: "connecting", problem: null, host: null, state: null },
};

function setStatus(patch) {
  Object.assign(link.status, patch);
  broadcastStatus();
}

/** Classify a disconnect reason from chrome.runtime.lastError / port.error. */
function classifyDisconnect(message) {
  const detail = String(message || "the host closed the connection");
  if (/not found|no such native application/i.test(detail)) {
    return { phase: "missing", problem: { code: "missing", detail } };
  }
  if (/forbidden/i.test(detail)) return { phase: "broken", problem: { code: "forbidden", detail } };
  return { phase: "broken", problem: { code: "stopped", detail } };
}

/** The English line for logs and for callers that are not the popup. */
function problemText(problem) {
  return problem ? `the Flattr Companion host is unavailable (${problem.code}: ${problem.detail})` : "";
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
  // A retry keeps the last problem on screen until hello answers or the new port
  // fails too: the popup must not flash "connecting" and hide the fix each step.
  if (link.status.phase !== "missing" && link.status.phase !== "broken") setStatus({ phase: "connecting" });
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
    setAttention(result.attention, true);
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
  stopHeartbeat();
  const { phase, problem } = classifyDisconnect(reason);
  console.warn("flattr: native host unavailable:", reason);
  for (const [id, entry] of link.pending) {
    clearTimeout(entry.timer);
    entry.reject(new HostError("host_unavailable", problemText(problem)));
    link.pending.delete(id);
  }
  for (const waiter of link.readyWaiters.splice(0)) {
    waiter.reject(new HostError("host_unavailable", problemText(problem)));
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
      reject(new HostError("host_unavailable", problemText(link.status.problem) || "the host did not answer in time"));
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
  if (!port) throw new HostError("host_unavailable", problemText(link.status.problem) || "no connection to the host");
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

/** request(), sent again after a pause while the host answers `busy`. */
async function requestRetryingBusy(type, fields) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await request(type, fields);
    } catch (error) {
      if (!(error instanceof HostError) || error.code !== "busy" || attempt >= BUSY_RETRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, BUSY_PAUSE_MS));
    }
  }
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
      // The page's flattr-token detail as the content script checked it, relayed as
      // it is: the host checks it again by the same rules (docs/protocol.md).
      let authenticated = false;
      try {
        const result = await requestRetryingBusy("set-token", { detail: message.detail });
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
      await requestRetryingBusy("set-subscription", { detail: message.detail });
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
    case "popup-retry-failed": {
      const result = await request("retry-failed");
      if (result.state && typeof result.state === "object") setStatus({ state: result.state });
      return { ok: true, result };
    }
    case "popup-attention-permissions":
      // The popup was granted the optional attention permissions. permissions.onAdded
      // says so too; whichever comes first starts relaying, a second snapshot is
      // harmless (it begins with a reset).
      onPermissionsChanged();
      return { ok: true, result: {} };
    case "popup-flattr": {
      const checked = FlattrValidate.flattrUrl(message.url);
      if (!checked.ok) return { ok: false, error: { code: "invalid_request", message: checked.reason } };
      // manual: the host also counts it as reaching the page's next attention threshold.
      const result = await request("flattr", { urls: [checked.value], manual: true });
      refreshState().catch(() => {});
      return { ok: true, result };
    }
    case "popup-attention-page": {
      if (typeof message.url !== "string") return { ok: false, error: { code: "invalid_request", message: "url must be a string" } };
      return { ok: true, result: await request("attention-page", { url: message.url }) };
    }
    case "popup-attention-site": {
      if (typeof message.site !== "string" || typeof message.enabled !== "boolean") {
        return { ok: false, error: { code: "invalid_request", message: "site must be a string and enabled a boolean" } };
      }
      const result = await request("attention-site", { site: message.site, enabled: message.enabled });
      setAttention(result, false);
      return { ok: true, result };
    }
    case "popup-attention-count-all": {
      if (typeof message.enabled !== "boolean") return { ok: false, error: { code: "invalid_request", message: "enabled must be a boolean" } };
      const result = await request("attention-count-all", { enabled: message.enabled });
      setAttention(result, false);
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
    port.onDisconnect.addListener(() => {
      popupPorts.delete(port);
      refreshFocus(); // the popup closed: focus is back in a window (or elsewhere)
    });
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
  relayTabClosed(tabId);
});

// ---------------------------------------------------------------------------
// Attention signals (docs/attention.md, docs/protocol.md#attention). The host decides
// what to flattr; the worker only relays browser events, and only while the host says
// some site counts (`attention.active`): by default no URL is sent for attention at
// all. Incognito tabs are relayed with `url: null`. The one timer here is the
// heartbeat: it reads chrome.idle and relays `activity` at the cadence the host asked
// for.
//
// `tabs`, `idle` and `scripting` are optional permissions (docs/extension.md,
// Permissions): the popup requests them when the user opts a site in. Until they are
// granted `chrome.idle` does not exist and tab URLs are hidden, so nothing accrues:
// no activity is relayed without `idle`.
// ---------------------------------------------------------------------------
const IDLE_DETECTION_S = 15; // Chrome's minimum; matches the 15 s activity window
const MAX_SIGNALS_PER_FRAME = 100;
const attention = {
  active: false,
  heartbeatMs: 10000,
  heartbeatTimer: null,
  pending: [],
  flushQueued: false,
  focus: undefined, // the last window-focus relayed (null: no browser window has focus)
};

/** Apply the host's `{active, heartbeatMs}` (hello, or a settings reply). */
function setAttention(info, connected) {
  if (!info || typeof info !== "object") return;
  const wasActive = attention.active;
  attention.active = info.active === true;
  if (Number.isSafeInteger(info.heartbeatMs) && info.heartbeatMs >= 10) attention.heartbeatMs = info.heartbeatMs;
  if (attention.active && (connected || !wasActive)) {
    sendSnapshot().catch((error) => console.warn("flattr: attention snapshot failed:", error && error.message));
    startHeartbeat();
  } else if (!attention.active) {
    stopHeartbeat();
    if (wasActive) relay({ signal: "reset" }, true); // the host forgets the tabs it was told about
  }
}

function startHeartbeat() {
  stopHeartbeat();
  attention.heartbeatTimer = setInterval(onHeartbeat, attention.heartbeatMs);
}

function stopHeartbeat() {
  if (attention.heartbeatTimer !== null) clearInterval(attention.heartbeatTimer);
  attention.heartbeatTimer = null;
}

function onHeartbeat() {
  refreshFocus();
  if (!chrome.idle) return; // not granted yet: an unknown user accrues nothing
  chrome.idle.queryState(IDLE_DETECTION_S).then((state) => {
    if (state === "active") relay({ signal: "activity" });
  }, () => {});
}

/** The focused browser window's id, or null when none has focus. */
async function focusedWindowId() {
  const win = await chrome.windows.getLastFocused().catch(() => null);
  return win && win.focused && isId(win.id) ? win.id : null;
}

/**
 * Relay the focus if it differs from the last one relayed. windows.onFocusChanged is
 * not sent on every platform when focus comes back from the action popup (headless
 * Chromium sends none), so the heartbeat and the popup closing re-read it.
 */
function refreshFocus() {
  if (!attention.active) return;
  focusedWindowId().then((windowId) => {
    if (windowId !== attention.focus) relayFocus(windowId);
  }, () => {});
}

function relayFocus(windowId) {
  attention.focus = windowId;
  relay({ signal: "window-focus", windowId });
}

/** Queue a signal; all signals of one task go to the host in one frame, in order. */
function relay(signal, force = false) {
  if ((!attention.active && !force) || !link.port || link.status.phase !== "ready") return;
  attention.pending.push(signal);
  if (attention.flushQueued) return;
  attention.flushQueued = true;
  queueMicrotask(() => {
    attention.flushQueued = false;
    while (attention.pending.length) {
      const signals = attention.pending.splice(0, MAX_SIGNALS_PER_FRAME);
      request("attention-signals", { signals }).catch((error) => {
        console.warn("flattr: attention signals not delivered:", error.code, error.message);
      });
    }
  });
}

function isId(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

/** A tab signal; a private tab's URL never leaves the browser. */
function tabSignal(kind, tab) {
  if (!tab || !isId(tab.id) || !isId(tab.windowId)) return null;
  const incognito = tab.incognito === true;
  const signal = {
    signal: kind,
    tabId: tab.id,
    windowId: tab.windowId,
    url: incognito || typeof tab.url !== "string" ? null : tab.url,
    incognito,
  };
  if (kind === "audible-changed") {
    signal.audible = tab.audible === true;
    signal.muted = !!(tab.mutedInfo && tab.mutedInfo.muted);
  }
  return signal;
}

/** reset, then the browser's current state: sent on (re)connect and on activation. */
async function sendSnapshot() {
  const signals = [{ signal: "reset" }];
  attention.focus = await focusedWindowId();
  signals.push({ signal: "window-focus", windowId: attention.focus });
  for (const tab of await chrome.tabs.query({ active: true })) {
    const signal = tabSignal("tab-activated", tab);
    if (signal) signals.push(signal);
  }
  for (const tab of await chrome.tabs.query({ audible: true })) {
    const signal = tabSignal("audible-changed", tab);
    if (signal) signals.push(signal);
  }
  if (chrome.idle) signals.push({ signal: "idle", state: await chrome.idle.queryState(IDLE_DETECTION_S) });
  for (const signal of signals) relay(signal);
}

function onTabActivated(info) {
  if (!attention.active) return;
  chrome.tabs.get(info.tabId).then((tab) => {
    const signal = tabSignal("tab-activated", tab);
    if (signal) relay(signal);
  }, () => {});
}

function onTabUpdated(tabId, change, tab) {
  if (!attention.active) return;
  const kinds = [];
  if (typeof change.url === "string") kinds.push("url-changed");
  if (change.status === "complete") kinds.push("load-finished");
  if ("audible" in change || "mutedInfo" in change) kinds.push("audible-changed");
  for (const kind of kinds) {
    const signal = tabSignal(kind, tab);
    if (signal) relay(signal);
  }
}

function relayTabClosed(tabId) {
  if (isId(tabId)) relay({ signal: "tab-closed", tabId });
}

function onWindowFocusChanged(windowId) {
  if (!attention.active) return;
  relayFocus(windowId === chrome.windows.WINDOW_ID_NONE || !isId(windowId) ? null : windowId);
}

/** chrome.idle.onStateChanged; the e2e suite calls it to stand in for a real idle user. */
function onIdleStateChanged(state) {
  if (state === "active" || state === "idle" || state === "locked") relay({ signal: "idle", state });
}

/** Listen to chrome.idle once it exists (granted now or at an earlier start). */
function watchIdle() {
  if (!chrome.idle || chrome.idle.onStateChanged.hasListener(onIdleStateChanged)) return;
  chrome.idle.setDetectionInterval(IDLE_DETECTION_S);
  chrome.idle.onStateChanged.addListener(onIdleStateChanged);
}

/** The optional permissions changed: watch idle, and resend what the browser shows. */
function onPermissionsChanged() {
  watchIdle();
  if (attention.active) {
    sendSnapshot().catch((error) => console.warn("flattr: attention snapshot failed:", error && error.message));
  }
}

chrome.tabs.onActivated.addListener(onTabActivated);
chrome.tabs.onUpdated.addListener(onTabUpdated);
chrome.windows.onFocusChanged.addListener(onWindowFocusChanged);
chrome.permissions.onAdded.addListener(onPermissionsChanged);
chrome.permissions.onRemoved.addListener(onPermissionsChanged);
watchIdle();

connect();

// Flattr Companion popup: shows what the host says (via the service worker) and
// sends the user's actions (sign in/out, flattr this page, retry failed, attention
// choices). It keeps no state of its own. Every text comes from
// _locales/<language>/messages.json through chrome.i18n.
"use strict";

const $ = (id) => document.getElementById(id);
const PAUSE_KEYS = {
  signed_out: "pausedSignedOut",
  subscription_inactive: "pausedSubscriptionInactive",
  rate_limited: "pausedRateLimited",
};
const PROBLEM_KEYS = { missing: "problemMissing", forbidden: "problemForbidden", stopped: "problemStopped" };
// Requested together when the user first opts a site in (docs/extension.md).
const ATTENTION_PERMISSIONS = { permissions: ["tabs", "idle", "scripting"] };

// What the API said of delivered items, when it said more than "accepted"
// (docs/protocol.md#bulk-answers); "ok" and "accepted" need no note.
const OUTCOME_KEYS = {
  flattr_once: "outcomeFlattrOnce",
  flattr_owner: "outcomeFlattrOwner",
  invalid_url: "outcomeInvalidUrl",
};

let current = null; // last status snapshot from the worker
let installName = "all"; // FlattrBrowser.detect(), for the fix commands

/** The message `key` in the user's language, with `$1`... filled from `subs`. */
function t(key, subs) {
  const text = chrome.i18n.getMessage(key, subs === undefined ? undefined : [].concat(subs).map(String));
  return text || key;
}

function localize() {
  const language = chrome.i18n.getUILanguage();
  if (language) document.documentElement.lang = language.replace("_", "-");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

/** Information goes to the polite live region, errors to the alert; each clears the other. */
function showMessage(text, kind = "info") {
  $("message").textContent = kind === "error" ? "" : text;
  $("error").textContent = kind === "error" ? text : "";
}

function count(value) {
  return Number.isSafeInteger(value) && value >= 0 ? value : 0;
}

function formatTime(ms) {
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat(chrome.i18n.getUILanguage(), options).format(new Date(ms));
}

function renderQueue(queue) {
  for (const [id, value] of [
    ["queue-pending", queue.pending],
    ["queue-inflight", queue.inFlight],
    ["queue-failed", queue.failed],
    ["queue-expired", queue.expired],
  ]) {
    $(id).textContent = String(count(value));
    $(id).dataset.count = String(count(value));
  }
  const paused = typeof queue.paused === "string" ? queue.paused : "";
  $("queue-paused").textContent = paused ? (PAUSE_KEYS[paused] ? t(PAUSE_KEYS[paused]) : t("pausedOther", paused)) : t("pausedNo");
  $("queue-paused").dataset.paused = paused;
  const next = Number.isSafeInteger(queue.nextAttemptAt) && queue.nextAttemptAt > 0 ? queue.nextAttemptAt : null;
  $("queue-next").dataset.at = next === null ? "" : String(next);
  $("queue-next").textContent = next === null ? t("nextAttemptNone") : next <= Date.now() ? t("nextAttemptNow") : formatTime(next);
  $("queue-done").textContent = deliveredText(queue);
  $("retry-failed").hidden = count(queue.failed) === 0;
}

function renderProblem(status) {
  const problem = status.phase === "missing" || status.phase === "broken";
  $("host-problem").hidden = !problem;
  const info = status.problem && typeof status.problem === "object" ? status.problem : null;
  $("host-problem-text").textContent =
    problem && info ? t(PROBLEM_KEYS[info.code] || "problemStopped", String(info.detail || "")) : "";
  $("host-fix").textContent = problem ? FlattrBrowser.fixCommands(installName).join("\n") : "";
  $("host-fix").dataset.browser = installName;
  $("host-get").hidden = status.phase !== "missing";
}

function renderVersions(status) {
  const manifest = chrome.runtime.getManifest();
  const build = String(globalThis.FLATTR_BUILD || "dev");
  const host = status.phase === "ready" && status.host && typeof status.host.version === "string" ? status.host.version : "";
  const footer = $("versions");
  footer.dataset.extension = manifest.version;
  footer.dataset.host = host;
  footer.textContent = host ? t("versions", [manifest.version, build, host]) : t("versionsNoHost", [manifest.version, build]);
}

function deliveredText(queue) {
  const outcomes = queue.outcomes && typeof queue.outcomes === "object" ? queue.outcomes : {};
  const notes = Object.keys(outcomes)
    .filter((word) => word !== "ok" && word !== "accepted" && Number.isSafeInteger(outcomes[word]))
    .sort()
    .map((word) => `${count(outcomes[word])} ${OUTCOME_KEYS[word] ? t(OUTCOME_KEYS[word]) : word.slice(0, 64)}`);
  return count(queue.done) + (notes.length ? ` (${notes.join(", ")})` : "");
}

function render(status) {
  current = status;
  const phase = status.phase;
  const statusEl = $("host-status");
  statusEl.dataset.phase = phase;
  const phaseKey = { connecting: "statusConnecting", ready: "statusReady", missing: "statusMissing", broken: "statusBroken" }[phase];
  statusEl.textContent = phaseKey ? t(phaseKey) : phase;
  renderProblem(status);
  renderVersions(status);

  const state = phase === "ready" ? status.state : null;
  // The host's own word on what is wrong ("delivery stopped", ...), when it has one.
  const hostProblem = state && typeof state.problem === "string" && state.problem ? state.problem : "";
  $("host-state-problem").hidden = !hostProblem;
  $("host-state-problem").textContent = hostProblem ? t("hostStateProblem", hostProblem) : "";

  $("account").hidden = !state;
  const authenticated = !!(state && state.authenticated === true);
  const active = !!(state && state.subscription && state.subscription.active === true);
  $("auth").textContent = t(authenticated ? "signedIn" : "signedOut");
  $("auth").dataset.authenticated = String(authenticated);
  $("subscription").textContent = t(active ? "active" : "inactive");
  $("subscription").dataset.active = String(active);
  renderQueue((state && state.queue) || {});
  if (!state) $("retry-failed").hidden = true;

  if (state) startAttention();
  $("sign-in").hidden = !state || authenticated;
  $("sign-out").hidden = !state || !authenticated;
  $("flattr-page").disabled = !state;
}

async function send(message) {
  const reply = await chrome.runtime.sendMessage(message);
  if (!reply || reply.ok !== true) {
    const error = (reply && reply.error) || { code: "internal", message: "no reply from the extension" };
    throw Object.assign(new Error(error.message), { code: error.code });
  }
  return reply.result;
}

async function activeTabUrl() {
  // activeTab: clicking the toolbar button grants access to this tab's URL.
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  return tab && typeof tab.url === "string" ? tab.url : null;
}

async function onFlattr() {
  showMessage("");
  const url = await activeTabUrl();
  if (!url) {
    showMessage(t("errNoTabUrl"), "error");
    return;
  }
  if (!/^https?:\/\//i.test(url)) {
    showMessage(t("errNotHttp"), "error");
    return;
  }
  try {
    const result = await send({ type: "popup-flattr", url });
    showMessage(result.queued === 1 ? t("msgQueuedOne") : t("msgQueuedMany", count(result.queued)));
    $("flattr-page").dataset.done = "true";
    if (result.page) renderAttention(result.page); // a manual flattr jumps to the next threshold
  } catch (error) {
    showMessage(t("errFlattr", error.message), "error");
  }
}

async function onRetryFailed() {
  showMessage("");
  try {
    const result = await send({ type: "popup-retry-failed" });
    const retried = count(result.retried);
    showMessage(retried ? t("msgRetried", retried) : t("msgRetriedNone"));
    $("retry-failed").dataset.done = String(retried);
  } catch (error) {
    showMessage(t("errRetry", error.message), "error");
  }
}

async function onSignIn() {
  try {
    await send({ type: "popup-sign-in" });
    window.close();
  } catch (error) {
    showMessage(t("errSignIn", error.message), "error");
  }
}

async function onSignOut() {
  try {
    await send({ type: "popup-sign-out" });
    showMessage(t("msgSignedOut"));
  } catch (error) {
    showMessage(t("errSignOut", error.message), "error");
  }
}

// ---------------------------------------------------------------------------
// Attention (docs/attention.md): what the host counted for this page, and the
// user's choices. The host decides; the 1 s refresh below only keeps the display
// current. Counting needs the optional permissions (tabs, idle, scripting): they are
// requested when the user opts in, inside the click (both browsers require a user
// action, and Firefox requires the request before any await).
// ---------------------------------------------------------------------------
const ATTENTION_REFRESH_MS = 1000;
const attentionView = { started: false, tab: null, page: null, timer: null, granted: null };

function wholeSeconds(value) {
  return Number.isFinite(value) && value >= 0 ? String(Math.floor(value)) : "0";
}

async function refreshGranted() {
  attentionView.granted = await chrome.permissions.contains(ATTENTION_PERMISSIONS);
  $("attention-permission").dataset.granted = String(attentionView.granted);
  return attentionView.granted;
}

function renderAttention(page) {
  attentionView.page = page;
  const countable = !!page && page.countable === true;
  $("attention").hidden = !countable;
  if (!countable) return;
  const line = $("attention-page");
  line.dataset.counted = String(page.counted === true);
  line.dataset.attention = String(page.attention);
  line.dataset.next = String(page.nextThreshold);
  line.dataset.flattrs = String(page.flattrs);
  line.textContent = t(page.counted ? "attentionLineCounted" : "attentionLineNotCounted",
    [wholeSeconds(page.attention), wholeSeconds(page.nextThreshold)]);
  $("attention-site-label").textContent = typeof page.site === "string" ? t("attentionSite", page.site) : t("attentionSiteThis");
  $("attention-site").checked = page.siteEnabled === true;
  $("attention-count-all").checked = page.countAll === true;
  if (page.counted) $("attention-offer").hidden = true;
  // Opted in (here, or another profile, or the CLI) but not granted: say so, offer the grant.
  const optedIn = page.siteEnabled === true || page.countAll === true;
  const missing = optedIn && attentionView.granted === false;
  $("attention-permission-missing").hidden = !missing;
  // The explanation is for the moment of choosing; once granted it is noise.
  $("attention-permission").hidden = attentionView.granted !== false || missing;
}

async function refreshAttention() {
  if (!attentionView.tab) return;
  try {
    renderAttention(await send({ type: "popup-attention-page", url: attentionView.tab.url }));
  } catch (error) {
    renderAttention(null);
  }
}

async function startAttention() {
  if (attentionView.started) return;
  attentionView.started = true;
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  if (!tab || typeof tab.url !== "string" || !/^https?:\/\//i.test(tab.url)) return;
  attentionView.tab = tab;
  await refreshGranted();
  await refreshAttention();
  attentionView.timer = setInterval(refreshAttention, ATTENTION_REFRESH_MS);
  offerCreatorOptIn();
}

/** Runs in the page, once, when the popup opens there (activeTab + scripting). */
function findFlattrMarkers() {
  const onFlattr = (href) => {
    try {
      const url = new URL(href, document.baseURI);
      return url.protocol === "https:" && (url.hostname === "flattr.com" || url.hostname.endsWith(".flattr.com"));
    } catch (error) {
      return false;
    }
  };
  const payment = Array.from(document.querySelectorAll('link[rel~="payment" i], a[rel~="payment" i]'));
  const meta = document.querySelector('meta[name="flattr:id" i]');
  return payment.some((el) => onFlattr(el.getAttribute("href") || "")) || !!(meta && (meta.getAttribute("content") || "").trim());
}

/** A creator's page whose site is not counted yet: offer one-click opt-in. Reading
 * the page needs `scripting`, so before the first opt-in there is no offer. */
async function offerCreatorOptIn() {
  const page = attentionView.page;
  if (!page || page.countable !== true || page.counted || !chrome.scripting) return;
  try {
    const [injection] = await chrome.scripting.executeScript({
      target: { tabId: attentionView.tab.id },
      func: findFlattrMarkers,
    });
    $("attention-offer").hidden = !(injection && injection.result === true) || !!(attentionView.page && attentionView.page.counted);
  } catch (error) {
    // No access to this tab (not opened from its toolbar button): no offer.
  }
}

/**
 * Ask for the attention permissions. Call it first thing in the click handler: the
 * request must run inside the user's action. Resolves true when granted (at once,
 * without a prompt, when they already are).
 */
function requestAttentionPermissions() {
  return chrome.permissions.request(ATTENTION_PERMISSIONS).then(async (granted) => {
    await refreshGranted();
    if (granted) await send({ type: "popup-attention-permissions" }).catch(() => {});
    return granted;
  }, () => false);
}

async function setSite(enabled, permission) {
  const page = attentionView.page;
  if (!page || typeof page.site !== "string") return;
  if (enabled && !(await permission)) {
    $("attention-site").checked = false;
    showMessage(t("attentionPermissionDenied"), "error");
    return;
  }
  try {
    await send({ type: "popup-attention-site", site: page.site, enabled });
    if (enabled) $("attention-offer").hidden = true;
  } catch (error) {
    showMessage(t("errSite", error.message), "error");
  }
  await refreshAttention();
}

async function setCountAll(enabled, permission) {
  if (enabled && !(await permission)) {
    $("attention-count-all").checked = false;
    showMessage(t("attentionPermissionDenied"), "error");
    return;
  }
  try {
    await send({ type: "popup-attention-count-all", enabled });
  } catch (error) {
    showMessage(t("errSetting", error.message), "error");
  }
  await refreshAttention();
}

async function grantMissing() {
  const granted = await requestAttentionPermissions();
  if (!granted) showMessage(t("attentionPermissionDenied"), "error");
  await refreshAttention();
}

function start() {
  localize();
  $("attention-site").addEventListener("change", (event) => {
    const enabled = event.target.checked;
    setSite(enabled, enabled ? requestAttentionPermissions() : null);
  });
  $("attention-offer-button").addEventListener("click", () => setSite(true, requestAttentionPermissions()));
  $("attention-count-all").addEventListener("change", (event) => {
    const enabled = event.target.checked;
    setCountAll(enabled, enabled ? requestAttentionPermissions() : null);
  });
  $("attention-permission-button").addEventListener("click", grantMissing);
  $("flattr-page").addEventListener("click", onFlattr);
  $("retry-failed").addEventListener("click", onRetryFailed);
  $("sign-in").addEventListener("click", onSignIn);
  $("sign-out").addEventListener("click", onSignOut);
  FlattrBrowser.detect().then((name) => {
    installName = name;
    if (current) renderProblem(current);
  });
  const port = chrome.runtime.connect({ name: "popup" });
  port.onMessage.addListener((message) => {
    if (message && message.kind === "status" && message.status) render(message.status);
  });
  port.onDisconnect.addListener(() => {
    void chrome.runtime.lastError;
    showMessage(t("errStopped"), "error");
  });
}

start();

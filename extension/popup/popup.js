// Flattr Companion popup: shows what the host says (via the service worker) and
// sends the user's actions (sign in/out, flattr this page, attention choices). It
// keeps no state of its own.
"use strict";

const $ = (id) => document.getElementById(id);
const PAUSE_TEXT = {
  signed_out: "yes: signed out",
  subscription_inactive: "yes: subscription inactive",
  rate_limited: "yes: rate limited",
};

// What the API said of delivered items, when it said more than "accepted"
// (docs/protocol.md#bulk-answers); "ok" and "accepted" need no note.
const OUTCOME_TEXT = {
  flattr_once: "already flattred",
  flattr_owner: "your own",
  invalid_url: "not a flattrable URL",
};

let current = null; // last status snapshot from the worker

function showMessage(text, kind = "info") {
  const el = $("message");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
}

function count(value) {
  return Number.isSafeInteger(value) && value >= 0 ? String(value) : "0";
}

function deliveredText(queue) {
  const outcomes = queue.outcomes && typeof queue.outcomes === "object" ? queue.outcomes : {};
  const notes = Object.keys(outcomes)
    .filter((word) => word !== "ok" && word !== "accepted" && Number.isSafeInteger(outcomes[word]))
    .sort()
    .map((word) => `${count(outcomes[word])} ${OUTCOME_TEXT[word] || word.slice(0, 64)}`);
  return count(queue.done) + (notes.length ? ` (${notes.join(", ")})` : "");
}

function render(status) {
  current = status;
  const phase = status.phase;
  const statusEl = $("host-status");
  statusEl.dataset.phase = phase;
  statusEl.textContent = {
    connecting: "Connecting to the host…",
    ready: "Host connected",
    missing: "Host not installed",
    broken: "Host not working",
  }[phase] || phase;

  const problem = phase === "missing" || phase === "broken";
  $("host-problem").hidden = !problem;
  $("host-problem-text").textContent = problem ? status.problem || "" : "";
  $("host-fix").textContent = problem ? (status.fix || []).join("\n") : "";

  const state = phase === "ready" ? status.state : null;
  $("account").hidden = !state;
  const authenticated = !!(state && state.authenticated === true);
  const active = !!(state && state.subscription && state.subscription.active === true);
  const queue = (state && state.queue) || {};
  $("auth").textContent = authenticated ? "Signed in" : "Signed out";
  $("auth").dataset.authenticated = String(authenticated);
  $("subscription").textContent = active ? "Active" : "Inactive";
  $("subscription").dataset.active = String(active);
  $("queue-pending").textContent = count(queue.pending);
  $("queue-inflight").textContent = count(queue.inFlight);
  $("queue-failed").textContent = count(queue.failed);
  $("queue-done").textContent = deliveredText(queue);
  const paused = typeof queue.paused === "string" ? queue.paused : "";
  $("queue-paused").textContent = paused ? PAUSE_TEXT[paused] || `yes: ${paused}` : "no";
  $("queue-paused").dataset.paused = paused;

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
    showMessage("This tab's address is not available: open the popup from the page's toolbar button.", "error");
    return;
  }
  if (!/^https?:\/\//i.test(url)) {
    showMessage("Only http and https pages can be flattred.", "error");
    return;
  }
  try {
    const result = await send({ type: "popup-flattr", url });
    showMessage(`Queued ${result.queued === 1 ? "this page" : `${count(result.queued)} pages`} for flattring.`);
    $("flattr-page").dataset.done = "true";
    if (result.page) renderAttention(result.page); // a manual flattr jumps to the next threshold
  } catch (error) {
    showMessage(`Could not flattr this page: ${error.message}`, "error");
  }
}

async function onSignIn() {
  try {
    await send({ type: "popup-sign-in" });
    window.close();
  } catch (error) {
    showMessage(`Could not open the sign-in page: ${error.message}`, "error");
  }
}

async function onSignOut() {
  try {
    await send({ type: "popup-sign-out" });
    showMessage("Signed out.");
  } catch (error) {
    showMessage(`Could not sign out: ${error.message}`, "error");
  }
}

// ---------------------------------------------------------------------------
// Attention (issue 9): what the host counted for this page, and the user's choices.
// The host decides; the 1 s refresh below only keeps the display current.
// ---------------------------------------------------------------------------
const ATTENTION_REFRESH_MS = 1000;
const attentionView = { started: false, tab: null, page: null, timer: null };

function wholeSeconds(value) {
  return Number.isFinite(value) && value >= 0 ? String(Math.floor(value)) : "0";
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
  line.textContent =
    `${wholeSeconds(page.attention)} s of attention, next flattr at ${wholeSeconds(page.nextThreshold)} s` +
    (page.counted ? "" : " (not counted on this site)");
  $("attention-site-name").textContent = typeof page.site === "string" ? page.site : "";
  $("attention-site").checked = page.siteEnabled === true;
  $("attention-count-all").checked = page.countAll === true;
  if (page.counted) $("attention-offer").hidden = true;
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

/** A creator's page whose site is not counted yet: offer one-click opt-in. */
async function offerCreatorOptIn() {
  const page = attentionView.page;
  if (!page || page.countable !== true || page.counted) return;
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

async function setSite(enabled) {
  const page = attentionView.page;
  if (!page || typeof page.site !== "string") return;
  try {
    await send({ type: "popup-attention-site", site: page.site, enabled });
    if (enabled) $("attention-offer").hidden = true;
  } catch (error) {
    showMessage(`Could not change the site: ${error.message}`, "error");
  }
  await refreshAttention();
}

async function setCountAll(enabled) {
  try {
    await send({ type: "popup-attention-count-all", enabled });
  } catch (error) {
    showMessage(`Could not change the setting: ${error.message}`, "error");
  }
  await refreshAttention();
}

function start() {
  $("attention-site").addEventListener("change", (event) => setSite(event.target.checked));
  $("attention-offer-button").addEventListener("click", () => setSite(true));
  $("attention-count-all").addEventListener("change", (event) => setCountAll(event.target.checked));
  $("flattr-page").addEventListener("click", onFlattr);
  $("sign-in").addEventListener("click", onSignIn);
  $("sign-out").addEventListener("click", onSignOut);
  const port = chrome.runtime.connect({ name: "popup" });
  port.onMessage.addListener((message) => {
    if (message && message.kind === "status" && message.status) render(message.status);
  });
  port.onDisconnect.addListener(() => {
    void chrome.runtime.lastError;
    showMessage("The extension stopped; reopen this popup.", "error");
  });
}

start();

// Flattr Companion popup: shows what the host says (via the service worker) and
// sends the user's three actions. It keeps no state of its own.
"use strict";

const $ = (id) => document.getElementById(id);
const PAUSE_TEXT = {
  signed_out: "yes: signed out",
  subscription_inactive: "yes: subscription inactive",
  rate_limited: "yes: rate limited",
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
  const paused = typeof queue.paused === "string" ? queue.paused : "";
  $("queue-paused").textContent = paused ? PAUSE_TEXT[paused] || `yes: ${paused}` : "no";
  $("queue-paused").dataset.paused = paused;

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

function start() {
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

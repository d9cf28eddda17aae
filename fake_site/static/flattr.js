// Page script of the simulated flattr.com. Speaks the page side of the extension
// protocol (flattr-docs/000): identification, the handshake, subscription changes.
// Every event sent or received is appended to window.flattrEvents for tests.
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("flattr-config").textContent);
  // Loaded as the real origin, call the real API name; otherwise the URL injected.
  const api = location.host === "flattr.com" ? "https://api.flattr.com" : cfg.api;
  const events = [];
  window.flattrEvents = events;

  function $(sel) { return document.querySelector(sel); }
  function record(dir, name, detail) {
    events.push({ dir: dir, name: name, detail: detail === undefined ? null : detail, at: Date.now() });
  }
  function dispatch(name, detail) {
    record("sent", name, detail);
    document.dispatchEvent(detail === undefined ? new CustomEvent(name) : new CustomEvent(name, { detail: detail }));
  }
  function setState(el, state, text) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }

  // -- identification: sessionStorage.extension, flattr-installed / -uninstalled
  function extensionVersion() {
    try { return window.sessionStorage.getItem("extension"); } catch (e) { return null; }
  }
  function showExtension() {
    const v = extensionVersion();
    document.body.dataset.extension = v ? "installed" : "absent";
    const el = $("#extension-status");
    if (el) el.textContent = v ? "Extension installed (version " + v + ")" : "No extension detected";
  }
  document.addEventListener("flattr-installed", function () { record("got", "flattr-installed"); showExtension(); });
  document.addEventListener("flattr-uninstalled", function () { record("got", "flattr-uninstalled"); showExtension(); });

  // -- subscription state, shared by the settings page and the live push
  let version = cfg.subscription ? cfg.subscription.version : 0;
  function showSubscription(active) {
    document.querySelectorAll(".subscription-status").forEach(function (el) {
      setState(el, active ? "active" : "inactive", active ? "Subscription active" : "Subscription inactive");
    });
  }
  function applySubscription(active, newVersion) {
    if (newVersion <= version) return false; // stale or already dispatched
    version = newVersion;
    showSubscription(active);
    dispatch("flattr-subscription", { subscription: { active: active } });
    return true;
  }

  // -- live push (separate wss port, ticket minted for this page)
  let retry = 500;
  function connectPush() {
    if (!cfg.push) return;
    const ws = new WebSocket(cfg.push);
    ws.onopen = function () { retry = 500; document.body.dataset.push = "open"; };
    ws.onmessage = function (e) {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      record("push", msg.type, msg);
      if (msg.type === "subscription") applySubscription(msg.subscription.active, msg.version);
    };
    ws.onclose = function () {
      document.body.dataset.push = "closed";
      setTimeout(connectPush, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  async function post(url, body, headers) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: Object.assign({ "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf || "" }, headers || {}),
      body: JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { status: resp.status, data: data };
  }

  function once(name, timeoutMs) {
    return new Promise(function (resolve) {
      let timer = null;
      function handler(e) {
        clearTimeout(timer);
        document.removeEventListener(name, handler);
        record("got", name, e.detail);
        resolve(e);
      }
      document.addEventListener(name, handler);
      if (timeoutMs > 0) timer = setTimeout(function () { document.removeEventListener(name, handler); resolve(null); }, timeoutMs);
    });
  }

  // -- the handshake (flattr-docs/000 "Handshake")
  async function handshake() {
    const status = $("#handshake-status");
    const wait = cfg.handshakeTimeout || 3000;
    setState(status, "waiting-extension", "Asking the extension to identify itself...");
    const authP = once("flattr-authenticate", wait);
    dispatch("flattr-trigger", { action: "authentication" });
    const auth = await authP;
    if (!auth || !auth.detail || typeof auth.detail.id !== "string") {
      setState(status, "no-extension", "No extension answered. Is the Flattr extension installed and enabled?");
      return;
    }
    const d = auth.detail;
    const minted = await post("/oauth/ext/token", { id: d.id, build: String(d.build || ""), version: String(d.version || "") });
    if (minted.status !== 200 || !minted.data) {
      setState(status, "failed", "The server refused to issue a token (" + minted.status + ").");
      return;
    }
    const answerP = once("flattr-authenticated", wait);
    version = Math.max(version, minted.data.version || 0);
    showSubscription(minted.data.subscription.active);
    setState(status, "token-sent", "Token handed to the extension " + d.id + "; waiting for it to confirm...");
    dispatch("flattr-token", { accessToken: minted.data.accessToken, subscription: minted.data.subscription });
    const answer = await answerP;
    if (!answer) {
      setState(status, "token-sent", "Token handed to the extension " + d.id + " (no confirmation came).");
    } else if (answer.detail && answer.detail.authenticated === true) {
      setState(status, "authenticated", "The extension is signed in.");
    } else {
      setState(status, "failed", "The extension could not store the token.");
    }
  }

  async function setSubscription(active) {
    const r = await post("/settings/subscription", { active: active });
    if (r.status === 200 && r.data) applySubscription(r.data.subscription.active, r.data.version);
    else setState($("#settings-result"), "failed", "Could not change the subscription (" + r.status + ").");
  }

  async function flattrApi(path, body) {
    const result = $("#flattr-result");
    const resp = await fetch(api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + cfg.token },
      body: JSON.stringify(body || {}),
    });
    const data = await resp.json();
    if (result) {
      result.dataset.result = resp.ok ? "ok" : data.error;
      result.textContent = resp.ok ? data.description : data.error + ": " + data.error_description;
    }
    return { ok: resp.ok, data: data };
  }

  window.flattr = { cfg: cfg, api: api, dispatch: dispatch, handshake: handshake, setSubscription: setSubscription };

  document.addEventListener("DOMContentLoaded", function () {
    showExtension();
    if (cfg.subscription) showSubscription(cfg.subscription.active);
    connectPush();
    document.querySelectorAll("[data-action]").forEach(function (btn) {
      btn.addEventListener("click", async function () {
        const a = btn.dataset.action;
        if (a === "handshake") handshake();
        else if (a === "subscribe") setSubscription(true);
        else if (a === "unsubscribe") setSubscription(false);
        else if (a === "flattr-thing") flattrApi("/rest/v2/things/" + btn.dataset.thing + "/flattr");
        else if (a === "flattr-url") {
          const r = await flattrApi("/rest/v2/flattr", { url: btn.dataset.url });
          if (r.ok) location.href = "/thing/" + r.data.thing.id;
        }
      });
    });
  });
  // The sign-in page starts the handshake once the page has loaded (content scripts
  // run by then), and again if the extension announces itself after a miss.
  window.addEventListener("load", function () {
    if (document.body.dataset.page === "oauth-ext" && cfg.user) handshake();
  });
  document.addEventListener("flattr-installed", function () {
    const st = $("#handshake-status");
    if (document.body.dataset.page === "oauth-ext" && cfg.user && st && st.dataset.state === "no-extension") handshake();
  });
})();

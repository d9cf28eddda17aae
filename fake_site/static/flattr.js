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

  async function post(url, body, headers, timeoutMs) {
    const abort = new AbortController();
    const timer = timeoutMs ? setTimeout(function () { abort.abort(); }, timeoutMs) : null;
    let resp;
    try {
      resp = await fetch(url, {
        method: "POST", credentials: "same-origin", signal: abort.signal,
        headers: Object.assign({ "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf || "" }, headers || {}),
        body: JSON.stringify(body),
      });
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { status: resp.status, data: data };
  }

  // A copy of an event's detail that is safe to keep and show: the page may not be
  // allowed to read it at all (Firefox: an object of a content script that was not
  // cloned into the page throws "Permission denied to access object").
  function snapshot(detail) {
    try { return detail === undefined ? null : JSON.parse(JSON.stringify(detail)); }
    catch (e) { return "<unreadable: " + errorText(e) + ">"; }
  }
  function errorText(e) {
    try { return String((e && e.message) || e); } catch (inner) { return "unknown error"; }
  }

  function once(name, timeoutMs) {
    return new Promise(function (resolve) {
      let timer = null;
      function handler(e) {
        clearTimeout(timer);
        document.removeEventListener(name, handler);
        record("got", name, snapshot(e.detail));
        resolve(e);
      }
      document.addEventListener(name, handler);
      if (timeoutMs > 0) timer = setTimeout(function () { document.removeEventListener(name, handler); resolve(null); }, timeoutMs);
    });
  }

  // How long the site itself may take to issue the token, at least.
  const SERVER_WAIT_MS = 5000;
  const CLONE_ADVICE = "In Firefox, clone the detail into the page with cloneInto(detail, document.defaultView) or send a JSON string.";

  // Reads the named fields of an event's detail, every access guarded. A detail may
  // be an object or a JSON string of one. Returns {fields}, or a problem
  // {state, text, advice} when it cannot be read or is not an object.
  function readDetail(event, name, names) {
    let raw;
    try {
      raw = event.detail;
    } catch (e) {
      return problem("unreadable-detail", "The extension's " + name + " detail cannot be read by the page (" + errorText(e) + ").", CLONE_ADVICE);
    }
    if (typeof raw === "string") {
      try { raw = JSON.parse(raw); } catch (e) {
        return problem("malformed-detail", "The extension's " + name + " detail is a string that is not JSON (" + errorText(e) + ").", "Send an object, or a JSON string of one.");
      }
    }
    if (raw === null || typeof raw !== "object") {
      return problem("malformed-detail", "The extension's " + name + " detail is " + describe(raw) + ", not an object.", null);
    }
    const fields = {};
    try {
      names.forEach(function (key) { fields[key] = raw[key]; });
    } catch (e) {
      return problem("unreadable-detail", "The extension's " + name + " detail cannot be read by the page (" + errorText(e) + ").", CLONE_ADVICE);
    }
    return { fields: fields };
  }
  function describe(value) {
    try {
      if (value === null) return "null";
      if (value === undefined) return "missing";
      if (Array.isArray(value)) return "an array";
      if (typeof value === "object") return "an object";
      return "a " + typeof value + " (" + String(value).slice(0, 40) + ")";
    } catch (e) {
      return "a value the page cannot read";
    }
  }
  function problem(state, text, advice) { return { state: state, text: text, advice: advice }; }

  const AUTHENTICATE_SHAPE = "Answer flattr-trigger {action: \"authentication\"} with flattr-authenticate {build: string, id: string, version: string}.";
  function checkAuthenticate(fields) {
    const bad = [];
    if (typeof fields.id !== "string" || fields.id.length < 1 || fields.id.length > 128) bad.push("id must be a string of 1 to 128 characters, got " + describe(fields.id));
    ["build", "version"].forEach(function (key) {
      if (typeof fields[key] !== "string") bad.push(key + " must be a string, got " + describe(fields[key]));
    });
    if (!bad.length) return null;
    return problem("malformed-detail", "The extension's flattr-authenticate detail has the wrong shape: " + bad.join("; ") + ".", AUTHENTICATE_SHAPE);
  }

  // A final state that is not success: shown, and posted to the site so its admin
  // journal has it (POST /handshake/failure, docs/fake-site.md).
  function fail(status, found, wait) {
    const text = found.text + (found.advice ? " " + found.advice : "");
    setState(status, found.state, text);
    const report = { page: document.body.dataset.page, state: found.state, message: found.text,
                     advice: found.advice || null, timeoutMs: wait };
    fetch("/handshake/failure", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(report),
    }).catch(function () { /* the page already shows the failure */ });
  }

  // -- the handshake (flattr-docs/000 "Handshake"): every wait has a timeout and
  // every read of the extension's detail is guarded, so the page always ends in a
  // final state (docs/fake-site.md).
  async function handshake() {
    const status = $("#handshake-status");
    const wait = cfg.handshakeTimeout || 3000;
    const seconds = (wait / 1000) + " s";
    setState(status, "waiting-extension", "Asking the extension to identify itself...");
    const authP = once("flattr-authenticate", wait);
    dispatch("flattr-trigger", { action: "authentication" });
    const auth = await authP;
    if (!auth) {
      fail(status, problem("no-extension", "No extension answered flattr-trigger within " + seconds + ". Is the Flattr extension installed and enabled?", AUTHENTICATE_SHAPE), wait);
      return;
    }
    const read = readDetail(auth, "flattr-authenticate", ["id", "build", "version"]);
    const bad = read.fields ? checkAuthenticate(read.fields) : read;
    if (bad) { fail(status, bad, wait); return; }
    const d = read.fields;
    setState(status, "minting", "Issuing a token for the extension " + d.id + "...");
    // The site gets at least SERVER_WAIT_MS, however short the extension's timeout.
    const serverWait = Math.max(wait, SERVER_WAIT_MS);
    let minted;
    try {
      minted = await post("/oauth/ext/token", { id: d.id, build: d.build, version: d.version }, null, serverWait);
    } catch (e) {
      const why = e && e.name === "AbortError" ? "no answer within " + (serverWait / 1000) + " s" : errorText(e);
      fail(status, problem("failed", "The server did not issue a token (" + why + ").", null), wait);
      return;
    }
    if (minted.status !== 200 || !minted.data) {
      fail(status, problem("failed", "The server refused to issue a token (" + minted.status + ").", null), wait);
      return;
    }
    const answerP = once("flattr-authenticated", wait);
    version = Math.max(version, minted.data.version || 0);
    showSubscription(minted.data.subscription.active);
    setState(status, "token-sent", "Token handed to the extension " + d.id + "; waiting for it to confirm...");
    dispatch("flattr-token", { accessToken: minted.data.accessToken, subscription: minted.data.subscription });
    const answer = await answerP;
    if (!answer) {
      fail(status, problem("unconfirmed", "Token handed to the extension " + d.id + "; no flattr-authenticated came within " + seconds + ".",
        "The Flattr extension closes the sign-in tab instead; an extension that keeps the page open should answer flattr-authenticated {authenticated: true or false}."), wait);
      return;
    }
    const confirm = readDetail(answer, "flattr-authenticated", ["authenticated"]);
    if (!confirm.fields) { fail(status, confirm, wait); return; }
    if (confirm.fields.authenticated === true) {
      setState(status, "authenticated", "The extension is signed in.");
    } else if (confirm.fields.authenticated === false) {
      fail(status, problem("failed", "The extension could not store the token (it answered authenticated: false).", null), wait);
    } else {
      fail(status, problem("malformed-detail", "The extension's flattr-authenticated detail has the wrong shape: authenticated must be true or false, got " + describe(confirm.fields.authenticated) + ".",
        "Answer flattr-token with flattr-authenticated {authenticated: true or false}."), wait);
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

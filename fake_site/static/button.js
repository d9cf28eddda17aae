// Script of the button iframe (/button/view/). A click flattrs through the REST
// API with a token this iframe got from the flattr.com connect window (which
// logs the user in first when needed); errors of the API are shown in the button.
// State is in body[data-state]: loading (until this script runs), ready, working,
// login, flattred, failed; error for an invalid definition.
(function () {
  "use strict";
  const body = document.body;
  const TOKEN_KEY = "flattr-button-token";
  const box = document.getElementById("button");
  const MESSAGES = {
    flattr_once: "You have already flattred this.",
    flattr_owner: "You own this thing.",
    no_means: "Your Flattr subscription is not active.",
    not_found: "This thing does not exist.",
  };

  function postSize() {
    const width = Math.ceil(Math.max(document.documentElement.scrollWidth, body.scrollWidth));
    const height = Math.ceil(Math.max(document.documentElement.scrollHeight, body.scrollHeight));
    if (window.parent !== window) {
      window.parent.postMessage({ type: "flattr-button-size", width: width, height: height }, "*");
    }
  }

  if (!box) { // an invalid definition: the error is in the page; make room for it
    body.style.width = "280px";
    postSize();
    return;
  }

  const cfg = JSON.parse(box.dataset.config);
  const canonical = location.hostname === "api.flattr.com";
  const site = canonical ? "https://flattr.com" : cfg.site;
  const api = canonical ? "https://api.flattr.com" : cfg.api;
  const button = document.getElementById("flattr");
  const count = document.getElementById("count");
  const message = document.getElementById("message");
  const popout = document.getElementById("popout");

  // The token lives in this iframe; localStorage (partitioned per partner site by
  // the browser, or blocked with third-party storage) only keeps it across reloads.
  let held = null;
  function storage() { try { return window.localStorage; } catch (e) { return null; } }
  function token() {
    if (held) return held;
    try { const s = storage(); return s ? s.getItem(TOKEN_KEY) : null; } catch (e) { return null; }
  }
  function setToken(value) {
    held = value;
    try {
      const s = storage();
      if (s && value) s.setItem(TOKEN_KEY, value); else if (s) s.removeItem(TOKEN_KEY);
    } catch (e) { /* blocked storage: the token lasts as long as this iframe */ }
  }

  function show(state, text, error) {
    body.dataset.state = state;
    if (error) body.dataset.error = error; else delete body.dataset.error;
    message.textContent = text || "";
    button.disabled = state === "working" || state === "flattred" || state === "login";
    if (state === "flattred") button.textContent = "Flattred";
    postSize();
  }

  function connect() {
    const url = site + "/button/connect?origin=" + encodeURIComponent(location.origin);
    const win = window.open(url, "flattr-connect", "width=480,height=640");
    if (!win) {
      show("failed", "Allow pop-ups for this page to log in to Flattr.", "popup_blocked");
      return;
    }
    show("login", "Log in to Flattr in the window that opened.");
  }

  async function flattr() {
    const current = token();
    if (!current) { connect(); return; }
    show("working", "Flattring...");
    let response, answer;
    try {
      response = await fetch(api + "/rest/v2/flattr", {
        method: "POST",
        headers: { Authorization: "Bearer " + current, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ url: cfg.autoSubmit }),
      });
      answer = await response.json();
    } catch (error) {
      show("failed", "Could not reach Flattr. Try again.", "network");
      return;
    }
    if (response.ok) {
      const thing = answer && answer.thing;
      if (thing && typeof thing.flattrs === "number") {
        count.textContent = String(thing.flattrs);
        body.dataset.count = String(thing.flattrs);
        body.dataset.thing = String(thing.id);
      }
      show("flattred", "Thanks for flattring!");
      return;
    }
    const code = answer && answer.error ? String(answer.error) : "http_" + response.status;
    if (code === "unauthorized") { setToken(null); connect(); return; }
    const description = answer && answer.error_description ? String(answer.error_description) : "";
    show("failed", (MESSAGES[code] || "Flattr said: " + code + ".") + (description ? " (" + description + ")" : ""), code);
  }

  button.addEventListener("click", function () { flattr(); });

  // The connect window hands over a token, then the click that opened it goes on.
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (event.origin !== site || !data || data.type !== "flattr-button-token") return;
    if (typeof data.token !== "string" || !data.token) return;
    setToken(data.token);
    flattr();
  });

  if (popout) {
    box.addEventListener("mouseenter", function () { popout.hidden = false; postSize(); });
    // Leaving the whole iframe (the popout included) closes it. Browsers do not
    // always tell a cross-site iframe that the pointer left, so the loader does too.
    const close = function () { if (!popout.hidden) { popout.hidden = true; postSize(); } };
    document.documentElement.addEventListener("mouseleave", close);
    window.addEventListener("message", function (event) {
      if (event.source === window.parent && event.data && event.data.type === "flattr-button-leave") close();
    });
  }
  body.dataset.state = "ready";
  postSize();
})();

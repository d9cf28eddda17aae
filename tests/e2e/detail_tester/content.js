// Test-only content script: answers flattr-trigger on flattr.com the way the page's
// URL fragment asks (#uncloned, #json, #malformed, #silent, #unconfirmed), so the
// fake site's failure states can be shown with a real extension's content script.
// It never touches a token beyond confirming it.
"use strict";

const mode = location.hash.slice(1);
const identity = { build: "tester-build", id: "detail-tester", version: "1.0.0" };

// What Firefox needs for the page to read an object (and what "uncloned" omits).
function forPage(value) {
  return typeof cloneInto === "function" ? cloneInto(value, window) : value; // eslint-disable-line no-undef
}

function answer(name, detail) {
  document.dispatchEvent(new CustomEvent(name, { detail: detail }));
}

document.addEventListener("flattr-trigger", () => {
  if (mode === "silent") return;
  if (mode === "uncloned") answer("flattr-authenticate", { ...identity });
  else if (mode === "json") answer("flattr-authenticate", JSON.stringify(identity));
  else if (mode === "malformed") answer("flattr-authenticate", forPage({ id: 42, version: 1 }));
  else answer("flattr-authenticate", forPage(identity));
});

document.addEventListener("flattr-token", () => {
  if (mode === "unconfirmed") return;
  if (mode === "uncloned") answer("flattr-authenticated", { authenticated: true });
  else if (mode === "json") answer("flattr-authenticated", JSON.stringify({ authenticated: true }));
  else answer("flattr-authenticated", forPage({ authenticated: true }));
});

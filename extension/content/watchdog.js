// Flattr Companion: removal watchdog, runs in the page's own world ("world": "MAIN").
//
// Why: when Firefox removes, disables or reloads an add-on it discards the isolated
// content script (content/flattr.js) without running any of its code: no port
// onDisconnect, no timers (measured, docs/firefox.md). Code in the page's world
// survives, so this script asks the content script "still there?" with a
// synchronous event and, at the first unanswered ping after an answered one, does
// what document 000 asks on removal: deletes sessionStorage.extension and
// dispatches flattr-uninstalled. In Chromium the orphaned content script keeps
// answering and reports removal itself (port onDisconnect), so this stays silent.
// A page can spoof or block the pong; that only hides removal from that page.
"use strict";

(() => {
  if (location.protocol !== "https:" || location.host !== "flattr.com" || window.top !== window) return;
  const PING = "flattr-companion-ping";
  const PONG = "flattr-companion-pong";
  const INTERVAL_MS = 200;
  let answered = false;
  let armed = false; // true once the content script has answered at least once
  let timer = null;

  const stop = () => clearInterval(timer);
  document.addEventListener(PONG, () => {
    answered = true;
    armed = true;
  });
  // Whoever reports removal first wins: the content script (Chromium) or us.
  document.addEventListener("flattr-uninstalled", stop, { once: true });

  // Whichever of the two scripts starts second arms the watchdog at once: this ping,
  // or the content script's first pong.
  document.dispatchEvent(new CustomEvent(PING));
  timer = setInterval(() => {
    answered = false;
    document.dispatchEvent(new CustomEvent(PING)); // synchronous: pong lands before the next line
    if (answered || !armed) return; // alive, or not started yet
    stop();
    try {
      sessionStorage.removeItem("extension");
    } catch (error) {
      // sessionStorage can be blocked; nothing to remove then
    }
    document.dispatchEvent(new CustomEvent("flattr-uninstalled", { detail: null }));
  }, INTERVAL_MS);
})();

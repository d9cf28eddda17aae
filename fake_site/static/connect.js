// The flattr.com window a button opens (/button/connect): hands the token to the
// button that opened it, at the button's origin only, then closes.
(function () {
  "use strict";
  const el = document.getElementById("connect");
  if (!el) return;
  const data = JSON.parse(el.dataset.connect);
  if (!window.opener) {
    document.body.dataset.state = "no-opener";
    el.textContent = "Signed in to Flattr. Go back to the page with the button and click it again.";
    return;
  }
  window.opener.postMessage({ type: "flattr-button-token", token: data.token }, data.origin);
  document.body.dataset.state = "sent";
  setTimeout(function () { window.close(); }, 50);
})();

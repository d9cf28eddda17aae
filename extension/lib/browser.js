// Which browser is this, as `flattr-host install --browser NAME` names it.
//
// The host's manifest goes to a different folder for each browser (docs/install.md),
// so a fix command naming the wrong one leaves the user broken. Chromium-family
// browsers say who they are in navigator.userAgentData.brands; Firefox and its forks
// in runtime.getBrowserInfo(). Where a browser hides behind the plain "Chromium"
// brand (Vivaldi does, and so may others) or is a fork we do not list, the answer is
// "all": that writes the manifest for every browser flattr-host finds.
"use strict";

(function (root) {
  const BRANDS = [
    ["Google Chrome", "chrome"],
    ["Microsoft Edge", "edge"],
    ["Brave", "brave"],
    ["Vivaldi", "vivaldi"],
  ];

  /**
   * `brands`: navigator.userAgentData.brands (or undefined); `browserInfo`: the
   * result of runtime.getBrowserInfo() (Firefox; or undefined). Returns one of
   * "chrome", "edge", "brave", "vivaldi", "firefox" or "all".
   */
  function installName(brands, browserInfo) {
    if (browserInfo && typeof browserInfo.name === "string") {
      return browserInfo.name === "Firefox" ? "firefox" : "all";
    }
    const names = Array.isArray(brands) ? brands.map((b) => (b && typeof b.brand === "string" ? b.brand : "")) : [];
    for (const [brand, name] of BRANDS) {
      if (names.includes(brand)) return name;
    }
    return "all";
  }

  /** The commands that install and check the host for `name`. */
  function fixCommands(name) {
    return [`flattr-host install --browser ${name}`, `flattr-host doctor --browser ${name}`];
  }

  /** installName() for the browser this runs in (a promise). */
  async function detect() {
    const runtime = root.browser && root.browser.runtime;
    if (runtime && typeof runtime.getBrowserInfo === "function") {
      try {
        return installName(undefined, await runtime.getBrowserInfo());
      } catch (error) {
        return "all";
      }
    }
    const data = root.navigator && root.navigator.userAgentData;
    return installName(data ? data.brands : undefined, undefined);
  }

  root.FlattrBrowser = Object.freeze({ installName, fixCommands, detect });
})(globalThis);

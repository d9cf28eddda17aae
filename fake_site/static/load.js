// The embedded button loader of the simulated api.flattr.com (api-v2/button.md).
// Options come from this script's own query string: mode, https, popout, uid,
// button, language, category, html5-key-prefix (and revsharekey, passed on).
// Each button definition becomes an iframe of /button/view/ on the loader's host;
// the iframe shows the count or the definition's error (docs/fake-site.md).
(function () {
  "use strict";
  if (window.FlattrLoader && window.FlattrLoader.simulated) return; // loaded twice

  function findScript() {
    if (document.currentScript && /\/js\/0\.6\/load\.js/.test(document.currentScript.src)) {
      return document.currentScript;
    }
    const all = document.querySelectorAll("script[src*='/js/0.6/load.js']");
    return all[all.length - 1];
  }

  const src = new URL(findScript().src, location.href);
  const query = src.searchParams;
  const DEFAULT_PREFIX = "data-flattr";
  const DEFAULT_KEYS = ["uid", "button", "language", "category", "popout", "revsharekey"];
  const SIZES = { compact: [110, 20], default: [55, 62] };

  const options = { mode: query.get("mode") === "auto" ? "auto" : "manual", prefix: DEFAULT_PREFIX, defaults: {} };
  const https = query.get("https");
  const scheme = https === "1" ? "https:" : https === "0" ? "http:" : src.protocol;
  options.base = scheme + "//" + src.host;
  const prefix = query.get("html5-key-prefix");
  if (prefix !== null) {
    if (/^data-[a-z0-9-]*[a-z0-9]$/i.test(prefix)) options.prefix = prefix.toLowerCase();
    else console.error("FlattrLoader: html5-key-prefix must start with 'data-', got " + JSON.stringify(prefix) + "; using data-flattr");
  }
  DEFAULT_KEYS.forEach(function (key) {
    const value = query.get(key);
    if (value !== null && value !== "") options.defaults[key] = value;
  });

  // Text of the definition's element: HTML stripped, <br> as a newline.
  function elementText(element) {
    const copy = element.cloneNode(true);
    copy.querySelectorAll("br").forEach(function (br) { br.replaceWith("\n"); });
    return copy.textContent.split("\n").map(function (line) { return line.trim().replace(/\s+/g, " "); })
      .join("\n").trim();
  }

  // The parameters of an HTML definition: href, title, lang, the text, then rel
  // "flattr;key:value;" pairs, then data-flattr-* (or the custom prefix) attributes.
  function definitionOf(element) {
    const params = {};
    const href = element.getAttribute("href");
    if (href) params.url = new URL(href, document.baseURI).href;
    if (element.getAttribute("title")) params.title = element.getAttribute("title");
    if (element.getAttribute("lang")) params.language = element.getAttribute("lang");
    const text = elementText(element);
    if (text) params.description = text;
    const rel = element.getAttribute("rel") || "";
    if (rel.indexOf("flattr;") === 0) {
      rel.slice(7).split(";").forEach(function (pair) {
        const at = pair.indexOf(":");
        if (at > 0) params[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
      });
    }
    const start = options.prefix + "-";
    Array.prototype.forEach.call(element.attributes, function (attr) {
      if (attr.name.indexOf(start) === 0 && attr.name.length > start.length) {
        params[attr.name.slice(start.length)] = attr.value;
      }
    });
    return params;
  }

  function frameFor(params) {
    const merged = {};
    Object.keys(options.defaults).forEach(function (k) { merged[k] = options.defaults[k]; });
    Object.keys(params || {}).forEach(function (k) {
      const v = params[k];
      if (v !== undefined && v !== null) merged[k] = String(v);
    });
    // A button's own owner overrides the page's default uid (they exclude each other).
    if (merged.owner && !(params && params.uid)) delete merged.uid;
    const frame = document.createElement("iframe");
    const size = SIZES[merged.button] || SIZES.default;
    frame.src = options.base + "/button/view/?" + new URLSearchParams(merged).toString();
    frame.width = String(size[0]);
    frame.height = String(size[1]);
    frame.className = "FlattrButton-frame";
    frame.title = "Flattr button" + (merged.title ? ": " + merged.title : "");
    frame.setAttribute("scrolling", "no");
    frame.style.border = "0";
    frame.style.overflow = "hidden";
    frame.addEventListener("mouseleave", function () {
      if (frame.contentWindow) frame.contentWindow.postMessage({ type: "flattr-button-leave" }, options.base);
    });
    return frame;
  }

  // render(params, target, method): target is an element or its id; method is
  // append (default), before or replace. Returns the iframe.
  function render(params, target, method) {
    const element = typeof target === "string" ? document.getElementById(target) : target;
    if (!element || !element.nodeType) {
      throw new Error("FlattrLoader.render: no element " + JSON.stringify(String(target)));
    }
    const how = method || "append";
    const frame = frameFor(params);
    if (how === "replace") element.replaceWith(frame);
    else if (how === "before") element.parentNode.insertBefore(frame, element);
    else if (how === "append") element.appendChild(frame);
    else throw new Error("FlattrLoader.render: insert method must be append, before or replace, got " + JSON.stringify(how));
    return frame;
  }

  // setup(): every a.FlattrButton not yet rendered becomes a button.
  function setup() {
    const found = document.querySelectorAll("a.FlattrButton");
    const frames = [];
    Array.prototype.forEach.call(found, function (element) {
      frames.push(render(definitionOf(element), element, "replace"));
    });
    return frames;
  }

  function addLoadEvent(fn) {
    if (document.readyState === "complete") setTimeout(fn, 0);
    else window.addEventListener("load", function () { fn(); });
  }

  // A button asks to be resized (its error text, its popout).
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (event.origin !== options.base || !data || data.type !== "flattr-button-size") return;
    document.querySelectorAll("iframe.FlattrButton-frame").forEach(function (frame) {
      if (frame.contentWindow !== event.source) return;
      frame.width = String(Math.min(Math.max(Number(data.width) || 0, 20), 600));
      frame.height = String(Math.min(Math.max(Number(data.height) || 0, 20), 400));
    });
  });

  window.FlattrLoader = {
    simulated: true,
    options: options,
    setup: setup,
    render: render,
    addLoadEvent: addLoadEvent,
  };
  if (options.mode === "auto") addLoadEvent(setup);
})();

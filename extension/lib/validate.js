// Shape checks for what crosses a trust boundary into the extension: page event
// details (content script), the sender's page and the popup's URL (service worker).
//
// Contract: every function takes an untrusted value and returns either
//   {ok: true, value: <fresh plain object holding only the documented keys>}
// or
//   {ok: false, reason: <one line naming the field, the value's kind and the limit>}.
// Nothing here throws, and nothing here keeps a reference to the input: the caller acts
// on `value` only, so getters, prototypes and extra keys of the input cannot matter.
//
// The rules are docs/protocol.md's "Field rules"; the host (host/messages.py)
// enforces the same ones again. tests/data/protocol_cases.json holds the cases both
// must agree on, and the limits; tests/js/validate.test.js runs them here.
"use strict";

(() => {
  const MAX_TOKEN_CHARS = 4096; // docs/protocol.md: accessToken at most 4,096 chars
  const MAX_URL_BYTES = 8192; // docs/protocol.md: each URL at most 8,192 bytes UTF-8
  const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
  // With the u flag a class of surrogates matches only unpaired ones.
  const LONE_SURROGATE = /[\ud800-\udfff]/u;
  // Never in a flattr URL: C0 controls, space, DEL, C1 controls, Unicode spaces and
  // line separators, the byte-order mark, and the backslash (WHATWG parsers read it
  // as "/", others as a character: two readers would see two different hosts).
  const URL_FORBIDDEN = /[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/;
  const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.\-]*):/;
  const URL_AUTHORITY = /^[^/?#]*/;
  const HOST_NAME = /^[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*$/;
  const IPV4_PART = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  const IPV4 = new RegExp(`^(?:${IPV4_PART}\\.){3}${IPV4_PART}$`);
  const DIGITS = /^[0-9]+$/;
  const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

  const toStringTag = Object.prototype.toString;
  const ownNames = Object.getOwnPropertyNames;
  const ownSymbols = Object.getOwnPropertySymbols;
  const describe = Object.getOwnPropertyDescriptor;

  function fail(reason) {
    return { ok: false, reason };
  }

  function kindOf(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "array";
    return typeof value;
  }

  // A plain record: an ordinary object (not an array, function, DOM node ...), whose
  // keys are all in `allowed`, all data properties (no getters run twice), no symbols.
  // Returns the copied data values, or a reason.
  function readRecord(value, allowed, what) {
    let names;
    try {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return fail(`${what} must be an object, got ${kindOf(value)}`);
      }
      if (toStringTag.call(value) !== "[object Object]") {
        return fail(`${what} must be a plain object`);
      }
      if (ownSymbols(value).length > 0) {
        return fail(`${what} must not have symbol keys`);
      }
      names = ownNames(value);
    } catch (error) {
      return fail(`${what} could not be read`);
    }
    if (names.length > allowed.length) {
      return fail(`${what} has ${names.length} keys, at most ${allowed.length} allowed (${allowed.join(", ")})`);
    }
    const copy = Object.create(null);
    for (const name of names) {
      if (!allowed.includes(name)) {
        return fail(`${what} has an unexpected key ${JSON.stringify(name.slice(0, 40))}; allowed: ${allowed.join(", ")}`);
      }
      let descriptor;
      try {
        descriptor = describe(value, name);
      } catch (error) {
        return fail(`${what}.${name} could not be read`);
      }
      if (!descriptor || !("value" in descriptor)) {
        return fail(`${what}.${name} must be a data property`);
      }
      copy[name] = descriptor.value;
    }
    return { ok: true, value: copy };
  }

  function readBoolean(value, what) {
    if (typeof value !== "boolean") return fail(`${what} must be a boolean, got ${kindOf(value)}`);
    return { ok: true, value };
  }

  /** `{active: boolean}` -> fresh `{active}`. */
  function subscription(value, what = "subscription") {
    const record = readRecord(value, ["active"], what);
    if (!record.ok) return record;
    if (!("active" in record.value)) return fail(`${what}.active is missing`);
    const active = readBoolean(record.value.active, `${what}.active`);
    if (!active.ok) return active;
    return { ok: true, value: { active: active.value } };
  }

  /** `accessToken`: non-empty, at most 4,096 characters, visible ASCII only. */
  function accessToken(value, what = "accessToken") {
    if (typeof value !== "string") return fail(`${what} must be a string, got ${kindOf(value)}`);
    if (value.length === 0) return fail(`${what} must not be empty`);
    if (value.length > MAX_TOKEN_CHARS) {
      return fail(`${what} is ${value.length} characters, limit ${MAX_TOKEN_CHARS}`);
    }
    if (!VISIBLE_ASCII.test(value)) return fail(`${what} must be visible ASCII (0x21-0x7e)`);
    return { ok: true, value };
  }

  /** `flattr-trigger` detail: exactly `{action: "authentication"}`. */
  function triggerDetail(detail) {
    const record = readRecord(detail, ["action"], "flattr-trigger detail");
    if (!record.ok) return record;
    const action = record.value.action;
    if (typeof action !== "string") {
      return fail(`flattr-trigger detail.action must be a string, got ${kindOf(action)}`);
    }
    if (action !== "authentication") {
      return fail(`flattr-trigger action ${JSON.stringify(action.slice(0, 40))} is not "authentication"`);
    }
    return { ok: true, value: { action } };
  }

  /** `flattr-token` detail: `{accessToken, subscription?: {active}}`. */
  function tokenDetail(detail) {
    const record = readRecord(detail, ["accessToken", "subscription"], "flattr-token detail");
    if (!record.ok) return record;
    const token = accessToken(record.value.accessToken, "flattr-token detail.accessToken");
    if (!token.ok) return token;
    const value = { accessToken: token.value };
    if ("subscription" in record.value) {
      const sub = subscription(record.value.subscription, "flattr-token detail.subscription");
      if (!sub.ok) return sub;
      value.subscription = sub.value;
    }
    return { ok: true, value };
  }

  /** `flattr-subscription` detail: `{subscription: {active}}`. */
  function subscriptionDetail(detail) {
    const record = readRecord(detail, ["subscription"], "flattr-subscription detail");
    if (!record.ok) return record;
    if (!("subscription" in record.value)) return fail("flattr-subscription detail.subscription is missing");
    const sub = subscription(record.value.subscription, "flattr-subscription detail.subscription");
    if (!sub.ok) return sub;
    return { ok: true, value: { subscription: sub.value } };
  }

  /** A character's code point as U+XXXX (for reasons). */
  function codePoint(text, index) {
    return `U+${text.codePointAt(index).toString(16).toUpperCase().padStart(4, "0")}`;
  }

  /** An IPv6 address in RFC 4291 text form, optionally ending in IPv4; no zone. */
  function isIpv6(text) {
    const gapAt = text.indexOf("::");
    const gap = gapAt >= 0;
    const head = gap ? text.slice(0, gapAt) : text;
    const tail = gap ? text.slice(gapAt + 2) : "";
    if (tail.includes("::")) return false;
    const groups = [head, tail].filter((part) => part !== "").flatMap((part) => part.split(":"));
    // Only the very last group may be an IPv4 address, and it fills two groups.
    const last = groups[groups.length - 1];
    if (groups.length && last.includes(".") && (tail !== "" || !gap)) {
      if (!IPV4.test(last)) return false;
      groups.splice(-1, 1, "0", "0");
    }
    if (!groups.every((group) => HEX_GROUP.test(group))) return false;
    return gap ? groups.length < 8 : groups.length === 8;
  }

  /** The authority of a flattr URL: host[:port]; null if valid, else a reason. */
  function authorityProblem(authority, what) {
    if (authority.includes("@")) return `${what} must not contain a user name or password`;
    let host;
    let rest;
    if (authority.startsWith("[")) {
      const end = authority.indexOf("]");
      host = end < 0 ? authority : authority.slice(0, end + 1);
      rest = end < 0 ? "" : authority.slice(end + 1);
    } else {
      const colon = authority.indexOf(":");
      host = colon < 0 ? authority : authority.slice(0, colon);
      rest = colon < 0 ? "" : authority.slice(colon);
    }
    if (rest !== "") {
      const port = rest.slice(1);
      if (!rest.startsWith(":") || !DIGITS.test(port) || port.length > 5 || Number(port) < 1 || Number(port) > 65535) {
        return `${what} has port ${JSON.stringify(rest.slice(0, 8))}; it must be 1 to 65535`;
      }
    }
    if (host === "") return `${what} must name a host`;
    if (host.startsWith("[")) {
      return host.endsWith("]") && isIpv6(host.slice(1, -1)) ? null : `${what} has an invalid IPv6 address`;
    }
    if (!HOST_NAME.test(host)) {
      return `${what} must have an ASCII host name (labels of letters, digits, '-' and '_'; IDN in its xn-- form)`;
    }
    const last = host.slice(host.lastIndexOf(".") + 1);
    if (DIGITS.test(last) && !IPV4.test(host)) {
      return `${what} has a host ending in a number that is not an IPv4 address (four parts of 0 to 255)`;
    }
    return null;
  }

  /**
   * A URL the host may queue (docs/protocol.md, "URLs"): `http(s)://host` with an
   * optional port, path, query and fragment; an ASCII host name, IPv4 or bracketed
   * IPv6 address; no user info; no space, control character, backslash or lone
   * surrogate; at most 8,192 bytes in UTF-8. The value is returned unchanged.
   */
  function flattrUrl(value, what = "url") {
    if (typeof value !== "string") return fail(`${what} must be a string, got ${kindOf(value)}`);
    if (value.length > MAX_URL_BYTES / 4) {
      // TextEncoder writes a lone surrogate as U+FFFD: 3 bytes, as the host counts it.
      const bytes = new TextEncoder().encode(value).length;
      if (bytes > MAX_URL_BYTES) return fail(`${what} is ${bytes} bytes, limit ${MAX_URL_BYTES}`);
    }
    const lone = LONE_SURROGATE.exec(value);
    if (lone) return fail(`${what} has a lone surrogate at character ${lone.index}`);
    const bad = URL_FORBIDDEN.exec(value);
    if (bad) {
      return fail(`${what} must not contain spaces, control characters or backslashes; character ${bad.index} is ${codePoint(value, bad.index)}`);
    }
    const scheme = URL_SCHEME.exec(value);
    if (!scheme || !["http", "https"].includes(scheme[1].toLowerCase())) {
      return fail(`${what} must be an http or https URL`);
    }
    const start = scheme[0].length;
    if (!value.startsWith("//", start)) return fail(`${what} must be an absolute URL (scheme://host)`);
    const authority = URL_AUTHORITY.exec(value.slice(start + 2))[0];
    const problem = authorityProblem(authority, what);
    if (problem) return fail(problem);
    return { ok: true, value };
  }

  /** True when `url` is a page of https://flattr.com (exact host, default port). */
  function isFlattrPage(url) {
    try {
      const parsed = new URL(url);
      return parsed.protocol === "https:" && parsed.host === "flattr.com";
    } catch (error) {
      return false;
    }
  }

  globalThis.FlattrValidate = Object.freeze({
    MAX_TOKEN_CHARS,
    MAX_URL_BYTES,
    subscription,
    accessToken,
    triggerDetail,
    tokenDetail,
    subscriptionDetail,
    flattrUrl,
    isFlattrPage,
  });
})();

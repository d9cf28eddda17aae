// Shape checks for everything that crosses a trust boundary into the extension:
// page events (content script) and messages relayed to the host (service worker).
//
// Contract: every function takes an untrusted value and returns either
//   {ok: true, value: <fresh plain object holding only the documented keys>}
// or
//   {ok: false, reason: <one line naming the field, the value's kind and the limit>}.
// Nothing here throws, and nothing here keeps a reference to the input: the caller acts
// on `value` only, so getters, prototypes and extra keys of the input cannot matter.
//
// Rules come from document 000 (page protocol) and docs/protocol.md (detail
// shapes, and field rules the host enforces again).
"use strict";

(() => {
  const MAX_TOKEN_CHARS = 4096; // docs/protocol.md: accessToken at most 4,096 chars
  const MAX_URL_BYTES = 8192; // docs/protocol.md: each URL at most 8,192 bytes UTF-8
  const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

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

  /** A URL the host may queue: absolute http(s) with a host, at most 8,192 bytes. */
  function flattrUrl(value, what = "url") {
    if (typeof value !== "string") return fail(`${what} must be a string, got ${kindOf(value)}`);
    const bytes = new TextEncoder().encode(value).length;
    if (bytes > MAX_URL_BYTES) return fail(`${what} is ${bytes} bytes, limit ${MAX_URL_BYTES}`);
    let parsed;
    try {
      parsed = new URL(value);
    } catch (error) {
      return fail(`${what} is not an absolute URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      return fail(`${what} must be http: or https:, got ${parsed.protocol}`);
    }
    if (!parsed.hostname) return fail(`${what} has no host`);
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

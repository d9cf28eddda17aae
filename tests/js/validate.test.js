// extension/lib/validate.js under `node --test` (make jstest).
//
// The first half runs the page protocol's shared cases (tests/data/protocol_cases.json),
// which tests/unit/test_protocol_cases.py runs against the host: one rule set, two
// implementations, one file of cases. The second half covers what only JavaScript
// can send: getters, symbols, prototypes, proxies, exotic objects.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const ROOT = path.resolve(__dirname, "..", "..");
require(path.join(ROOT, "extension", "lib", "validate.js"));
const V = globalThis.FlattrValidate;
const CASES = JSON.parse(fs.readFileSync(path.join(ROOT, "tests", "data", "protocol_cases.json"), "utf8"));

/** Resolve `{"$repeat": [prefix, unit, count, suffix]}` anywhere in a case. */
function expand(value) {
  if (Array.isArray(value)) return value.map(expand);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$repeat") {
      const [prefix, unit, count, suffix] = value.$repeat;
      return prefix + unit.repeat(count) + suffix;
    }
    // fromEntries defines own properties, so a "__proto__" key stays a key.
    return Object.fromEntries(keys.map((key) => [key, expand(value[key])]));
  }
  return value;
}

function show(value) {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

const SECTIONS = {
  url: V.flattrUrl,
  accessToken: V.accessToken,
  subscription: V.subscription,
  tokenDetail: V.tokenDetail,
  subscriptionDetail: V.subscriptionDetail,
  triggerDetail: V.triggerDetail,
};

test("the limits are the shared ones", () => {
  assert.equal(V.MAX_TOKEN_CHARS, CASES.limits.MAX_TOKEN_CHARS);
  assert.equal(V.MAX_URL_BYTES, CASES.limits.MAX_URL_BYTES);
  assert.equal(Number.MAX_SAFE_INTEGER, CASES.limits.MAX_ID); // the worker's request ids
});

for (const [section, check] of Object.entries(SECTIONS)) {
  test(`shared cases: ${section}`, async (t) => {
    assert.ok(CASES[section].length > 0);
    for (const [index, raw] of CASES[section].entries()) {
      await t.test(`${index} ${raw.why}`, () => {
        const value = expand(raw.value);
        const result = check(value);
        assert.equal(typeof result.ok, "boolean");
        if (raw.valid) {
          assert.equal(result.ok, true, `${show(value)}: ${result.reason}`);
          assert.deepEqual(result.value, value);
        } else {
          assert.equal(result.ok, false, `${show(value)} was accepted`);
          assert.equal(typeof result.reason, "string");
          assert.ok(result.reason.length > 0 && result.reason.length < 400, result.reason);
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// What JSON cannot express.
// ---------------------------------------------------------------------------
test("a getter is refused and never run", () => {
  let runs = 0;
  const detail = {
    get accessToken() {
      runs += 1;
      return "ok-token";
    },
  };
  const result = V.tokenDetail(detail);
  assert.equal(result.ok, false);
  assert.match(result.reason, /must be a data property/);
  assert.equal(runs, 0);
});

test("symbol keys, inherited keys and a polluted prototype are refused", () => {
  assert.match(V.triggerDetail({ action: "authentication", [Symbol("x")]: 1 }).reason, /symbol keys/);
  assert.match(V.triggerDetail(Object.create({ action: "authentication" })).reason, /action must be a string/);
  Object.prototype.action = "authentication";
  try {
    assert.match(V.triggerDetail({}).reason, /action must be a string/);
  } finally {
    delete Object.prototype.action;
  }
});

test("exotic objects are not plain records", () => {
  for (const value of [new Date(), /x/, new Map(), [], () => {}, new (class Token {})()]) {
    const result = V.tokenDetail(value);
    assert.equal(result.ok, false, String(value));
  }
  assert.equal(V.tokenDetail(new String("ok-token")).ok, false);
  assert.equal(V.accessToken(new String("ok-token")).ok, false);
  assert.equal(V.flattrUrl(new String("https://a.example/")).ok, false);
  assert.equal(V.subscription({ active: new Boolean(true) }).ok, false);
});

test("a null-prototype object is a plain record", () => {
  const detail = Object.create(null);
  detail.accessToken = "ok-token";
  assert.deepEqual(V.tokenDetail(detail), { ok: true, value: { accessToken: "ok-token" } });
});

test("a proxy that throws is refused, not thrown", () => {
  const hostile = new Proxy({}, {
    ownKeys() {
      throw new Error("boom");
    },
    getOwnPropertyDescriptor() {
      throw new Error("boom");
    },
  });
  for (const check of Object.values(SECTIONS)) {
    const result = check(hostile);
    assert.equal(result.ok, false);
  }
});

test("undefined is refused with its kind named", () => {
  assert.match(V.accessToken(undefined).reason, /got undefined/);
  assert.match(V.flattrUrl(undefined).reason, /got undefined/);
  assert.match(V.tokenDetail({ accessToken: "ok", subscription: undefined }).reason, /got undefined/);
});

test("the value returned is a fresh copy holding only the documented keys", () => {
  const subscription = { active: true };
  const detail = { accessToken: "ok-token", subscription };
  const result = V.tokenDetail(detail);
  assert.equal(result.ok, true);
  assert.notEqual(result.value, detail);
  assert.notEqual(result.value.subscription, subscription);
  subscription.active = false;
  assert.equal(result.value.subscription.active, true);
  assert.deepEqual(Object.keys(V.subscriptionDetail({ subscription }).value), ["subscription"]);
});

test("reasons name the field, the kind and the limit", () => {
  assert.equal(V.accessToken("a".repeat(4097)).reason, "accessToken is 4097 characters, limit 4096");
  assert.equal(V.flattrUrl(`https://a.example/${"a".repeat(8175)}`).reason, "url is 8193 bytes, limit 8192");
  assert.match(V.flattrUrl("https://a.example/a\tb").reason, /character 19 is U\+0009/);
  assert.match(V.flattrUrl("https://a.example/\ud800").reason, /lone surrogate at character 18/);
  assert.match(V.tokenDetail({ accessToken: "ok", admin: true }).reason, /unexpected key "admin"/);
  assert.match(V.flattrUrl("https://u:p@a.example/").reason, /user name or password/);
});

test("isFlattrPage: https://flattr.com exactly", () => {
  for (const url of ["https://flattr.com/", "https://flattr.com/oauth/ext?x=1", "https://FLATTR.com/x", "https://flattr.com:443/"]) {
    assert.equal(V.isFlattrPage(url), true, url);
  }
  for (const url of [
    "http://flattr.com/", "https://flattr.com:8443/", "https://www.flattr.com/", "https://flattr.com.evil.example/",
    "https://evil.example/?https://flattr.com/", "https://user@evil.example/", "not a url", "", null, undefined, 42,
  ]) {
    assert.equal(V.isFlattrPage(url), false, String(url));
  }
});

test("the module is frozen", () => {
  assert.ok(Object.isFrozen(V));
});

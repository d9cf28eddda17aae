// Reads {"url": [...], "accessToken": [...], ...} as JSON on stdin and writes the
// same shape with each value replaced by lib/validate.js's verdict (true: valid).
// tests/unit/test_protocol_cases.py uses it to compare both implementations on
// generated inputs, beyond the fixed cases.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

require(path.join(__dirname, "..", "..", "extension", "lib", "validate.js"));
const V = globalThis.FlattrValidate;
const CHECKS = {
  url: V.flattrUrl,
  accessToken: V.accessToken,
  subscription: V.subscription,
  tokenDetail: V.tokenDetail,
  subscriptionDetail: V.subscriptionDetail,
};

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const output = {};
for (const [kind, values] of Object.entries(input)) {
  output[kind] = values.map((value) => CHECKS[kind](value).ok);
}
process.stdout.write(JSON.stringify(output));

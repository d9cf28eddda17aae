// Build identifier sent to flattr.com in `flattr-authenticate` {build} (document 000).
// The unpacked folder says "dev"; extension/package.py rewrites the line below in the
// packaged copy. Keep it a single assignment of a string literal: package.py checks it.
globalThis.FLATTR_BUILD = "dev";

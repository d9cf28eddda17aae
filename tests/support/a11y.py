"""Accessibility checks run inside a real page: WCAG contrast from computed styles,
and the axe-core audit (installed by ``make npm-tools`` into .npm-tools/).

Both are JavaScript evaluated in the page under test, so they see what the browser
rendered (computed colours, the live DOM), not the source files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / ".npm-tools" / "node_modules" / "axe-core" / "axe.min.js"
#: The WCAG 2.0, 2.1 and 2.2 level A and AA rules of axe-core.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

# Every element with text of its own that is rendered (not hidden, not a disabled
# control, which WCAG 1.4.3 exempts): its colour composited over the backgrounds
# behind it, the contrast ratio, and the ratio it needs (3:1 for large text: 24 px,
# or 18.66 px bold; 4.5:1 otherwise). Returns {checked, failures}.
CONTRAST_JS = r"""
(() => {
  const parse = (text) => {
    const m = /rgba?\(([^)]+)\)/.exec(text || "");
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, under) => ({
    r: top.r * top.a + under.r * (1 - top.a),
    g: top.g * top.a + under.g * (1 - top.a),
    b: top.b * top.a + under.b * (1 - top.a),
    a: 1,
  });
  const channel = (v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) layers.push(c);
      if (c && c.a >= 1) break;
    }
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) bg = over(layer, bg);
    return bg;
  };
  const opacity = (el) => {
    let value = 1;
    for (let e = el; e; e = e.parentElement) value *= Number(getComputedStyle(e).opacity);
    return value;
  };
  const hex = (c) => "#" + [c.r, c.g, c.b]
    .map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  let checked = 0;
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("[hidden], :disabled, script, style")) continue;
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.getClientRects().length === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const bg = background(el);
    const fg = parse(style.color);
    fg.a *= opacity(el);
    const shown = over(fg, bg);
    const [hi, lo] = [lum(shown), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    const need = large ? 3 : 4.5;
    checked += 1;
    if (ratio < need - 0.005) {
      failures.push({ text: el.textContent.trim().slice(0, 60), id: el.id, tag: el.tagName,
        fg: hex(shown), bg: hex(bg), ratio: Math.round(ratio * 100) / 100, need });
    }
  }
  return { checked, failures };
})()
"""


def axe_source() -> str:
    """axe.min.js; fails (not skips) when missing: the audit is part of the suite."""
    assert AXE_JS.is_file(), f"{AXE_JS} is missing: run `make npm-tools`"
    return AXE_JS.read_text("utf-8")


def axe_run_js() -> str:
    """An expression that runs axe on the document; resolves to the violations."""
    options = json.dumps({"runOnly": {"type": "tag", "values": WCAG_TAGS},
                          "resultTypes": ["violations"]})
    return (
        f"axe.run(document, {options}).then((r) => r.violations.map((v) => ({{"
        "id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary)})))"
    )


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation, for the assertion message."""
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']}: {v['nodes']}" for v in violations)

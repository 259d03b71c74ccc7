"""server.status_assets holds the status page's inline stylesheet and script, and their CSP hashes.

Contract: ``STYLE`` and ``SCRIPT`` are inserted verbatim into the page by
``server.status_page``; ``asset_hash(text)`` is the ``'sha256-…'`` source a
Content-Security-Policy needs to allow exactly that inline block. Nothing here is
fetched from elsewhere: the page must work offline.

The script re-renders the page from ``/-/status.json`` with the same markup and class
names as ``status_page``'s Python renderer (keep the two in step), using ``textContent``
and ``setAttribute`` only, never ``innerHTML``, so served values cannot inject markup. After
each redraw it sets ``document.body.dataset.renders`` and dispatches ``status-rendered``.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["SCRIPT", "STYLE", "asset_hash"]


def asset_hash(text: str) -> str:
    """``'sha256-<base64>'`` of an inline ``<script>``/``<style>`` body, for CSP."""
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


STYLE = """
:root{--bg:#f5f6f8;--fg:#1b1f24;--muted:#5c6773;--card:#fff;--line:#dde1e6;--ok:#1a7f37;
--warn:#a96a00;--bad:#cf222e;--lag:#7c4dcc;--untr:#a40e26;--unk:#6e7781;--accent:#0969da;
color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;
--card:#161b22;--line:#2d333b;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--lag:#a371f7;
--untr:#ff7b72;--unk:#8d96a0;--accent:#4493f8}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Noto Sans","PingFang SC","Microsoft YaHei",sans-serif}
.wrap{max-width:1140px;margin:0 auto;padding:18px 16px}
header.top{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;
gap:6px 16px;margin-bottom:18px}
h1{font-size:22px;margin:0;display:flex;align-items:center;gap:10px;letter-spacing:-.01em}
.overall{font-size:13px;font-weight:600;padding:3px 11px;border-radius:999px;color:#fff;
background:var(--unk);letter-spacing:0}
.overall.ok{background:var(--ok)}.overall.warn{background:var(--warn)}
.overall.bad{background:var(--bad)}
.meta{color:var(--muted);font-size:13px}
section{margin:0 0 24px}
h2{font-size:12px;text-transform:uppercase;letter-spacing:.07em;color:var(--muted);
margin:0 0 8px;font-weight:600}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:10px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px;
min-width:0}
.tile .label{font-size:12px;color:var(--muted)}
.tile .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums;
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile .sub{font-size:12px;color:var(--muted);overflow-wrap:anywhere}
.mirrors{display:grid;grid-template-columns:repeat(auto-fill,minmax(310px,1fr));gap:10px}
.mirror{--c:var(--unk);background:var(--card);border:1px solid var(--line);
border-top:3px solid var(--c);border-radius:10px;padding:10px 14px 12px;min-width:0}
.st-healthy{--c:var(--ok)}.st-slow{--c:var(--warn)}.st-down{--c:var(--bad)}
.st-lagging{--c:var(--lag)}.st-untrusted{--c:var(--untr)}.st-unknown{--c:var(--unk)}
.mhead{display:flex;align-items:center;gap:8px}
.mname{font-size:16px;margin:0;flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}
.badge{font-size:12px;font-weight:600;color:var(--c);border:1px solid var(--c);
border-radius:999px;padding:0 9px;white-space:nowrap}
.st-down .badge,.st-untrusted .badge{background:var(--c);color:#fff}
.murl{font-size:12px;color:var(--muted);overflow-wrap:anywhere}
.nums{display:flex;flex-wrap:wrap;gap:4px 20px;margin:10px 0 6px;padding:0}
.nums div{display:flex;flex-direction:column;min-width:0}
.nums dt{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.nums dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums;white-space:nowrap}
.spark{display:block;width:100%;height:36px;margin-top:4px}
.spark .line{fill:none;stroke:var(--c);stroke-width:1.6;stroke-linejoin:round;
vector-effect:non-scaling-stroke}
.spark .area{fill:var(--c);opacity:.13}
.spark .dot{fill:var(--c)}
.spark .fail{fill:var(--bad)}
.mnote{font-size:12px;color:var(--fg);margin-top:6px;overflow-wrap:anywhere}
.merr{font-size:12px;color:var(--bad);margin-top:6px;overflow-wrap:anywhere}
.scroll{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:7px 12px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-weight:600;color:var(--muted);font-size:12px}
tbody tr:last-child td{border-bottom:0}
td.mod{white-space:normal;overflow-wrap:break-word;min-width:10em;font-weight:500}
thead th:first-child,td.mod{position:sticky;left:0;background:var(--card);z-index:1}
td.v,td.mod,.where{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",
monospace}
td.v{font-size:12px}
.v-ok{color:var(--ok)}.v-lag{color:var(--warn);font-weight:700}
.v-missing{color:var(--muted)}.v-err{color:var(--bad)}
.events{list-style:none;margin:0;padding:0;background:var(--card);border:1px solid var(--line);
border-radius:10px;overflow:hidden}
.ev{--c:var(--accent);display:grid;grid-template-columns:8.5em 1fr;gap:1px 14px;
padding:8px 14px;border-bottom:1px solid var(--line);box-shadow:inset 3px 0 0 var(--c)}
.ev:last-child{border-bottom:0}
.sev-critical{--c:var(--bad)}.sev-warning{--c:var(--warn)}.sev-info{--c:var(--accent)}
.ev>time{color:var(--muted);font-size:12px;font-variant-numeric:tabular-nums;padding-top:2px}
.ehead{min-width:0}
.ev .kind{font-weight:650;color:var(--c)}
.ev .where{font-size:12px;overflow-wrap:anywhere}
.ev .etext{grid-column:2;margin:0;font-size:13px;overflow-wrap:anywhere}
.ev.resolved .kind{color:var(--muted)}
.ev.resolved{box-shadow:inset 3px 0 0 var(--line)}
.ev .res{color:var(--ok);font-size:12px;white-space:nowrap}
.stale{background:var(--warn);color:#111;padding:7px 12px;border-radius:8px;
margin:-6px 0 14px;font-size:13px}
.stale[hidden]{display:none}
.empty{color:var(--muted);margin:0;padding:12px 14px;background:var(--card);
border:1px dashed var(--line);border-radius:10px}
footer{color:var(--muted);font-size:12px;margin:8px 0}
footer a{color:var(--accent)}
@media (max-width:620px){.wrap{padding:12px 10px}h1{font-size:20px}
.ev{grid-template-columns:1fr}.ev .etext{grid-column:1}.tile .value{font-size:19px}
.tiles{grid-template-columns:repeat(2,minmax(0,1fr))}}
"""

SCRIPT = r"""
(() => {
  "use strict";
  const body = document.body;
  const jsonUrl = body.dataset.json || "/-/status.json";
  const every = Math.max(2, Number(body.dataset.refresh) || 10) * 1000;
  const STATES = ["healthy", "slow", "down", "lagging", "untrusted", "unknown"];
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function add(node, kids) {
    for (const k of kids) {
      if (k === null || k === undefined || k === false || k === "") continue;
      if (Array.isArray(k)) add(node, k);
      else if (k instanceof Node) node.appendChild(k);
      else node.appendChild(document.createTextNode(String(k)));
    }
    return node;
  }
  function attrs(node, a) {
    for (const [k, v] of Object.entries(a || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    return node;
  }
  const el = (tag, a, ...kids) => add(attrs(document.createElement(tag), a), kids);
  const sv = (tag, a, ...kids) => add(attrs(document.createElementNS(SVG, tag), a), kids);

  const pad = (n) => String(n).padStart(2, "0");
  const fmtMs = (v) => v === null || v === undefined ? "\u2013"
    : v < 999.5 ? Math.floor(v + 0.5) + " ms" : (v / 1000).toFixed(1) + " s";
  const fmtPct = (r) => r === null || r === undefined ? "\u2013" : (r * 100).toFixed(1) + "%";
  const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
  function fmtBytes(n) {
    let v = Number(n || 0);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (let i = 0; i < units.length; i++) {
      if (v < 1024 || i === units.length - 1) return i === 0 ? n + " B" : v.toFixed(1) + " " + units[i];
      v /= 1024;
    }
    return "";
  }
  function fmtAgo(sec) {
    const s = Math.floor(Math.max(0, sec));
    if (s < 10) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function fmtDuration(sec) {
    const s = Math.floor(Math.max(0, sec));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor(s % 86400 / 3600) + " h";
  }
  const fmtUtc = (t) => new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  const iso = (t) => new Date(t * 1000).toISOString().slice(0, 19) + "Z";
  function fmtLocal(t, short) {
    const d = new Date(t * 1000);
    const off = -d.getTimezoneOffset();
    const day = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    const hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (short) return day.slice(5) + " " + hm;
    const tz = "UTC" + (off === 0 ? "" : (off > 0 ? "+" : "-") + Math.floor(Math.abs(off) / 60)
      + (off % 60 ? ":" + pad(Math.abs(off) % 60) : ""));
    return day + " " + hm + ":" + pad(d.getSeconds()) + " " + tz;
  }
  const time = (t, text) => el("time", {datetime: iso(t), title: fmtUtc(t)}, text);

  function overall(s) {
    const ms = s.mirrors || [];
    const bad = ms.filter((m) => m.state === "down" || m.state === "untrusted").length;
    const warn = ms.filter((m) => m.state === "slow" || m.state === "lagging").length;
    const db = (s.sumdbs || []).filter((d) => d.state === "unreachable" || d.state === "inconsistent");
    if (!ms.length) return ["unk", "no mirrors"];
    if (bad === ms.length) return ["bad", "all mirrors down"];
    if (db.length) return ["bad", "checksum database " + db[0].state];
    if (bad || warn) return [bad ? "bad" : "warn", (bad + warn) + " of " + ms.length + " mirrors degraded"];
    return ["ok", "all mirrors healthy"];
  }

  function sparkline(values, width, height) {
    width = width || 160; height = height || 32;
    values = values || [];
    const known = values.filter((v) => v !== null && v !== undefined);
    const top = (known.length ? Math.max(...known) * 1.1 : 1) || 1;
    const n = values.length, step = n > 1 ? width / (n - 1) : 0, base = height - 4;
    const r1 = (x) => Math.round(x * 10) / 10;
    const xAt = (i) => r1(n > 1 ? i * step : width / 2);
    const parts = [], segments = [];
    let seg = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) {
        if (seg.length) segments.push(seg);
        seg = [];
        parts.push(sv("rect", {class: "fail", x: Math.max(0, xAt(i) - 1), y: height - 3, width: 2, height: 3}));
      } else {
        seg.push([xAt(i), r1(base - v / top * (base - 2))]);
      }
    });
    if (seg.length) segments.push(seg);
    for (const sg of segments) {
      if (sg.length === 1) {
        parts.push(sv("rect", {class: "dot", x: r1(sg[0][0] - 1), y: r1(sg[0][1] - 1), width: 2, height: 2}));
        continue;
      }
      const pts = sg.map((p) => p[0] + "," + p[1]).join(" ");
      const d = "M" + sg[0][0] + "," + base + " L" + pts.split(" ").join(" L") + " L" + sg[sg.length - 1][0] + "," + base + " Z";
      parts.push(sv("path", {class: "area", d: d}));
      parts.push(sv("polyline", {class: "line", points: pts}));
    }
    const label = "latency history" + (known.length
      ? ", last " + fmtMs(known[known.length - 1]) + ", max " + fmtMs(Math.max(...known)) : ", no data");
    return sv("svg", {class: "spark", viewBox: "0 0 " + width + " " + height,
      preserveAspectRatio: "none", role: "img", "aria-label": label}, sv("title", null, label), parts);
  }

  const num = (label, value) => el("div", null, el("dt", null, label), el("dd", null, value));

  function mirrorCard(m, now) {
    const state = STATES.includes(m.state) ? m.state : "unknown";
    const since = m.state_since ? [" \u00b7 since ", time(m.state_since, fmtAgo(now - m.state_since))] : null;
    let err = null;
    if (m.last_error) {
      const when = m.last_error_at ? " " + fmtAgo(now - m.last_error_at) : "";
      err = el("div", {class: "merr"}, "last error" + when + ": " + m.last_error);
    }
    return el("article", {class: "mirror st-" + state, "data-mirror": m.name, "data-state": state},
      el("div", {class: "mhead"}, el("h3", {class: "mname", title: m.name}, m.name),
        el("span", {class: "badge"}, state)),
      el("div", {class: "murl"}, m.url, since),
      el("dl", {class: "nums"}, num("p50", fmtMs(m.p50_ms)), num("p90", fmtMs(m.p90_ms)),
        num("success", fmtPct(m.success_ratio)), num("requests", fmtInt(m.requests))),
      sparkline(m.history_ms),
      m.note ? el("div", {class: "mnote"}, m.note) : null,
      err);
  }

  const tile = (label, value, sub, key) => el("div", {class: "tile", "data-tile": key || null},
    el("div", {class: "label"}, label), el("div", {class: "value"}, value),
    sub ? el("div", {class: "sub"}, sub) : null);

  function tiles(s) {
    const ms = s.mirrors || [];
    const up = ms.filter((m) => ["healthy", "slow", "lagging"].includes(m.state)).length;
    const c = s.cache || {};
    const out = [
      tile("Mirrors in use", up + " / " + ms.length, s.policy ? "policy " + s.policy : null, "mirrors"),
      tile("Cache hit ratio", fmtPct(c.hit_ratio), fmtInt(c.hits) + " hits \u00b7 " + fmtInt(c.misses) + " misses", "cache"),
      tile("Bytes served", fmtBytes(c.bytes_served), null, "bytes"),
    ];
    for (const d of s.sumdbs || []) {
      const sub = [d.name, " \u00b7 ", d.state];
      if (d.verified_at) sub.push(" \u00b7 verified ", time(d.verified_at, fmtAgo(s.generated_at - d.verified_at)));
      if (d.error) sub.push(" \u00b7 ", d.error);
      out.push(tile("Checksum DB tree size", d.tree_size === null || d.tree_size === undefined ? "\u2013" : fmtInt(d.tree_size), sub, "sumdb"));
    }
    out.push(tile("Uptime", fmtDuration(s.uptime_seconds), "gomirror " + s.version, "uptime"));
    return el("div", {class: "tiles"}, out);
  }

  function versionCell(v, newest) {
    if (v === null) return el("td", {class: "v v-err"}, "error");
    if (v === undefined || v === "") return el("td", {class: "v v-missing", title: "not found"}, "\u2014");
    return el("td", {class: !newest || v === newest ? "v v-ok" : "v v-lag"}, v);
  }

  const pathBreaks = (path) => path.split("/").flatMap((p, i, all) =>
    i === all.length - 1 ? [p] : [p + "/", el("wbr")]);

  function modulesTable(s) {
    const mods = s.modules || [];
    if (!mods.length) return el("p", {class: "empty"}, "No modules watched yet.");
    const cols = (s.mirrors || []).map((m) => m.name);
    for (const w of mods) for (const k of Object.keys(w.latest || {})) if (!cols.includes(k)) cols.push(k);
    const head = el("tr", null, el("th", null, "Module"), el("th", null, "Newest"), cols.map((c) => el("th", null, c)));
    const rows = mods.map((w) => el("tr", {"data-module": w.path},
      el("td", {class: "mod"}, pathBreaks(w.path)), el("td", {class: "v"}, w.newest || "\u2013"),
      cols.map((c) => versionCell(Object.prototype.hasOwnProperty.call(w.latest || {}, c) ? w.latest[c] : "", w.newest))));
    return el("div", {class: "scroll"}, el("table", {class: "modules"}, el("thead", null, head), el("tbody", null, rows)));
  }

  function eventItem(e, now) {
    const where = [e.mirror, (e.module || "") + (e.version ? "@" + e.version : "")].filter(Boolean).join(" \u00b7 ");
    const sev = ["critical", "warning", "info"].includes(e.severity) ? e.severity : "info";
    const res = e.resolved_at ? el("span", {class: "res"}, "resolved ", time(e.resolved_at, fmtAgo(now - e.resolved_at))) : null;
    return el("li", {class: "ev sev-" + sev + (e.resolved_at ? " resolved" : ""), "data-kind": e.kind},
      time(e.time, now - e.time > 3600 ? fmtLocal(e.time, true) : fmtAgo(now - e.time)),
      el("div", {class: "ehead"}, el("span", {class: "kind"}, e.kind), " ", el("span", {class: "where"}, where), " ", res),
      e.text ? el("p", {class: "etext"}, e.text) : null);
  }

  function eventsList(s) {
    const evs = s.events || [];
    if (!evs.length) return el("p", {class: "empty"}, "No events recorded.");
    return el("ol", {class: "events"}, evs.map((e) => eventItem(e, s.generated_at)));
  }

  function render(s) {
    const [level, text] = overall(s);
    $("top").replaceChildren(
      el("h1", null, "gomirror ", el("span", {class: "overall " + level, id: "overall"}, text)),
      el("div", {class: "meta", id: "meta"}, s.version + " \u00b7 up " + fmtDuration(s.uptime_seconds) + " \u00b7 updated ",
        time(s.generated_at, fmtLocal(s.generated_at, false))));
    const ms = s.mirrors || [];
    $("app").replaceChildren(
      el("section", {id: "summary"}, el("h2", null, "Overview"), tiles(s)),
      el("section", null, el("h2", null, "Mirrors"), el("div", {class: "mirrors"},
        ms.length ? ms.map((m) => mirrorCard(m, s.generated_at)) : el("p", {class: "empty"}, "No upstream mirrors configured."))),
      el("section", null, el("h2", null, "Watched modules"), modulesTable(s)),
      el("section", null, el("h2", null, "Recent events"), eventsList(s)));
    document.title = "gomirror status \u00b7 " + text;
    body.dataset.renders = String((Number(body.dataset.renders) || 0) + 1);
    document.dispatchEvent(new CustomEvent("status-rendered"));
  }

  let last = null, timer = 0;
  function stale(reason) {
    const box = $("stale");
    box.textContent = "Could not refresh (" + reason + ")" +
      (last ? "; showing data from " + fmtLocal(last.generated_at, false) : "") + ". Retrying\u2026";
    box.hidden = false;
  }
  async function load() {
    clearTimeout(timer);
    let s = null;
    try {
      const r = await fetch(jsonUrl, {cache: "no-store", headers: {Accept: "application/json"}});
      if (!r.ok) throw new Error("HTTP " + r.status);
      s = await r.json();
    } catch (e) {
      stale(e && e.message ? e.message : String(e));  // the server is away: keep the last data
    }
    if (s) {
      try {
        render(s);
        last = s;
        $("stale").hidden = true;
      } catch (e) {
        console.error("status page: cannot render", e);  // a bug, not an outage: say so loudly
        stale("unreadable status data");
      }
    }
    if (!document.hidden) timer = setTimeout(load, every);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) load(); });
  load();
})();
"""

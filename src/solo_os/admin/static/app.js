"use strict";
// The solo-os dashboard: a small single-page app over the admin API (/api).
// No framework and no build step. Every value from the server is put into the page with
// textContent or attributes, never as HTML. The current view refreshes itself every few
// seconds while the tab is visible.

(function () {
  const REFRESH_MS = 5000;
  const view = document.getElementById("view");
  const toastBox = document.getElementById("toast");
  const live = document.getElementById("live");
  let csrfToken = null;
  let current = null; // { key, state, load, draw }
  let refreshing = false;

  // --- DOM helpers ----------------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const c of children) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  function toast(message, kind) {
    toastBox.textContent = message;
    toastBox.className = kind || "info";
    toastBox.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { toastBox.hidden = true; }, 5000);
  }

  function ago(iso) {
    if (!iso) return "";
    const secs = (Date.now() - Date.parse(iso)) / 1000;
    if (secs < 0) return "in " + span(-secs);
    return span(secs) + " ago";
  }
  function span(secs) {
    if (secs < 60) return Math.floor(secs) + "s";
    if (secs < 3600) return Math.floor(secs / 60) + "m";
    if (secs < 86400) return Math.floor(secs / 3600) + "h";
    return Math.floor(secs / 86400) + "d";
  }
  // Every time on the dashboard is UTC and says so (as the CLI does): "2026-12-04 17:48:36 UTC".
  function utc(iso, withSeconds) {
    const text = new Date(iso).toISOString().replace("T", " ");
    return text.slice(0, withSeconds === false ? 16 : 19) + " UTC";
  }
  function when(iso) {
    return iso ? h("time", { datetime: iso, title: utc(iso) }, ago(iso)) : "";
  }
  function exact(iso) {
    return iso ? h("time", { datetime: iso, title: ago(iso) }, utc(iso)) : "—";
  }
  function clock(iso) { // a log line's time: HH:MM:SS.mmm UTC
    return new Date(iso).toISOString().slice(11, 23);
  }
  function duration(v) {
    if (v === null || v === undefined) return "—";
    if (v < 1000) return v.toFixed(v < 10 ? 1 : 0) + " ms";
    if (v < 60000) return (v / 1000).toFixed(2) + " s";
    const secs = Math.round(v / 1000);
    return Math.floor(secs / 60) + "m " + String(secs % 60).padStart(2, "0") + "s";
  }
  function short(id) { return id ? id.slice(0, 8) + "…" + id.slice(-4) : ""; }
  function badge(status) { return h("span", { class: "badge " + status }, status); }
  function ms(v) {
    if (v === null || v === undefined) return "—";
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 2 : 0) + " ms";
  }
  function num(v) { return (v || 0).toLocaleString(); }
  function clip(text, n) {
    if (!text) return "";
    return text.length > n ? text.slice(0, n) + "…" : text;
  }

  // --- the API --------------------------------------------------------------------------

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = { Accept: "application/json" };
    if (opts.method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = csrfToken || "";
    }
    const r = await fetch("/api" + path, {
      method: opts.method,
      credentials: "same-origin",
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    if (r.status === 401) {
      window.location.assign("/dashboard/login");
      throw new Error("signed out");
    }
    const data = r.headers.get("content-type") === "application/json" ? await r.json() : null;
    if (!r.ok) {
      const message = data && (data.message || data.error || JSON.stringify(data.detail));
      throw new Error(message || "request failed (" + r.status + ")");
    }
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const text = q.toString();
    return text ? "?" + text : "";
  }

  // --- routing --------------------------------------------------------------------------

  function parseHash() {
    const raw = window.location.hash.replace(/^#/, "") || "/";
    const [path, qs] = raw.split("?");
    const parts = path.split("/").filter(Boolean);
    return { parts, params: Object.fromEntries(new URLSearchParams(qs || "")) };
  }

  const routes = {
    "": overview,
    events: (r) => (r.parts[1] ? eventDetail(r.parts[1]) : eventList(r.params)),
    executions: (r) => (r.parts[1] ? executionDetail(r.parts[1]) : executionList(r.params)),
    dead: (r) => deadLetters(r.params),
    schedules: (r) => (r.parts[1] ? scheduleDetail(decodeURIComponent(r.parts[1])) : schedulesView()),
    sources: sourcesView,
    search: (r) => searchView(r.params.q || ""),
  };

  async function route() {
    const r = parseHash();
    const name = r.parts[0] || "";
    const make = routes[name];
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("active", a.dataset.nav === (name || "overview"));
    }
    const box = document.getElementById("search");
    if (box && document.activeElement !== box) box.value = name === "search" ? (r.params.q || "") : "";
    if (!make) {
      view.replaceChildren(h("p", { class: "empty" }, "No such page."));
      return;
    }
    current = make(r);
    toastBox.hidden = true;
    view.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    await refresh(true);
  }

  // The user types in a filter, has edited one without applying it, or is asked to confirm
  // something: a background refresh would redraw the view and throw that away.
  function userBusy() {
    const focused = document.activeElement;
    if (current.state.ask) return true;
    if (focused && view.contains(focused) && focused.matches("input, select, textarea")) return true;
    return Boolean(view.querySelector("form.filters[data-dirty]"));
  }

  let seq = 0;
  async function refresh(first) {
    if (!current) return;
    // Background refreshes never overlap or override what the user is looking at; a user's
    // action (first) always runs, and only the newest load is drawn.
    if (!first && (refreshing || current.state.paused)) return;
    if (!first && userBusy()) return;
    const page = current;
    const mine = ++seq;
    refreshing = true;
    try {
      await page.load(page.state);
      if (page !== current || mine !== seq) return; // navigated or reloaded meanwhile
      // The user may have started editing while this load was in flight: keep their edit.
      if (!first && userBusy()) return;
      const scroll = window.scrollY;
      view.replaceChildren(page.draw(page.state));
      if (!first) window.scrollTo(0, scroll);
      live.classList.remove("stale");
    } catch (err) {
      live.classList.add("stale");
      if (first && mine === seq) view.replaceChildren(h("p", { class: "error" }, "Could not load: " + err.message));
    } finally {
      if (mine === seq) refreshing = false;
    }
    if (mine === seq) updateDeadCount();
  }

  async function updateDeadCount() {
    try {
      const stats = await api("/stats?window=1h");
      const pill = document.getElementById("dead-count");
      pill.textContent = num(stats.queue.dead);
      pill.hidden = !stats.queue.dead;
    } catch (err) { /* the view shows errors */ }
  }

  function page(key, state, load, draw) {
    return { key, state: Object.assign({ paused: false }, state), load, draw };
  }

  // A table: columns are [title, cell(row)] pairs.
  function table(rows, columns, empty) {
    if (!rows.length) return h("p", { class: "empty" }, empty || "Nothing here yet.");
    return h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", {}, title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))));
  }

  const RANGES = [["15m", "last 15 minutes", 900], ["1h", "last hour", 3600], ["24h", "last 24 hours", 86400],
    ["7d", "last 7 days", 604800], ["custom", "custom range (UTC)", 0]];

  // A row of filters. A field is { name, label, options?, type? }; options are values or
  // [value, label] pairs. { range: true } adds the time range: a preset or from/to in UTC.
  function filterBar(fields, values, onApply) {
    const inputs = {};
    const form = h("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      delete form.dataset.dirty;
      onApply(read());
    } });
    // An edited but not yet applied filter holds off the background refresh (which redraws the
    // form from the page's state and would throw the edit away).
    const edited = () => { form.dataset.dirty = "1"; };
    form.addEventListener("input", edited);
    form.addEventListener("change", edited);
    function read() {
      const out = {};
      for (const [k, el] of Object.entries(inputs)) {
        if (!el.hidden) out[k] = el.value.trim();
      }
      return out;
    }
    for (const f of fields) {
      if (f.range) {
        const custom = [];
        const pick = h("select", { name: "range", "aria-label": "Time range", onchange: () => {
          for (const el of custom) el.hidden = pick.value !== "custom";
        } },
        h("option", { value: "" }, "any time"),
        RANGES.map(([v, label]) => h("option", { value: v, selected: values.range === v }, label)));
        inputs.range = pick;
        form.append(pick);
        for (const [name, label] of [["from", "From (UTC)"], ["to", "To (UTC)"]]) {
          const el = h("input", { name, type: "datetime-local", "aria-label": label, title: label, value: values[name] || "" });
          el.hidden = values.range !== "custom";
          custom.push(el);
          inputs[name] = el;
          form.append(el);
        }
        continue;
      }
      let el;
      if (f.options) {
        el = h("select", { name: f.name, "aria-label": f.label },
          h("option", { value: "" }, "any " + f.label.toLowerCase()),
          f.options.map((o) => {
            const [v, label] = Array.isArray(o) ? o : [o, o];
            return h("option", { value: v, selected: values[f.name] === v }, label);
          }));
      } else {
        el = h("input", { name: f.name, type: f.type || "text", placeholder: f.label, "aria-label": f.label, value: values[f.name] || "" });
      }
      inputs[f.name] = el;
      form.append(el);
    }
    form.append(h("button", { type: "submit" }, "Filter"));
    return form;
  }

  // The page's filters as API parameters: a range preset becomes since= (re-read on every
  // refresh, so "last hour" stays the last hour); a custom range is UTC.
  function apiParams(params) {
    const out = Object.assign({}, params);
    delete out.range; delete out.from; delete out.to;
    const preset = RANGES.find(([v]) => v === params.range);
    if (preset && preset[2]) out.since = new Date(Date.now() - preset[2] * 1000).toISOString();
    if (params.range === "custom") {
      if (params.from) out.since = params.from + (params.from.length === 16 ? ":00" : "") + "Z";
      if (params.to) out.until = params.to + (params.to.length === 16 ? ":00" : "") + "Z";
    }
    return out;
  }

  // An inline "are you sure?" for an action: st.ask = { text, yes, run } shows it.
  function askBox(st, redraw) {
    if (!st.ask) return null;
    const ask = st.ask;
    return h("div", { class: "confirm", role: "alertdialog", "aria-label": "confirm" },
      h("span", {}, ask.text),
      h("button", { type: "button", class: "primary danger", onclick: async (e) => {
        e.target.disabled = true;
        try { await ask.run(); } catch (err) { toast(err.message, "bad"); }
        if (st.ask === ask) { st.ask = null; redraw(); }
      } }, ask.yes),
      h("button", { type: "button", class: "ghost", onclick: () => { st.ask = null; redraw(); } }, "Keep"));
  }

  function redrawer() {
    return () => { if (current) view.replaceChildren(current.draw(current.state)); };
  }

  function navigate(path, params) {
    window.location.hash = "#/" + path + query(params || {});
  }

  async function sourceNames() {
    const sources = await api("/sources");
    return {
      sources: sources.map((x) => x.name),
      handlers: [...new Set(sources.flatMap((x) => x.handlers))].sort(),
    };
  }

  // --- overview -------------------------------------------------------------------------

  function overview() {
    return page("overview", { window: "24h" }, async (st) => {
      const [stats, failures] = await Promise.all([
        api("/stats?window=" + st.window), api("/failures?limit=8"),
      ]);
      st.stats = stats;
      st.failures = failures;
    }, (st) => {
      const x = st.stats;
      const windowSecs = (Date.parse(x.until) - Date.parse(x.since)) / 1000;
      const finished = x.succeeded + x.failed;
      const rate = finished ? (100 * x.succeeded / finished).toFixed(1) + "%" : "—";
      const hourly = windowSecs >= 86400;
      const rateValue = x.deliveries / (windowSecs / (hourly ? 3600 : 60));
      const rateText = rateValue.toFixed(rateValue < 10 ? 2 : 0) + (hourly ? " / hour" : " / min");
      return h("section", { class: "overview" },
        h("div", { class: "head" },
          h("h1", {}, "Overview"),
          h("div", { class: "segmented", role: "group", "aria-label": "time window" },
            ["1h", "6h", "24h", "7d", "30d"].map((w) => h("button", {
              type: "button", class: w === st.window ? "on" : "",
              onclick: () => { st.window = w; refresh(true); },
            }, w)))),
        h("div", { class: "cards" },
          card("Deliveries", num(x.deliveries), rateText + " · " + num(x.rejected) + " rejected"),
          card("Success rate", rate, num(x.succeeded) + " ok · " + num(x.failed) + " failed attempts"),
          card("Queue depth", num(x.queue.pending + x.queue.running), num(x.queue.pending) + " pending · " + num(x.queue.running) + " running"),
          card("Dead letters", num(x.queue.dead), x.queue.dead ? h("a", { href: "#/dead" }, "review and replay →") : "none", x.queue.dead ? "alert" : ""),
          card("Latency p95", ms(x.latency_ms.p95), "p50 " + ms(x.latency_ms.p50) + " · max " + ms(x.latency_ms.max))),
        h("div", { class: "panel" },
          h("h2", {}, "Activity, last " + st.window),
          chart(x.series, x.bucket_seconds)),
        h("div", { class: "panel" },
          h("h2", {}, "Latest failures"),
          table(st.failures, [
            ["When", (f) => when(f.ended_at)],
            ["Handler", (f) => h("a", { href: "#/executions/" + f.execution_id }, f.handler)],
            ["Event", (f) => (f.source ? f.source + " · " + f.event_type : "—")],
            ["Attempt", (f) => "#" + f.attempt + " " + f.outcome.replace("_", " ")],
            ["Error", (f) => h("span", { class: "err", title: f.error_message || "" }, (f.error_type ? f.error_type + ": " : "") + clip(f.error_message, 90))],
            ["Now", (f) => badge(f.status)],
          ], "No failures. 🎉")));
    });
  }

  function card(title, value, sub, cls) {
    return h("div", { class: "card " + (cls || "") },
      h("div", { class: "card-title" }, title),
      h("div", { class: "card-value" }, value),
      h("div", { class: "card-sub" }, sub));
  }

  // Ticks fall on round UTC times; at most about 8 labels whatever the window.
  const TICKS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function tickLabel(d, step) {
    const day = MONTHS[d.getUTCMonth()] + " " + d.getUTCDate();
    const hm = String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
    if (step >= 86400) return day;
    return hm === "00:00" ? day : hm;
  }

  function bucketText(seconds) {
    if (seconds % 86400 === 0) return seconds / 86400 + " d";
    if (seconds % 3600 === 0) return seconds / 3600 + " h";
    return seconds / 60 + " min";
  }

  // Deliveries (blue) beside attempts (succeeded green, failed red, stacked) per bucket; the
  // last bucket is the current one, still filling up.
  function chart(series, bucketSeconds) {
    // Drawn at the width it is shown at, so its text stays readable on a phone.
    const W = Math.round(Math.max(320, Math.min(960, (view.clientWidth || 960) - 60)));
    const H = W < 600 ? 200 : 240, L = 44, R = 12, T = 12, B = 30;
    const maxLabels = W < 600 ? 4 : 8;
    const n = series.length;
    const max = Math.max(1, ...series.map((b) => Math.max(b.deliveries, b.succeeded + b.failed)));
    const yStep = niceStep(max / 4);
    const top = yStep * Math.ceil(max / yStep);
    const bw = (W - L - R) / n;
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "deliveries and attempts per " + bucketText(bucketSeconds) + ", in UTC" });
    for (let v = 0; v <= top; v += yStep) {
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }));
      svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, String(v)));
    }
    const t0 = Date.parse(series[0].start) / 1000;
    const step = TICKS.find((t) => t >= bucketSeconds && (n * bucketSeconds) / t <= maxLabels) || TICKS[TICKS.length - 1];
    series.forEach((b, i) => {
      const x = L + i * bw;
      const start = t0 + i * bucketSeconds;
      if (start % step === 0) {
        svg.append(s("line", { x1: x, x2: x, y1: H - B, y2: H - B + 4, class: "tick" }));
        svg.append(s("text", { x, y: H - 10, class: "axis tick-label", "text-anchor": i === 0 ? "start" : "middle" }, tickLabel(new Date(start * 1000), step)));
      }
      const group = s("g", { class: i === n - 1 ? "bucket now" : "bucket" });
      const half = Math.max(1, bw * 0.4);
      const gap = bw * 0.1;
      group.append(s("rect", { x: x + gap, width: half, y: y(b.deliveries), height: H - B - y(b.deliveries), class: "bar deliveries" }));
      group.append(s("rect", { x: x + gap + half, width: half, y: y(b.succeeded), height: H - B - y(b.succeeded), class: "bar ok" }));
      group.append(s("rect", { x: x + gap + half, width: half, y: y(b.succeeded + b.failed), height: y(b.succeeded) - y(b.succeeded + b.failed), class: "bar bad" }));
      group.append(s("rect", { x, width: bw, y: T, height: H - B - T, class: "hover" }));
      group.append(s("title", {}, `${utc(b.start, false)} + ${bucketText(bucketSeconds)}${i === n - 1 ? " (now, partial)" : ""}\n${b.deliveries} deliveries (${b.rejected} rejected)\n${b.succeeded} attempts succeeded, ${b.failed} failed` + (b.latency_ms_avg !== null ? `\navg ${ms(b.latency_ms_avg)}` : "")));
      svg.append(group);
    });
    svg.append(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "baseline" }));
    const empty = series.every((b) => !b.deliveries && !b.succeeded && !b.failed);
    if (empty) svg.append(s("text", { x: (L + W - R) / 2, y: (T + H - B) / 2, class: "axis empty-note", "text-anchor": "middle" }, "No activity in this window"));
    const legend = h("div", { class: "legend" },
      h("span", { class: "key bar" }, "deliveries"), h("span", { class: "key ok" }, "attempts succeeded"), h("span", { class: "key bad" }, "attempts failed"),
      h("span", { class: "muted" }, "UTC · one bar per " + bucketText(bucketSeconds) + " · the last is the current one"));
    return h("div", { class: "chart-box" }, svg, legend);
  }

  // A whole step of 1, 2 or 5 times a power of ten, at least v: gridlines on round counts.
  function niceStep(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // --- events ---------------------------------------------------------------------------

  function eventList(params) {
    return page("events", { params, items: [], next: null, extra: [] }, async (st) => {
      const [data, names] = await Promise.all([
        api("/events" + query(Object.assign({ limit: 50 }, apiParams(st.params)))), st.names || sourceNames(),
      ]);
      st.names = names;
      st.items = data.items;
      st.next = data.next_cursor;
      st.extra = [];
      st.bounded = data.payload_searched_since;
    }, (st) => {
      const rows = st.items.concat(st.extra);
      const more = h("button", { type: "button", onclick: async () => {
        const data = await api("/events" + query(Object.assign({ limit: 50, cursor: st.next }, apiParams(st.params))));
        st.extra = st.extra.concat(data.items);
        st.next = data.next_cursor;
        st.paused = true; // keep the older pages on screen instead of refreshing them away
        view.replaceChildren(current.draw(st));
      } }, "Load more");
      return h("section", {},
        h("div", { class: "head" }, h("h1", {}, "Events"), st.paused ? pausedNote(st) : null),
        filterBar([
          { name: "q", label: "Search id, key, correlation id, payload", type: "search" },
          { name: "status", label: "Status", options: ["accepted", "rejected"] },
          { name: "source", label: "Source", options: st.names.sources },
          { name: "type", label: "Type" },
          { range: true },
        ], st.params, (values) => navigate("events", values)),
        st.bounded ? h("p", { class: "note" }, "Payload text was searched in events received since " + utc(st.bounded) + " (a bounded scan); set a time range to search older ones.") : null,
        st.params.status === "rejected" ? revalidatePanel(st.params) : null,
        h("div", { class: "panel" }, table(rows, [
          ["Received", (e) => when(e.received_at)],
          ["Source", (e) => e.source],
          ["Type", (e) => h("a", { href: "#/events/" + e.id }, e.type || "(none)")],
          ["Status", (e) => badge(e.status)],
          ["Idempotency key", (e) => h("code", {}, clip(e.idempotency_key, 40))],
          ["Id", (e) => h("a", { href: "#/events/" + e.id, class: "mono" }, short(e.id))],
        ], "No events match."), st.next ? more : null));
    });
  }

  function pausedNote(st) {
    return h("span", { class: "note" }, "auto-refresh paused while older pages are shown · ",
      h("a", { href: "#", onclick: (e) => { e.preventDefault(); st.paused = false; refresh(true); } }, "resume"));
  }

  function revalidatePanel(params) {
    const box = h("div", { class: "panel actions" });
    const filter = { source: params.source || null, type: params.type || null };
    const start = h("button", { type: "button", onclick: async () => {
      start.disabled = true;
      try {
        const dry = await api("/events/revalidate", { method: "POST", body: Object.assign({ dry_run: true }, filter) });
        box.replaceChildren(
          h("span", {}, `${dry.matched} rejected event(s): ${dry.accepted} would now be accepted, ${dry.rejected} still fail.`),
          h("button", { type: "button", class: "primary", disabled: !dry.accepted, onclick: async () => {
            const done = await api("/events/revalidate", { method: "POST", body: Object.assign({ dry_run: false }, filter) });
            toast(`Revalidated: ${done.accepted} accepted, ${done.rejected} still rejected.`, "ok");
            refresh(true);
          } }, "Revalidate now"),
          h("button", { type: "button", class: "ghost", onclick: () => refresh(true) }, "Cancel"));
      } catch (err) { toast(err.message, "bad"); start.disabled = false; }
    } }, "Revalidate rejected events with the current schemas…");
    box.append(start);
    return box;
  }

  function eventDetail(id) {
    return page("event", { id, open: {} }, async (st) => {
      st.event = await api("/events/" + encodeURIComponent(id));
    }, (st) => {
      const e = st.event;
      const redraw = redrawer();
      const payload = e.payload !== null && e.payload !== undefined ? JSON.stringify(e.payload, null, 2) : null;
      return h("section", {},
        h("div", { class: "head" },
          h("h1", {}, "Event ", h("span", { class: "mono" }, short(e.id))), badge(e.status),
          e.status === "accepted" ? h("button", { type: "button", onclick: () => {
            st.ask = { text: "Run this event's handlers again as new executions? The earlier ones stay.", yes: "Yes, resend", run: async () => {
              const r = await api("/events/" + e.id + "/resend", { method: "POST", body: {} });
              toast(`Resent: ${r.execution_ids.length} new execution(s).`, "ok");
              st.ask = null;
              refresh(true);
            } };
            redraw();
          } }, "Resend…") : null,
          askBox(st, redraw),
          e.status === "rejected" ? h("button", { type: "button", class: "primary", onclick: async () => {
            try {
              const r = await api("/events/" + e.id + "/revalidate", { method: "POST", body: { dry_run: false } });
              toast(r.outcome === "accepted" ? `Accepted: ${r.executions} execution(s) started.` : "Still rejected: see the errors.", r.outcome === "accepted" ? "ok" : "bad");
              refresh(true);
            } catch (err) { toast(err.message, "bad"); }
          } }, "Revalidate") : null),
        h("div", { class: "panel" }, facts([
          ["Id", h("code", {}, e.id)], ["Source", e.source], ["Type", e.type],
          ["Idempotency key", h("code", {}, e.idempotency_key)], ["Correlation id", h("code", {}, e.correlation_id)],
          ["Received", exact(e.received_at)],
        ])),
        e.errors ? h("div", { class: "panel" }, h("h2", {}, "Validation errors"), table(e.errors, [
          ["Schema", (x) => x.schema || ""], ["Field", (x) => h("code", {}, (x.loc || []).join("."))],
          ["Problem", (x) => x.msg], ["Kind", (x) => x.type],
        ])) : null,
        h("div", { class: "panel" }, h("h2", {}, "Executions"), executionTable(e.executions, "No handler ran for this event.")),
        h("div", { class: "panel" }, h("h2", {}, "Payload"),
          payload !== null ? h("pre", { class: "json" }, payload) : h("p", { class: "muted" }, "The body is not JSON; see the raw body.")),
        keep(st, "headers", h("details", { class: "panel" }, h("summary", {}, "Headers (signatures removed)"),
          table(Object.entries(e.headers), [["Name", ([k]) => h("code", {}, k)], ["Value", ([, v]) => v]], "No headers kept."))),
        keep(st, "body", h("details", { class: "panel" }, h("summary", {}, "Raw body (" + e.body_encoding + ")"),
          h("pre", { class: "raw" }, e.body))));
    });
  }

  // Remember which <details> are open across refreshes.
  function keep(st, key, details) {
    details.open = !!st.open[key];
    details.addEventListener("toggle", () => { st.open[key] = details.open; });
    return details;
  }

  function facts(pairs) {
    return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "—" : v)]));
  }

  // --- executions -----------------------------------------------------------------------

  function executionTable(rows, empty) {
    return table(rows, [
      ["Created", (x) => when(x.created_at)],
      ["Handler", (x) => h("a", { href: "#/executions/" + x.id }, x.handler)],
      ["Kind", (x) => h("span", { class: "kind " + x.kind }, x.kind)],
      ["Status", (x) => x.reason ? h("span", {}, badge(x.status), " ", h("span", { class: "reason", title: "why (flow control)" }, x.reason)) : badge(x.status)],
      ["Attempts", (x) => x.attempts + " / " + x.max_attempts],
      ["Duration", (x) => h("span", { class: "num" }, duration(x.duration_ms))],
      ["Last error", (x) => h("span", { class: "err", title: x.last_error || "" }, clip(x.last_error, 80))],
      ["Updated", (x) => when(x.updated_at)],
    ], empty);
  }

  function executionList(params) {
    return page("executions", { params, items: [], next: null, extra: [] }, async (st) => {
      const [data, names] = await Promise.all([
        api("/executions" + query(Object.assign({ limit: 50 }, apiParams(st.params)))), st.names || sourceNames(),
      ]);
      st.names = names;
      st.items = data.items;
      st.next = data.next_cursor;
      st.extra = [];
    }, (st) => {
      const more = h("button", { type: "button", onclick: async () => {
        const data = await api("/executions" + query(Object.assign({ limit: 50, cursor: st.next }, apiParams(st.params))));
        st.extra = st.extra.concat(data.items);
        st.next = data.next_cursor;
        st.paused = true;
        view.replaceChildren(current.draw(st));
      } }, "Load more");
      const redraw = redrawer();
      const filter = apiParams(st.params);
      const bulk = { handler: filter.handler || null, source: filter.source || null, error: filter.error || null,
        since: filter.since || null, until: filter.until || null };
      const cancelAll = st.params.status === "pending" && st.items.length ? h("div", { class: "panel actions" },
        h("button", { type: "button", onclick: async () => {
          try {
            const dry = await api("/executions/cancel", { method: "POST", body: Object.assign({ dry_run: true }, bulk) });
            st.ask = { text: `Cancel ${dry.matched} pending execution(s)? They will not run.`, yes: "Yes, cancel them", run: async () => {
              const r = await api("/executions/cancel", { method: "POST", body: Object.assign({ dry_run: false }, bulk) });
              toast(`Cancelled ${r.changed} execution(s).`, "ok");
              st.ask = null;
              refresh(true);
            } };
            redraw();
          } catch (err) { toast(err.message, "bad"); }
        } }, "Cancel all matching…"), askBox(st, redraw)) : null;
      return h("section", {},
        h("div", { class: "head" }, h("h1", {}, "Executions"), st.paused ? pausedNote(st) : null),
        filterBar([
          { name: "q", label: "Search id, key, correlation id", type: "search" },
          { name: "kind", label: "Kind", options: [["webhook", "webhook runs"], ["cron", "cron runs"]] },
          { name: "status", label: "Status", options: ["pending", "running", "waiting", "succeeded", "dead", "cancelled", "skipped"] },
          { name: "handler", label: "Handler", options: st.names.handlers },
          { name: "source", label: "Source", options: st.names.sources },
          { name: "error", label: "Error contains" },
          { range: true },
        ], st.params, (values) => navigate("executions", values)),
        cancelAll,
        h("div", { class: "panel" }, executionTable(st.items.concat(st.extra), "No executions match."), st.next ? more : null));
    });
  }

  function executionActions(st, x, redraw) {
    function ask(text, yes, run) {
      return () => { st.ask = { text, yes, run }; redraw(); };
    }
    const out = [];
    if (x.status === "dead") {
      out.push(h("button", { type: "button", class: "primary", onclick: async () => {
        try {
          await api("/dead-letters/" + x.id + "/replay", { method: "POST", body: {} });
          toast("Replayed: the execution is pending again.", "ok");
          refresh(true);
        } catch (err) { toast(err.message, "bad"); }
      } }, "Replay"));
      out.push(h("button", { type: "button", class: "ghost", onclick: ask(
        "Delete this dead execution with its attempts, steps and logs? This cannot be undone.", "Yes, purge", async () => {
          await api("/dead-letters/" + x.id + "/purge", { method: "POST", body: {} });
          toast("Purged.", "ok");
          st.ask = null;
          navigate("dead");
        }) }, "Purge…"));
    }
    if (x.status === "pending") {
      out.push(h("button", { type: "button", onclick: ask("Cancel this execution? It will not run.", "Yes, cancel it", async () => {
        await api("/executions/" + x.id + "/cancel", { method: "POST", body: {} });
        toast("Cancelled.", "ok");
        st.ask = null;
        refresh(true);
      }) }, "Cancel…"));
    }
    if (x.status === "succeeded" || x.status === "cancelled") {
      out.push(h("button", { type: "button", onclick: ask("Run " + x.handler + " again as a new execution? This one and its history stay.", "Yes, re-run", async () => {
        const r = await api("/executions/" + x.id + "/rerun", { method: "POST", body: {} });
        toast("Started a new execution.", "ok");
        st.ask = null;
        navigate("executions/" + r.execution_ids[0]);
      }) }, "Re-run…"));
    }
    return out;
  }

  function logsPanel(x) {
    if (!x.logs.length) {
      return h("div", { class: "panel" }, h("h2", {}, "Logs"), h("p", { class: "empty" }, "The handler logged nothing through ctx.log."));
    }
    const attempts = [...new Set(x.logs.map((l) => l.attempt))];
    return h("div", { class: "panel" }, h("h2", {}, "Logs"),
      attempts.map((n) => h("div", { class: "log-attempt" },
        h("h3", {}, "Attempt " + n),
        h("ol", { class: "logs" }, x.logs.filter((l) => l.attempt === n).map((l) => h("li", { class: "log " + l.level },
          h("time", { datetime: l.at, title: utc(l.at) }, clock(l.at)),
          h("span", { class: "level" }, l.level),
          h("span", { class: "msg" }, l.message),
          l.fields ? h("span", { class: "fields" }, Object.entries(l.fields).map(([k, v]) =>
            h("span", { class: "field" }, h("span", { class: "k" }, k + "="), typeof v === "string" ? v : JSON.stringify(v)))) : null))))));
  }

  function executionDetail(id) {
    return page("execution", { id, open: {} }, async (st) => {
      st.x = await api("/executions/" + encodeURIComponent(id));
    }, (st) => {
      const x = st.x;
      const redraw = redrawer();
      return h("section", {},
        h("div", { class: "head" },
          h("h1", {}, x.handler, " ", h("span", { class: "mono muted" }, short(x.id))), badge(x.status),
          executionActions(st, x, redraw), askBox(st, redraw)),
        h("div", { class: "panel" }, facts([
          ["Id", h("code", {}, x.id)],
          ["Event", x.event ? h("a", { href: "#/events/" + x.event.id }, x.event.source + " · " + x.event.type) : "— (a scheduled run)"],
          ["Kind", x.kind],
          ["Attempts", x.attempts + " of " + x.max_attempts],
          ["Run time", duration(x.duration_ms)],
          ["Correlation id", h("code", {}, x.correlation_id)],
          ["Created", exact(x.created_at)], ["Updated", exact(x.updated_at)],
          ["Next run", x.status === "pending" ? exact(x.run_after) : "—"],
          ["Waiting until", x.status === "waiting" ? exact(x.run_after) : "—"],
          ["Parent", x.parent_id ? h("a", { href: "#/executions/" + x.parent_id }, short(x.parent_id)) : "—"],
          ["Children", (x.children || []).length ? h("span", {}, x.children.map((c) => h("a", { href: "#/executions/" + c }, short(c) + " "))) : "—"],
          ["Result", x.result !== null && x.result !== undefined ? h("code", {}, JSON.stringify(x.result)) : "—"],
          ["Why", x.reason ? h("span", { class: "reason" }, (x.status === "skipped" ? "skipped: " : "waits for ") + x.reason) : "—"],
          ["Last error", x.last_error ? h("span", { class: "err" }, x.last_error) : "—"],
        ])),
        h("div", { class: "panel" }, h("h2", {}, "Timeline"), timeline(st, x)),
        logsPanel(x));
    });
  }

  function timeline(st, x) {
    const items = [];
    items.push({ at: x.created_at, kind: "created", node: h("span", {}, "created") });
    for (const a of x.attempt_history) {
      items.push({
        at: a.started_at, kind: a.outcome, node: h("div", {},
          h("div", {}, h("strong", {}, "Attempt " + a.attempt), " ", badge(a.outcome), " ",
            h("span", { class: "muted" }, ms(a.duration_ms) + " on " + a.worker_id)),
          a.error_type || a.error_message ? h("div", { class: "err" }, (a.error_type ? a.error_type + ": " : "") + (a.error_message || "")) : null,
          a.traceback ? keep(st, "tb" + a.attempt, h("details", {}, h("summary", {}, "traceback"), h("pre", { class: "raw" }, a.traceback))) : null),
      });
    }
    for (const c of (x.timeline || []).filter((e) => e.kind !== "step")) {
      const what = c.waits_for ? (c.waits_for.child ? "child " + short(c.waits_for.child)
        : c.waits_for.source + " · " + c.waits_for.type + " " + JSON.stringify(c.waits_for.match)) : "";
      items.push({
        at: c.at, kind: "call " + c.status, node: h("div", {},
          h("div", {}, h("strong", {}, c.kind[0].toUpperCase() + c.kind.slice(1) + " "), h("code", {}, c.name), " ", badge(c.status),
            c.until ? h("span", { class: "muted" }, (c.status === "waiting" ? " until " : " deadline ") + exact(c.until)) : null,
            what ? h("span", { class: "muted" }, " — " + what) : null,
            c.child_id ? h("a", { href: "#/executions/" + c.child_id }, " child") : null),
          c.result !== null && c.result !== undefined ? keep(st, "call:" + c.name, h("details", {}, h("summary", {}, "result"), h("pre", { class: "json" }, JSON.stringify(c.result, null, 2)))) : null),
      });
    }
    for (const step of x.steps) {
      items.push({
        at: step.created_at, kind: "step", node: h("div", {},
          h("div", {}, h("strong", {}, "Step "), h("code", {}, step.name), h("span", { class: "muted" }, " done in attempt " + step.attempt)),
          keep(st, "step:" + step.name, h("details", {}, h("summary", {}, "result"), h("pre", { class: "json" }, JSON.stringify(step.result, null, 2))))),
      });
    }
    if (x.status === "pending" && x.attempts > 0) {
      items.push({ at: x.run_after, kind: "pending", node: h("span", {}, "next attempt scheduled") });
    }
    items.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    return h("ol", { class: "timeline" }, items.map((it) => h("li", { class: "tl " + it.kind },
      h("span", { class: "tl-time" }, exact(it.at)), it.node)));
  }

  // --- dead letters ---------------------------------------------------------------------

  function deadLetters(params) {
    return page("dead", { params, items: [], next: null, extra: [], selected: new Set(), confirm: null }, async (st) => {
      const [data, names] = await Promise.all([
        api("/dead-letters" + query(Object.assign({ limit: 100 }, apiParams(st.params)))), st.names || sourceNames(),
      ]);
      st.names = names;
      st.items = data.items;
      st.next = data.next_cursor;
      st.extra = [];
      const present = new Set(st.items.map((x) => x.id));
      for (const id of [...st.selected]) if (!present.has(id)) st.selected.delete(id);
    }, (st) => {
      const rows = st.items.concat(st.extra);
      const redraw = () => view.replaceChildren(current.draw(st));
      const all = h("input", {
        type: "checkbox", "aria-label": "select all",
        checked: rows.length > 0 && rows.every((x) => st.selected.has(x.id)),
        onchange: (e) => { for (const x of rows) e.target.checked ? st.selected.add(x.id) : st.selected.delete(x.id); redraw(); },
      });
      const range = apiParams(st.params); // computed once per drawing: the count asked about is what is acted on
      const filter = {
        source: st.params.source || null, handler: st.params.handler || null, error: st.params.error || null,
        since: range.since || null, until: range.until || null,
      };
      async function purge(body, label) {
        try {
          const r = await api("/dead-letters/purge", { method: "POST", body });
          st.selected.clear();
          st.ask = null;
          toast(`Purged ${r.changed} ${label}.`, "ok");
          refresh(true);
        } catch (err) { toast(err.message, "bad"); }
      }
      async function replay(body, label) {
        try {
          const r = await api("/dead-letters/replay", { method: "POST", body });
          st.selected.clear();
          st.confirm = null;
          toast(`Replayed ${r.replayed} ${label}.`, "ok");
          refresh(true);
        } catch (err) { toast(err.message, "bad"); }
      }
      const bar = h("div", { class: "panel actions" },
        h("button", { type: "button", class: "primary", disabled: !st.selected.size,
          onclick: () => replay({ ids: [...st.selected] }, "selected execution(s)") },
        "Replay selected (" + st.selected.size + ")"),
        h("button", { type: "button", onclick: async () => {
          try {
            const dry = await api("/dead-letters/replay", { method: "POST", body: Object.assign({ dry_run: true }, filter) });
            st.confirm = dry.matched;
            redraw();
          } catch (err) { toast(err.message, "bad"); }
        } }, "Replay all matching…"),
        st.confirm !== null ? h("span", { class: "confirm" },
          `Replay ${st.confirm} dead execution(s)? `,
          h("button", { type: "button", class: "primary", disabled: !st.confirm, onclick: () => replay(Object.assign({ dry_run: false }, filter), "execution(s)") }, "Yes, replay"),
          h("button", { type: "button", class: "ghost", onclick: () => { st.confirm = null; redraw(); } }, "Cancel")) : null,
        h("button", { type: "button", class: "ghost", disabled: !st.selected.size, onclick: () => {
          const ids = [...st.selected];
          st.ask = { text: `Delete ${ids.length} dead execution(s) with their history? This cannot be undone.`, yes: "Yes, purge",
            run: () => purge({ ids }, "execution(s)") };
          redraw();
        } }, "Purge selected…"),
        h("button", { type: "button", class: "ghost", onclick: async () => {
          try {
            const dry = await api("/dead-letters/purge", { method: "POST", body: Object.assign({ dry_run: true }, filter) });
            st.ask = { text: `Delete all ${dry.matched} matching dead execution(s) with their history? This cannot be undone.`, yes: "Yes, purge all",
              run: () => purge(Object.assign({ dry_run: false }, filter), "execution(s)") };
            redraw();
          } catch (err) { toast(err.message, "bad"); }
        } }, "Purge all matching…"),
        askBox(st, redraw));
      return h("section", {},
        h("div", { class: "head" }, h("h1", {}, "Dead letters"),
          h("span", { class: "muted" }, "Executions that ran out of attempts. Replaying gives them a fresh budget; their history stays.")),
        filterBar([
          { name: "source", label: "Source", options: st.names.sources },
          { name: "handler", label: "Handler", options: st.names.handlers },
          { name: "error", label: "Error contains" },
          { range: true },
        ], st.params, (values) => navigate("dead", values)),
        bar,
        h("div", { class: "panel" }, rows.length ? table(rows, [
          [all, (x) => h("input", { type: "checkbox", "aria-label": "select " + x.id, checked: st.selected.has(x.id),
            onchange: (e) => { e.target.checked ? st.selected.add(x.id) : st.selected.delete(x.id); redraw(); } })],
          ["Died", (x) => when(x.updated_at)],
          ["Handler", (x) => h("a", { href: "#/executions/" + x.id }, x.handler)],
          ["Attempts", (x) => String(x.attempts)],
          ["Duration", (x) => h("span", { class: "num" }, duration(x.duration_ms))],
          ["Last error", (x) => h("span", { class: "err", title: x.last_error || "" }, clip(x.last_error, 100))],
          ["Event", (x) => (x.event_id ? h("a", { href: "#/events/" + x.event_id, class: "mono" }, short(x.event_id)) : "—")],
        ]) : h("p", { class: "empty" }, "No dead letters. Nothing needs replaying."),
        st.next ? h("p", { class: "muted" }, "Showing the 100 most recent; narrow the filters or use “Replay all matching”.") : null));
    });
  }

  // --- search ---------------------------------------------------------------------------

  function searchView(q) {
    return page("search", { q }, async (st) => {
      if (!q) { st.events = null; return; }
      const [events, runs] = await Promise.all([
        api("/events" + query({ q, limit: 50 })), api("/executions" + query({ q, limit: 50 })),
      ]);
      st.events = events;
      st.runs = runs;
    }, (st) => {
      if (!st.events) return h("section", {}, h("div", { class: "head" }, h("h1", {}, "Search")),
        h("p", { class: "empty" }, "Type an event id, execution id, idempotency key, correlation id or payload text in the search box."));
      return h("section", {},
        h("div", { class: "head" }, h("h1", {}, "Search"), h("span", { class: "muted" }, "“" + q + "”")),
        h("div", { class: "panel" }, h("h2", {}, "Events (" + st.events.items.length + (st.events.next_cursor ? "+" : "") + ")"),
          st.events.payload_searched_since ? h("p", { class: "note" }, "Payload text searched since " + utc(st.events.payload_searched_since) + " only (bounded scan).") : null,
          table(st.events.items, [
            ["Received", (e) => when(e.received_at)],
            ["Source", (e) => e.source],
            ["Type", (e) => h("a", { href: "#/events/" + e.id }, e.type || "(none)")],
            ["Status", (e) => badge(e.status)],
            ["Idempotency key", (e) => h("code", {}, clip(e.idempotency_key, 40))],
          ], "No event matches.")),
        h("div", { class: "panel" }, h("h2", {}, "Executions (" + st.runs.items.length + (st.runs.next_cursor ? "+" : "") + ")"),
          executionTable(st.runs.items, "No execution matches.")));
    });
  }

  // --- schedules ------------------------------------------------------------------------

  function scheduleActions(x) {
    const path = "/schedules/" + encodeURIComponent(x.name);
    async function act(suffix, message) {
      try {
        const r = await api(path + suffix, { method: "POST", body: {} });
        toast(typeof message === "function" ? message(r) : message, "ok");
        refresh(true);
      } catch (err) { toast(err.message, "bad"); }
    }
    return h("span", { class: "row-actions" },
      h("button", { type: "button", onclick: () => act("/trigger", (r) => `Started ${x.name}: execution ${short(r.execution_id)}.`) }, "Run now"),
      x.paused
        ? h("button", { type: "button", onclick: () => act("/resume", `Resumed ${x.name}.`) }, "Resume")
        : h("button", { type: "button", class: "ghost", onclick: () => act("/pause", `Paused ${x.name}.`) }, "Pause"));
  }

  function lastResult(x) {
    if (!x.last_result) return h("span", { class: "muted" }, "never fired");
    const b = badge(x.last_result);
    return x.last_execution_id ? h("a", { href: "#/executions/" + x.last_execution_id }, b) : b;
  }

  function schedulesView() {
    return page("schedules", {}, async (st) => {
      st.schedules = await api("/schedules");
    }, (st) => h("section", {},
      h("div", { class: "head" }, h("h1", {}, "Schedules"),
        h("span", { class: "muted" }, "@app.cron jobs; each fire runs once across every scheduler.")),
      h("div", { class: "panel" }, table(st.schedules, [
        ["Name", (x) => h("a", { href: "#/schedules/" + encodeURIComponent(x.name) }, x.name)],
        ["When", (x) => [h("code", {}, x.expression), h("span", { class: "muted" }, " " + x.timezone)]],
        ["Next fire", (x) => (x.paused ? badge("paused") : when(x.next_fire))],
        ["Last fire", (x) => (x.last_fire_at ? when(x.last_fire_at) : "—")],
        ["Result", lastResult],
        ["Failures in a row", (x) => (x.failures ? h("span", { class: "err" }, String(x.failures)) : "0")],
        ["", scheduleActions],
      ], "This app declares no schedules (@app.cron)."))));
  }

  function scheduleDetail(name) {
    return page("schedule", { name }, async (st) => {
      st.x = await api("/schedules/" + encodeURIComponent(name));
    }, (st) => {
      const x = st.x;
      return h("section", {},
        h("div", { class: "head" }, h("h1", {}, x.name), x.paused ? badge("paused") : null, scheduleActions(x)),
        h("div", { class: "panel" }, facts([
          ["Expression", h("code", {}, x.expression)], ["Time zone", x.timezone],
          ["Next fire", x.paused ? "paused" : exact(x.next_fire)],
          ["Overlap", x.overlap], ["Catch-up", x.catchup],
          ["Failures in a row", String(x.failures)], ["Queued fires", String(x.queued)],
        ])),
        h("div", { class: "panel" }, h("h2", {}, "History"), table(x.fires, [
          ["Fire time", (f) => exact(f.fire_at)],
          ["Kind", (f) => f.kind],
          ["Fire", (f) => f.status + (f.missed_count ? " (" + f.missed_count + ")" : "")],
          ["Execution", (f) => (f.execution_id ? h("a", { href: "#/executions/" + f.execution_id }, badge(f.execution_status || "purged")) : "—")],
          ["Attempts", (f) => (f.attempts === null ? "—" : String(f.attempts))],
          ["Error", (f) => h("span", { class: "err", title: f.last_error || "" }, clip(f.last_error, 90))],
        ], "No fires yet.")));
    });
  }

  // --- sources --------------------------------------------------------------------------

  function sourcesView() {
    return page("sources", {}, async (st) => {
      st.sources = await api("/sources");
    }, (st) => h("section", {},
      h("div", { class: "head" }, h("h1", {}, "Sources")),
      h("div", { class: "panel" }, table(st.sources, [
        ["Name", (x) => h("a", { href: "#/events?source=" + encodeURIComponent(x.name) }, x.name)],
        ["Provider", (x) => x.kind || h("span", { class: "muted" }, "no longer declared")],
        ["Verified", (x) => (x.verify === null ? "—" : x.verify ? "yes" : h("span", { class: "err" }, "NO"))],
        ["Handlers", (x) => x.handlers.join(", ") || "—"],
        ["Accepted", (x) => num(x.events.accepted)],
        ["Rejected", (x) => (x.events.rejected ? h("a", { href: "#/events?status=rejected&source=" + encodeURIComponent(x.name) }, num(x.events.rejected)) : "0")],
        ["Pending", (x) => num(x.executions.pending + x.executions.running)],
        ["Dead", (x) => (x.executions.dead ? h("a", { href: "#/dead?source=" + encodeURIComponent(x.name) }, num(x.executions.dead)) : "0")],
        ["Last delivery", (x) => when(x.last_received_at) || "never"],
      ], "No sources declared."))));
  }

  // --- start ----------------------------------------------------------------------------

  document.getElementById("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = document.getElementById("search").value.trim();
    navigate("search", q ? { q } : {});
  });

  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/dashboard/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken || "" } });
    window.location.assign("/dashboard/login");
  });

  async function start() {
    const session = await api("/session");
    csrfToken = session.csrf_token;
    window.addEventListener("hashchange", route);
    await route();
    setInterval(() => { if (document.visibilityState === "visible") refresh(false); }, REFRESH_MS);
  }

  start().catch((err) => view.replaceChildren(h("p", { class: "error" }, "Could not start: " + err.message)));
})();

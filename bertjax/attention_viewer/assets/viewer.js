/* bertjax attention viewer: the browser side of bertjax.attention_viewer (page.py inlines this file).
 *
 * Reads the "bertjax-attention-view/1" JSON of <script id="bertjax-view-data">, decodes its gzip+base64 arrays once
 * (DecompressionStream), and draws five views on canvases: head view, model view (+ a detail heatmap), [CLS] summary,
 * masked-LM guesses and neuron view. No libraries, no network; works from file:// in Chromium and Firefox.
 *
 * window.bertjaxView (set once everything is decoded; document.body.dataset.ready === "1" after the first render):
 *   state                                      {example, layer, heads, position, pair, detail, neuronHead} (read it;
 *                                              change it through the functions below)
 *   timings                                    {decode_ms, thumbnails_ms, first_render_ms}
 *   attention(example, layer, head)            Float32Array(T*T): the dequantised probabilities (byte / 255), row-major
 *                                              [query][key]
 *   neurons(example, which, layer, token, head) Float32Array(D): the dequantised "query" or "key" vector
 *   pick(position)                             picks a token (the MLM and neuron views follow it)
 *   selectHead(layer, head)                    what clicking a model-view thumbnail does
 *   setLayer(layer), setHeads([h, ...]), setExample(i), setNeuronHead(h), setPair(k)
 *   setGuesses(position, guesses[, example])   replaces the MLM guesses ([[token, prob], ...], or null) of a position
 * The page also answers window.postMessage({bertjaxView: "<one of the setters>", args: [...]}) (for notebooks).
 *
 * The data (format "bertjax-attention-view/1"; L layers, N heads, D head size, T real tokens of an example):
 *   {format, model: {source, num_layers: L, num_heads: N, head_dim: D},
 *    attention_error,                           max abs error of the dequantised probabilities (1/510)
 *    examples: [{
 *      name,                                    its label in the example selector (shown with > 1 example)
 *      tokens: [T], segment_ids: [T],
 *      pair_ids: [T] | null,                    a packed row: each token's pair; a pair attends only within its block
 *      attention: {shape: [L, N, T, T], dtype: "uint8", encoding: "gzip+base64", data},   prob = byte / 255
 *      cls: [{position, parts: {cls, sep, segment_a, segment_b: [L]}, entropy: [L], entropy_per_head: [L][N],
 *             uniform_entropy}],                one per pair: where that pair's [CLS] attends (mean over heads)
 *      mlm: {top_k, guesses: {"<position>": [[token, prob], ...]}, note?},   absent positions: no guesses stored;
 *                                              note: why the checkpoint has none (shown instead)
 *      neurons: {shape: [L, T, N, D],
 *                query: {dtype: "int8", encoding, data, scale: {dtype: "float32", shape: [L, T, N], encoding, data}},
 *                key: {the same}}}]}         value = int8 * scale
 *   mlm_live (optional, top level): true in a live notebook view; a pick without stored guesses posts
 *      {bertjaxPicked: {example, position}} to the parent window, which answers with setGuesses
 *   "gzip+base64": the array's C-order little-endian bytes, gzip-compressed, base64-encoded
 *   (bertjax/attention_viewer/encoding.py writes them).
 */
(() => {
  "use strict";

  const FORMAT = "bertjax-attention-view/1";
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363",
  ];
  const headColour = (h) => PALETTE[h % PALETTE.length];
  const PARTS = ["cls", "sep", "segment_a", "segment_b"];
  const PART_LABELS = { cls: "[CLS]", sep: "[SEP]", segment_a: "segment A", segment_b: "segment B" };
  const PART_COLOURS = { cls: "#4e79a7", sep: "#f28e2b", segment_a: "#59a14f", segment_b: "#b07aa1" };
  const MANY_TOKENS = 64;                        // above this: thresholded lines, no labels on the detail map
  const MIN_LINE_BYTE = Math.ceil(0.02 * 255);   // 6: byte / 255 >= 0.02
  const THUMB = 56;                              // model-view thumbnails: at most THUMB x THUMB cells
  const FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  const FONT = `12px ${FONT_FAMILY}`;
  const BOLD = `600 12px ${FONT_FAMILY}`;
  const SMALL = `11px ${FONT_FAMILY}`;
  const TEXT = "#212529", MUTED = "#868e96", SEG_B = "#7048e8", PICKED_BG = "#fff3bf", HOVER_BG = "#e9ecef";

  // ---- colour scales ------------------------------------------------------------------------------------------
  function interpolate(stops, t) {
    let k = 1;
    while (k < stops.length - 1 && stops[k][0] < t) k++;
    const [t0, ...c0] = stops[k - 1], [t1, ...c1] = stops[k];
    const f = t1 > t0 ? Math.min(1, Math.max(0, (t - t0) / (t1 - t0))) : 0;
    return c0.map((c, i) => Math.round(c + (c1[i] - c) * f));
  }
  // Sequential (white -> dark blue) on sqrt(probability), so that the small probabilities of long inputs show.
  const SEQ_STOPS = [[0, 255, 255, 255], [0.3, 198, 219, 239], [0.6, 107, 174, 214], [0.85, 33, 113, 181],
    [1, 8, 48, 107]];
  const SEQ_RGB = new Uint8Array(256 * 3);
  const SEQ_CSS = [];
  for (let b = 0; b < 256; b++) {
    const rgb = interpolate(SEQ_STOPS, Math.sqrt(b / 255));
    SEQ_RGB.set(rgb, 3 * b);
    SEQ_CSS.push(`rgb(${rgb[0]},${rgb[1]},${rgb[2]})`);
  }
  // Diverging (blue - white - red) on [-1, 1], 201 steps.
  const DIV_CSS = [];
  for (let k = 0; k <= 200; k++) {
    const t = k / 100 - 1;
    const rgb = t < 0 ? interpolate([[0, 255, 255, 255], [1, 33, 102, 172]], -t)
      : interpolate([[0, 255, 255, 255], [1, 178, 24, 43]], t);
    DIV_CSS.push(`rgb(${rgb[0]},${rgb[1]},${rgb[2]})`);
  }
  const divColour = (v, max) => DIV_CSS[max > 0 ? Math.round((Math.max(-1, Math.min(1, v / max)) + 1) * 100) : 100];

  // ---- small helpers ------------------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k === "style") e.style.cssText = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }
  const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
  const fmt = (x, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : "–");
  const quoted = (tok) => `“${tok}”`;

  /** Sizes a canvas to w x h CSS px at the device pixel ratio (reduced for huge canvases); returns its context. */
  function sizeCanvas(canvas, w, h) {
    w = Math.max(1, Math.ceil(w));
    h = Math.max(1, Math.ceil(h));
    const dpr = Math.max(0.25, Math.min(window.devicePixelRatio || 1, 32000 / Math.max(w, h),
      Math.sqrt(1.2e8 / (w * h))));
    const pw = Math.max(1, Math.round(w * dpr)), ph = Math.max(1, Math.round(h * dpr));
    if (canvas.width !== pw) canvas.width = pw;
    if (canvas.height !== ph) canvas.height = ph;
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(canvas.width / w, 0, 0, canvas.height / h, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return ctx;
  }

  const measureCtx = document.createElement("canvas").getContext("2d");
  function textWidth(text, font = FONT) {
    measureCtx.font = font;
    return measureCtx.measureText(text).width;
  }
  /** `text` cut with an ellipsis to fit maxW px in ctx's font. */
  function fit(ctx, text, maxW) {
    if (ctx.measureText(text).width <= maxW) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(text.slice(0, mid) + "…").width <= maxW) lo = mid; else hi = mid - 1;
    }
    return text.slice(0, lo) + "…";
  }
  /** The inner width of one column of the views' grid (the head view never spans two). */
  function columnWidth() {
    return (ui.head && ui.head.body.clientWidth) || 532;
  }
  function mousePos(event, canvas) {
    const r = canvas.getBoundingClientRect();
    return [event.clientX - r.left, event.clientY - r.top];
  }

  // ---- decoding -----------------------------------------------------------------------------------------------
  function base64Bytes(text) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const TYPES = { uint8: Uint8Array, int8: Int8Array, float32: Float32Array };
  /** An array entry {dtype, encoding: "gzip+base64", data} as a typed array of `length` values. */
  async function decodeArray(entry, length, what) {
    if (!entry || entry.encoding !== "gzip+base64") {
      throw new Error(`${what}: unknown encoding ${entry && entry.encoding}`);
    }
    const Type = TYPES[entry.dtype];
    if (!Type) throw new Error(`${what}: unknown dtype ${entry.dtype}`);
    if (typeof DecompressionStream !== "function") {
      throw new Error("this browser has no DecompressionStream (Chromium 80+, Firefox 113+, Safari 16.4+ have it)");
    }
    const stream = new Blob([base64Bytes(entry.data)]).stream().pipeThrough(new DecompressionStream("gzip"));
    const buffer = await new Response(stream).arrayBuffer();
    if (buffer.byteLength !== length * Type.BYTES_PER_ELEMENT) {
      throw new Error(`${what}: ${buffer.byteLength} bytes, expected ${length * Type.BYTES_PER_ELEMENT}`);
    }
    return new Type(buffer);
  }
  function checkShape(shape, expected, what) {
    if (!Array.isArray(shape) || shape.length !== expected.length || shape.some((s, i) => s !== expected[i])) {
      throw new Error(`${what}: shape ${JSON.stringify(shape)}, expected ${JSON.stringify(expected)}`);
    }
  }

  async function decodeExample(raw, index) {
    const T = raw.tokens.length;
    checkShape(raw.attention.shape, [L, N, T, T], `example ${index} attention`);
    const ex = {
      index, raw, T, name: raw.name || `example ${index}`, tokens: raw.tokens.map(String),
      segments: raw.segment_ids || new Array(T).fill(0), pairs: raw.pair_ids || null,
      cls: raw.cls || [], topK: raw.mlm ? raw.mlm.top_k : 0, guesses: new Map(), thumbs: null,
      mlmNote: (raw.mlm && raw.mlm.note) || "",
    };
    for (const [pos, g] of Object.entries((raw.mlm && raw.mlm.guesses) || {})) ex.guesses.set(Number(pos), g);
    const jobs = [decodeArray(raw.attention, L * N * T * T, `example ${index} attention`)];
    const nv = raw.neurons;
    if (nv) {
      checkShape(nv.shape, [L, T, N, D], `example ${index} neurons`);
      for (const which of ["query", "key"]) {
        jobs.push(decodeArray(nv[which], L * T * N * D, `example ${index} ${which}`));
        jobs.push(decodeArray(nv[which].scale, L * T * N, `example ${index} ${which} scale`));
      }
    }
    [ex.att, ex.q, ex.qs, ex.k, ex.ks] = await Promise.all(jobs);
    // The keys each query may attend to: its own pair's block in a packed row, else all tokens.
    ex.blockOf = new Int32Array(T);
    const blocks = new Map();
    for (let i = 0; i < T; i++) {
      const p = ex.pairs ? ex.pairs[i] : 0;
      if (!blocks.has(p)) blocks.set(p, []);
      blocks.get(p).push(i);
      ex.blockOf[i] = p;
    }
    ex.blocks = blocks;
    ex.tokenWidth = Math.min(140, Math.max(20, ...ex.tokens.map((t) => textWidth(t, BOLD))));
    return ex;
  }

  function dequantised(ex, which, layer, token, head) {
    const [v, s] = which === "query" ? [ex.q, ex.qs] : [ex.k, ex.ks];
    const out = new Float32Array(D);
    if (!v) return out;
    const scale = s[(layer * ex.T + token) * N + head], base = ((layer * ex.T + token) * N + head) * D;
    for (let d = 0; d < D; d++) out[d] = v[base + d] * scale;
    return out;
  }

  /** Block-max downsampling of every (layer, head) map to at most THUMB x THUMB: O(L N T^2), once per example. */
  function thumbnails(ex) {
    if (ex.thumbs) return ex.thumbs;
    const t0 = performance.now();
    const T = ex.T, S = Math.min(T, THUMB), att = ex.att;
    const bin = new Int32Array(T);
    for (let i = 0; i < T; i++) bin[i] = Math.floor((i * S) / T);
    const out = new Uint8Array(L * N * S * S);
    for (let m = 0; m < L * N; m++) {
      const base = m * T * T, outBase = m * S * S;
      for (let i = 0; i < T; i++) {
        const row = base + i * T, outRow = outBase + bin[i] * S;
        for (let j = 0; j < T; j++) {
          const v = att[row + j], o = outRow + bin[j];
          if (v > out[o]) out[o] = v;
        }
      }
    }
    ex.thumbs = { S, data: out };
    timings.thumbnails_ms = performance.now() - t0;
    return ex.thumbs;
  }

  /** A canvas of size x size pixels showing `bytes` (size*size probability bytes from `offset`) on SEQ. */
  function heatmapImage(bytes, offset, size, canvas = document.createElement("canvas")) {
    canvas.width = size;
    canvas.height = size;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(size, size), px = img.data;
    for (let p = 0, n = size * size; p < n; p++) {
      const c = 3 * bytes[offset + p];
      px[4 * p] = SEQ_RGB[c];
      px[4 * p + 1] = SEQ_RGB[c + 1];
      px[4 * p + 2] = SEQ_RGB[c + 2];
      px[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return canvas;
  }

  // ---- state --------------------------------------------------------------------------------------------------
  let DATA, L, N, D, LIVE = false;   // LIVE: data.mlm_live, a notebook view whose kernel answers token picks
  let examples = [];
  const state = { example: 0, layer: 0, heads: [], position: 0, pair: 0, detail: null, neuronHead: 0 };
  const ui = {};
  const timings = {};  // decode_ms, thumbnails_ms (last computed), first_render_ms: bertjaxView.timings
  const cur = () => examples[state.example];
  const root = document.getElementById("bertjax-view");

  function defaultPosition(ex) {
    for (let i = 0; i < ex.T; i++) if (ex.guesses.has(i)) return i;
    return Math.min(1, ex.T - 1);
  }
  /** All heads; for long inputs (T > 64) only the first: the lines of 16 heads over 512 tokens are a hairball. */
  function defaultHeads(ex) {
    return ex.T <= MANY_TOKENS ? [...Array(N).keys()] : [0];
  }
  function pairOf(ex, position) {
    if (!ex.pairs || !ex.cls.length) return 0;
    const p = ex.pairs[position];
    const k = ex.cls.findIndex((c) => ex.pairs[c.position] === p);
    return k >= 0 ? k : clamp(p, 0, ex.cls.length - 1);
  }

  // ---- page skeleton ------------------------------------------------------------------------------------------
  function makeSection(id, title, help) {
    const caption = el("p", { class: "bjv-caption" });
    const body = el("div", { class: "bjv-body" }, el("p", { class: "bjv-loading", text: "decoding…" }));
    const section = el("section", { id, class: "bjv-view", "data-rendered": "0", "aria-label": title },
      el("h2", { text: title }), help ? el("p", { class: "bjv-help", text: help }) : null, caption, body);
    return { section, caption, body };
  }

  function buildSkeleton() {
    root.textContent = "";
    ui.info = el("p", { class: "bjv-info" });
    ui.exampleSelect = el("select", { id: "example-select", onchange: (e) => setExample(Number(e.target.value)) });
    ui.exampleLabel = el("label", { class: "bjv-control" }, "example ", ui.exampleSelect);
    ui.layerSelect = el("select", { id: "layer-select", onchange: (e) => setLayer(Number(e.target.value)) });
    for (let l = 0; l < L; l++) ui.layerSelect.append(el("option", { value: l, text: `layer ${l}` }));
    ui.tokenStrip = el("div", {
      id: "token-strip", class: "bjv-token-strip", tabindex: "0", "aria-label": "tokens: click one to pick it",
      onclick: (e) => {
        const t = e.target.closest(".bjv-tok");
        if (t) pick(Number(t.dataset.position));
      },
      onkeydown: (e) => {
        const step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
        if (step && cur()) {
          e.preventDefault();
          pick(clamp(state.position + step, 0, cur().T - 1));
        }
      },
    });
    const controls = el("div", { class: "bjv-controls" }, ui.exampleLabel,
      el("label", { class: "bjv-control" }, "layer ", ui.layerSelect),
      el("span", { class: "bjv-control-help", text: "pick a token below (or use ← →)" }));

    ui.head = makeSection("head-view", "Head view",
      "Queries (left) attend to keys (right); a line's opacity is the attention probability, one colour per head. " +
      "Hover a token to see only its lines; click a query to pick it. Click a head's square to toggle it, " +
      "double-click to show only that head.");
    ui.model = makeSection("model-view", "Model view",
      "Every layer (rows) and head (columns) of the picked example; click a map to open it and to show only that " +
      "head in the head view.");
    ui.cls = makeSection("cls-view", "[CLS] summary",
      "Where [CLS] (the input of the pooler and of next-sentence prediction) attends in each layer, and how " +
      "spread out that attention is.");
    ui.mlm = makeSection("mlm-view", "Masked-LM guesses", null);
    ui.neuron = makeSection("neuron-view", "Neuron view",
      "Why a head attends where it does: the picked token's query q against each key k; score = q·k/√D, and its " +
      "softmax over the keys next to the stored attention probability.");

    const grid = el("div", { class: "bjv-grid" }, ui.head.section, ui.model.section, ui.cls.section,
      ui.mlm.section, ui.neuron.section);
    root.append(ui.info, controls, ui.tokenStrip, grid);
    buildHeadView();
    buildModelView();
    buildClsView();
    buildNeuronView();
  }

  function renderInfo() {
    const m = DATA.model, ex = cur();
    const err = Number(DATA.attention_error);
    ui.info.textContent = `${m.source || "model"} · ${L} layers × ${N} heads × ${D} dims per head · ` +
      `${ex.T} tokens${ex.pairs ? ` in ${ex.blocks.size} packed pairs` : ""} · attention probabilities stored to ` +
      `±${Number.isFinite(err) ? err.toPrecision(2) : "1/510"}`;
  }

  // ---- controls & token strip ---------------------------------------------------------------------------------
  function renderControls() {
    ui.exampleSelect.textContent = "";
    examples.forEach((ex, i) => ui.exampleSelect.append(el("option", { value: i, text: ex.name })));
    ui.exampleSelect.value = String(state.example);
    ui.exampleLabel.hidden = examples.length <= 1;
    ui.exampleSelect.hidden = examples.length <= 1;
    ui.layerSelect.value = String(state.layer);
  }

  function renderTokenStrip() {
    const ex = cur(), strip = ui.tokenStrip;
    if (strip.dataset.example !== String(state.example)) {
      strip.textContent = "";
      const frag = document.createDocumentFragment();
      ui.tokenSpans = [];
      for (let i = 0; i < ex.T; i++) {
        if (ex.pairs && i > 0 && ex.pairs[i] !== ex.pairs[i - 1]) {
          frag.append(el("span", { class: "bjv-pair-sep", "aria-hidden": "true", title: `pair ${ex.pairs[i]}` }));
        }
        const segB = Number(ex.segments[i]) !== 0;
        const span = el("span", {
          class: `bjv-tok${segB ? " seg-b" : ""}`, "data-position": i, text: ex.tokens[i],
          title: `position ${i} · segment ${segB ? "B" : "A"}${ex.pairs ? ` · pair ${ex.pairs[i]}` : ""}`,
        });
        ui.tokenSpans.push(span);
        frag.append(span);
      }
      strip.append(frag);
      strip.dataset.example = String(state.example);
    }
    ui.tokenSpans.forEach((span, i) => {
      span.classList.toggle("picked", i === state.position);
      span.classList.toggle("has-guesses", ex.guesses.has(i));
    });
    strip.dataset.position = String(state.position);
  }

  // ---- head view ----------------------------------------------------------------------------------------------
  function buildHeadView() {
    const hv = ui.head;
    hv.toggles = el("div", { class: "bjv-head-toggles", role: "group", "aria-label": "heads" });
    for (let h = 0; h < N; h++) {
      hv.toggles.append(el("button", {
        type: "button", class: "bjv-head-toggle", "data-head": h, text: h, style: `--head-colour: ${headColour(h)}`,
        title: `head ${h}: click to toggle, double-click to show only this head`,
        onclick: () => setHeads(state.heads.includes(h) ? state.heads.filter((x) => x !== h)
          : [...state.heads, h].sort((a, b) => a - b)),
        ondblclick: () => setHeads([h]),
      }));
    }
    hv.toggles.append(el("button", {
      type: "button", class: "bjv-head-all", text: "all", title: "show all heads",
      onclick: () => setHeads([...Array(N).keys()]),
    }));
    hv.canvas = el("canvas", { class: "bjv-head-canvas" });
    hv.scroll = el("div", { class: "bjv-scroll" }, hv.canvas);
    hv.hover = null;
    hv.canvas.addEventListener("mousemove", (e) => {
      const lay = hv.layout;
      if (!lay) return;
      const [x, y] = mousePos(e, hv.canvas);
      const i = Math.floor((y - lay.top) / lay.rowH);
      let hover = null;
      if (i >= 0 && i < cur().T) {
        if (x < lay.x0 + 6) hover = { side: "query", i };
        else if (x > lay.x1 - 6) hover = { side: "key", i };
      }
      if (JSON.stringify(hover) !== JSON.stringify(hv.hover)) {
        hv.hover = hover;
        hv.canvas.style.cursor = hover && hover.side === "query" ? "pointer" : "default";
        drawHeadView();
      }
    });
    hv.canvas.addEventListener("mouseleave", () => {
      if (hv.hover) {
        hv.hover = null;
        drawHeadView();
      }
    });
    hv.canvas.addEventListener("click", () => {
      if (hv.hover && hv.hover.side === "query") pick(hv.hover.i);
    });
  }

  function renderHeadView() {
    const hv = ui.head, ex = cur(), T = ex.T, many = T > MANY_TOKENS;
    hv.section.dataset.layer = String(state.layer);
    hv.section.dataset.heads = state.heads.join(",");
    for (const b of hv.toggles.querySelectorAll(".bjv-head-toggle")) {
      const on = state.heads.includes(Number(b.dataset.head));
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));
    }
    const heads = state.heads.length === N ? "all heads"
      : `head${state.heads.length > 1 ? "s" : ""} ${state.heads.join(", ")}`;
    hv.caption.textContent = `layer ${state.layer}, ${state.heads.length ? heads : "no head selected"}` +
      (many ? ` · ${T} tokens: only lines with probability ≥ 0.02 are drawn` : "") +
      (ex.pairs ? " · dashed lines separate the packed pairs (each attends only within its own block)" : "");
    if (hv.body.firstChild !== hv.toggles) {
      hv.body.textContent = "";
      hv.body.append(hv.toggles, hv.scroll);
    }
    hv.scroll.classList.toggle("many", many);
    const rowH = many ? 14 : 20, top = 26, tokW = ex.tokenWidth + 14, gap = many ? 240 : 200;
    hv.layout = { rowH, top, tokW, x0: tokW, x1: tokW + gap, w: 2 * tokW + gap, h: top + T * rowH + 8, many };
    hv.hover = null;
    drawHeadView(true);
    hv.section.dataset.rendered = "1";
  }

  /** Lines of `heads` in `layer` from the query rows [q0, q1) (or the one key `key`, if given) to the keys. */
  function drawLines(ctx, ex, layer, heads, q0, q1, key = -1) {
    const lay = ui.head.layout, T = ex.T, att = ex.att;
    const minByte = lay.many ? MIN_LINE_BYTE : 1;
    const j0 = key >= 0 ? key : 0, j1 = key >= 0 ? key + 1 : T;
    ctx.lineWidth = lay.many ? 1 : 2;
    ctx.lineCap = "butt";
    const y = (i) => lay.top + (i + 0.5) * lay.rowH;
    for (const h of heads) {
      const base = (layer * N + h) * T * T;
      const paths = new Array(64);  // one path per opacity step: a few strokes, however many lines
      for (let i = q0; i < q1; i++) {
        const row = base + i * T, yi = y(i);
        for (let j = j0; j < j1; j++) {
          const b = att[row + j];
          if (b < minByte) continue;
          const p = paths[b >> 2] || (paths[b >> 2] = new Path2D());
          p.moveTo(lay.x0, yi);
          p.lineTo(lay.x1, y(j));
        }
      }
      ctx.strokeStyle = headColour(h);
      paths.forEach((p, k) => {
        if (!p) return;
        ctx.globalAlpha = Math.min(1, ((k << 2) + 2) / 255);
        ctx.stroke(p);
      });
    }
    ctx.globalAlpha = 1;
  }

  /** The full set of lines of (example, layer, heads), drawn once into an offscreen canvas and reused (hover,
   * picking). Long inputs are drawn in slices of ~30 ms (the page stays responsive; the view shows the progress;
   * data-lines on the section is "drawing", then "done"); a newer state abandons an unfinished job. */
  function linesJob() {
    const hv = ui.head, ex = cur(), lay = hv.layout;
    const key = `${state.example}|${state.layer}|${state.heads.join(",")}|${hv.canvas.width}x${hv.canvas.height}`;
    if (hv.lines && hv.lines.key === key) return hv.lines;
    const canvas = document.createElement("canvas");
    canvas.width = hv.canvas.width;
    canvas.height = hv.canvas.height;
    const octx = canvas.getContext("2d", { willReadFrequently: lay.many });  // many: see getImageData below
    octx.setTransform(canvas.width / lay.w, 0, 0, canvas.height / lay.h, 0, 0);
    const job = { key, canvas, head: 0, row: 0, done: false };
    const heads = state.heads.slice(), layer = state.layer, T = ex.T;
    const rowsPerStep = lay.many ? 32 : T;
    const step = (async) => {
      if (hv.lines !== job) return;  // superseded
      const t0 = performance.now();
      while (job.head < heads.length && (!lay.many || performance.now() - t0 < 30)) {
        const r1 = Math.min(T, job.row + rowsPerStep);
        drawLines(octx, ex, layer, [heads[job.head]], job.row, r1);
        if (lay.many) octx.getImageData(0, 0, 1, 1);  // rasterise now (canvas drawing is deferred): honest slices
        job.row = r1;
        if (job.row >= T) {
          job.head++;
          job.row = 0;
        }
      }
      job.done = job.head >= heads.length;
      hv.section.dataset.lines = job.done ? "done" : "drawing";
      if (async && !hv.hover) drawHeadView();
      if (!job.done) setTimeout(() => step(true), 0);
    };
    hv.lines = job;
    step(false);
    return job;
  }

  function drawHeadView(resize = false) {
    const hv = ui.head, ex = cur(), lay = hv.layout, T = ex.T;
    if (resize || !hv.ctx) hv.ctx = sizeCanvas(hv.canvas, lay.w, lay.h);
    const ctx = hv.ctx;
    ctx.clearRect(0, 0, lay.w, lay.h);
    const hover = hv.hover;
    // token backgrounds
    for (let i = 0; i < T; i++) {
      const yTop = lay.top + i * lay.rowH;
      if (i === state.position) {
        ctx.fillStyle = PICKED_BG;
        ctx.fillRect(0, yTop, lay.x0 - 2, lay.rowH);
        ctx.fillRect(lay.x1 + 2, yTop, lay.tokW - 2, lay.rowH);
      }
      if (hover && hover.i === i) {
        ctx.fillStyle = HOVER_BG;
        if (hover.side === "query") ctx.fillRect(0, yTop, lay.x0 - 2, lay.rowH);
        else ctx.fillRect(lay.x1 + 2, yTop, lay.tokW - 2, lay.rowH);
      }
    }
    // lines: the full set is drawn once per (example, layer, heads) into an offscreen canvas and reused
    if (hover) {
      if (hover.side === "query") drawLines(ctx, ex, state.layer, state.heads, hover.i, hover.i + 1);
      else drawLines(ctx, ex, state.layer, state.heads, 0, T, hover.i);
    } else {
      const job = linesJob();
      ctx.drawImage(job.canvas, 0, 0, lay.w, lay.h);
      if (!job.done) {
        ctx.font = SMALL;
        ctx.fillStyle = MUTED;
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(`drawing… (head ${state.heads[job.head]})`, (lay.x0 + lay.x1) / 2, 12);
      }
    }
    // column titles, tokens, pair separators
    ctx.font = SMALL;
    ctx.fillStyle = MUTED;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillText("query", lay.x0 - 6, 12);
    ctx.textAlign = "left";
    ctx.fillText("key", lay.x1 + 6, 12);
    ctx.font = FONT;
    for (let i = 0; i < T; i++) {
      const yc = lay.top + (i + 0.5) * lay.rowH;
      const strong = i === state.position || (hover && hover.i === i);
      ctx.font = strong ? BOLD : FONT;
      ctx.fillStyle = Number(ex.segments[i]) !== 0 ? SEG_B : TEXT;
      const tok = fit(ctx, ex.tokens[i], lay.tokW - 12);
      ctx.textAlign = "right";
      ctx.fillText(tok, lay.x0 - 6, yc);
      ctx.textAlign = "left";
      ctx.fillText(tok, lay.x1 + 6, yc);
      if (ex.pairs && i > 0 && ex.pairs[i] !== ex.pairs[i - 1]) {
        const ys = lay.top + i * lay.rowH;
        ctx.save();
        ctx.strokeStyle = "#adb5bd";
        ctx.setLineDash([4, 3]);
        ctx.beginPath();
        ctx.moveTo(0, ys);
        ctx.lineTo(lay.x0 - 2, ys);
        ctx.moveTo(lay.x1 + 2, ys);
        ctx.lineTo(lay.w, ys);
        ctx.stroke();
        ctx.restore();
      }
    }
  }

  // ---- model view + detail heatmap ----------------------------------------------------------------------------
  function buildModelView() {
    const mv = ui.model;
    mv.grid = el("div", { class: "bjv-model-grid", style: `grid-template-columns: auto repeat(${N}, ${THUMB}px)` });
    mv.grid.append(el("span"));
    for (let h = 0; h < N; h++) {
      mv.grid.append(el("span", {
        class: "bjv-col-label", text: `h${h}`, title: `head ${h}`, style: `color: ${headColour(h)}`,
      }));
    }
    mv.thumbs = [];
    mv.rowLabels = [];
    for (let l = 0; l < L; l++) {
      const label = el("span", { class: "bjv-row-label", text: `layer ${l}` });
      mv.rowLabels.push(label);
      mv.grid.append(label);
      for (let h = 0; h < N; h++) {
        const c = el("canvas", { class: "bjv-thumb", "data-layer": l, "data-head": h, title: `layer ${l}, head ${h}` });
        mv.thumbs.push(c);
        mv.grid.append(c);
      }
    }
    mv.grid.addEventListener("click", (e) => {
      const c = e.target.closest("canvas[data-layer]");
      if (c) selectHead(Number(c.dataset.layer), Number(c.dataset.head));
    });
    mv.gridScroll = el("div", { class: "bjv-model-scroll" }, mv.grid);
    // detail
    mv.detailTitle = el("strong");
    mv.detailCanvas = el("canvas", { id: "head-detail", class: "bjv-detail-canvas" });
    mv.tooltip = el("div", { id: "head-detail-tooltip", class: "bjv-tooltip", hidden: true, role: "status" });
    mv.detail = el("div", { class: "bjv-detail", hidden: true },
      el("div", { class: "bjv-detail-head" }, mv.detailTitle,
        el("button", { type: "button", class: "bjv-close", text: "close", onclick: () => closeDetail() })),
      el("div", { class: "bjv-detail-wrap" }, mv.detailCanvas, mv.tooltip));
    mv.detailCanvas.addEventListener("mousemove", (e) => {
      const hit = detailHit(e);
      if (!hit) {
        mv.tooltip.hidden = true;
        return;
      }
      const ex = cur(), [i, j] = hit;
      const { layer, head } = state.detail;
      const p = ex.att[((layer * N + head) * ex.T + i) * ex.T + j] / 255;
      mv.tooltip.textContent = `query ${quoted(ex.tokens[i])} (${i}) → key ${quoted(ex.tokens[j])} (${j}): ${fmt(p)}`;
      mv.tooltip.hidden = false;
      const [x, y] = mousePos(e, mv.detailCanvas);
      mv.tooltip.style.left = `${x + mv.detailCanvas.offsetLeft + 14}px`;
      mv.tooltip.style.top = `${y + mv.detailCanvas.offsetTop + 14}px`;
    });
    mv.detailCanvas.addEventListener("mouseleave", () => { mv.tooltip.hidden = true; });
    mv.detailCanvas.addEventListener("click", (e) => {
      const hit = detailHit(e);
      if (hit) pick(hit[0]);
    });
  }

  function detailHit(e) {
    const lay = ui.model.detailLayout;
    if (!lay || !state.detail) return null;
    const [x, y] = mousePos(e, ui.model.detailCanvas);
    const i = Math.floor((y - lay.y0) / lay.cell), j = Math.floor((x - lay.x0) / lay.cell);
    return i >= 0 && j >= 0 && i < lay.T && j < lay.T ? [i, j] : null;
  }

  function renderModelView() {
    const mv = ui.model, ex = cur();
    if (mv.drawnFor !== ex) {
      const { S, data } = thumbnails(ex);
      mv.thumbs.forEach((c, m) => heatmapImage(data, m * S * S, S, c));
      mv.drawnFor = ex;
      mv.caption.textContent = `${L} × ${N} maps of ${ex.T} × ${ex.T}` +
        (S < ex.T ? `, shown as ${S} × ${S} (the maximum of each block)` : "") +
        " · colour: √probability, white = 0, dark blue = 1";
    }
    mv.section.classList.toggle("bjv-wide", N * (THUMB + 3) + 70 > columnWidth());  // many heads: full width
    if (mv.body.firstChild !== mv.gridScroll) {
      mv.body.textContent = "";
      mv.body.append(mv.gridScroll, mv.detail);
    }
    mv.rowLabels.forEach((label, l) => label.classList.toggle("current", l === state.layer));
    mv.thumbs.forEach((c) => {
      const d = state.detail;
      c.classList.toggle("selected", !!d && d.layer === Number(c.dataset.layer) && d.head === Number(c.dataset.head));
    });
    renderDetail();
    mv.section.dataset.rendered = "1";
  }

  function closeDetail() {
    state.detail = null;
    renderModelView();
  }

  function renderDetail() {
    const mv = ui.model, ex = cur(), T = ex.T;
    if (!state.detail) {
      mv.detail.hidden = true;
      mv.detailLayout = null;
      delete mv.section.dataset.detail;
      return;
    }
    const { layer, head } = state.detail;
    mv.detail.hidden = false;
    mv.section.dataset.detail = `${layer},${head}`;
    mv.detailTitle.textContent = `layer ${layer}, head ${head}`;
    mv.detailTitle.style.color = headColour(head);
    const labels = T <= MANY_TOKENS;
    const cell = labels ? clamp(Math.floor(520 / T), 8, 22) : Math.max(1, 512 / T);
    const fontPx = labels ? clamp(cell - 1, 8, 12) : 11;
    const font = `${fontPx}px ${FONT_FAMILY}`;
    const labelW = labels ? Math.min(120, Math.max(...ex.tokens.map((t) => textWidth(t, font)))) + 10 : 22;
    const x0 = labelW, y0 = labelW, side = T * cell;
    const w = x0 + side + 6, h = y0 + side + 6;
    const ctx = sizeCanvas(mv.detailCanvas, w, h);
    mv.detailLayout = { x0, y0, cell, T };
    const img = heatmapImage(ex.att, (layer * N + head) * T * T, T);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, x0, y0, side, side);
    ctx.strokeStyle = "#ced4da";
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 - 0.5, y0 - 0.5, side + 1, side + 1);
    if (ex.pairs) {  // the packed pairs' blocks
      ctx.strokeStyle = "#495057";
      ctx.setLineDash([3, 2]);
      for (const members of ex.blocks.values()) {
        const a = members[0], b = members[members.length - 1] + 1;
        ctx.strokeRect(x0 + a * cell, y0 + a * cell, (b - a) * cell, (b - a) * cell);
      }
      ctx.setLineDash([]);
    }
    ctx.strokeStyle = "#f08c00";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x0, y0 + state.position * cell, side, cell);
    ctx.font = font;
    ctx.textBaseline = "middle";
    if (labels) {
      for (let i = 0; i < T; i++) {
        ctx.fillStyle = Number(ex.segments[i]) !== 0 ? SEG_B : TEXT;
        ctx.font = i === state.position ? `600 ${font}` : font;
        const tok = fit(ctx, ex.tokens[i], labelW - 8);
        ctx.textAlign = "right";
        ctx.fillText(tok, x0 - 4, y0 + (i + 0.5) * cell);
        ctx.save();
        ctx.translate(x0 + (i + 0.5) * cell, y0 - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(tok, 0, 0);
        ctx.restore();
      }
    } else {
      ctx.fillStyle = MUTED;
      ctx.textAlign = "left";
      ctx.fillText("key →", x0, y0 - 10);
      ctx.save();
      ctx.translate(x0 - 10, y0);
      ctx.rotate(Math.PI / 2);
      ctx.fillText("query →", 0, 0);
      ctx.restore();
    }
  }

  // ---- [CLS] summary ------------------------------------------------------------------------------------------
  function buildClsView() {
    const cv = ui.cls;
    cv.pairSelect = el("select", { id: "cls-pair-select", onchange: (e) => setPair(Number(e.target.value)) });
    cv.pairLabel = el("label", { class: "bjv-control" }, "pair ", cv.pairSelect);
    cv.title = el("p", { class: "bjv-subtitle" });
    cv.bars = el("canvas", { class: "bjv-cls-bars" });
    cv.entropy = el("canvas", { class: "bjv-cls-entropy" });
    cv.readout = el("p", { class: "bjv-readout", text: " " });
    const swatch = (colour, label, kind = "box") => el("span", { class: "bjv-legend-item" },
      el("span", { class: `bjv-swatch ${kind}`, style: `--swatch: ${colour}` }), label);
    cv.legend = el("div", { class: "bjv-legend" }, ...PARTS.map((p) => swatch(PART_COLOURS[p], PART_LABELS[p])));
    cv.entropyLegend = el("div", { class: "bjv-legend" }, swatch("#343a40", "entropy, mean over heads", "line"),
      swatch(headColour(0), "one head (head colours)", "dot"), swatch(MUTED, "uniform: log(tokens)", "dashed"));
    cv.content = el("div", { class: "bjv-cls-content" }, cv.pairLabel, cv.title,
      el("div", { class: "bjv-cls-charts" },
        el("figure", {}, cv.bars, el("figcaption", {}, "attention mass of [CLS] (mean over heads)"), cv.legend),
        el("figure", {}, cv.entropy, el("figcaption", {}, "entropy of [CLS]'s attention (nats)"), cv.entropyLegend)),
      cv.readout);
    for (const c of [cv.bars, cv.entropy]) {
      c.addEventListener("mousemove", (e) => {
        const lay = cv.layout;
        if (!lay) return;
        const [x] = mousePos(e, c);
        const l = Math.floor((x - lay.left) / lay.step);
        const hover = l >= 0 && l < L ? l : null;
        if (hover !== cv.hover) {
          cv.hover = hover;
          drawCls();
        }
      });
      c.addEventListener("mouseleave", () => {
        cv.hover = null;
        drawCls();
      });
    }
  }

  function renderCls() {
    const cv = ui.cls, ex = cur();
    if (cv.body.firstChild !== cv.content) {
      cv.body.textContent = "";
      cv.body.append(cv.content);
    }
    cv.pairSelect.textContent = "";
    ex.cls.forEach((c, k) => {
      cv.pairSelect.append(el("option", { value: k, text: `pair ${k} ([CLS] at ${c.position})` }));
    });
    cv.pairSelect.value = String(state.pair);
    cv.pairLabel.hidden = ex.cls.length <= 1;
    cv.section.dataset.pair = String(state.pair);
    cv.hover = null;
    drawCls();
    cv.section.dataset.rendered = "1";
  }

  function drawCls() {
    const cv = ui.cls, ex = cur();
    const c = ex.cls[state.pair];
    if (!c) {
      cv.title.textContent = "No [CLS] summary stored for this example.";
      cv.bars.hidden = cv.entropy.hidden = true;
      cv.readout.textContent = " ";
      return;
    }
    cv.bars.hidden = cv.entropy.hidden = false;
    cv.title.textContent = `[CLS] at position ${c.position}` + (ex.cls.length > 1 ? ` (pair ${state.pair})` : "");
    const W = clamp(L * 24 + 50, 280, 520), H = 190;
    const left = 40, right = 10, top = 10, bottom = 24;
    const step = (W - left - right) / L;
    cv.layout = { left, step };
    const xLabelEvery = Math.ceil(L / 16);
    const axes = (ctx, ymax, ticks, fmtTick) => {
      const y = (v) => top + (H - top - bottom) * (1 - v / ymax);
      ctx.font = SMALL;
      ctx.textBaseline = "middle";
      ctx.textAlign = "right";
      for (const t of ticks) {
        ctx.strokeStyle = "#e9ecef";
        ctx.beginPath();
        ctx.moveTo(left, y(t));
        ctx.lineTo(W - right, y(t));
        ctx.stroke();
        ctx.fillStyle = MUTED;
        ctx.fillText(fmtTick(t), left - 5, y(t));
      }
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      for (let l = 0; l < L; l += xLabelEvery) ctx.fillText(String(l), left + (l + 0.5) * step, H - bottom + 5);
      if (cv.hover != null) {
        ctx.fillStyle = "rgba(255, 212, 59, 0.25)";
        ctx.fillRect(left + cv.hover * step, top, step, H - top - bottom);
      }
      return y;
    };
    // stacked bars
    let ctx = sizeCanvas(cv.bars, W, H);
    let y = axes(ctx, 1, [0, 0.25, 0.5, 0.75, 1], (t) => String(t));
    for (let l = 0; l < L; l++) {
      let acc = 0;
      for (const part of PARTS) {
        const v = Number((c.parts[part] || [])[l]) || 0;
        ctx.fillStyle = PART_COLOURS[part];
        ctx.fillRect(left + (l + 0.15) * step, y(acc + v), step * 0.7, y(acc) - y(acc + v));
        acc += v;
      }
    }
    // entropy
    const perHead = c.entropy_per_head || [];
    const uniform = Number(c.uniform_entropy) || 0;
    let ymax = uniform;
    for (let l = 0; l < L; l++) {
      ymax = Math.max(ymax, Number(c.entropy[l]) || 0, ...(perHead[l] || []).map(Number));
    }
    ymax = ymax > 0 ? ymax * 1.08 : 1;
    ctx = sizeCanvas(cv.entropy, W, H);
    const raw = ymax / 4, mag = 10 ** Math.floor(Math.log10(raw));
    const tickStep = mag * ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) || 10);
    const ticks = [];
    for (let t = 0; t <= ymax + 1e-9; t += tickStep) ticks.push(t);
    const digits = Math.max(0, -Math.floor(Math.log10(tickStep) + 1e-9) + (tickStep / mag === 2.5 ? 1 : 0));
    y = axes(ctx, ymax, ticks, (t) => t.toFixed(digits));
    const x = (l) => left + (l + 0.5) * step;
    ctx.strokeStyle = MUTED;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(left, y(uniform));
    ctx.lineTo(W - right, y(uniform));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = 0.7;
    for (let l = 0; l < L; l++) {
      (perHead[l] || []).forEach((v, h) => {
        ctx.fillStyle = headColour(h);
        ctx.beginPath();
        ctx.arc(x(l) + (N > 1 ? (h / (N - 1) - 0.5) * step * 0.5 : 0), y(Number(v)), 2.2, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    ctx.globalAlpha = 1;
    ctx.strokeStyle = "#343a40";
    ctx.fillStyle = "#343a40";
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let l = 0; l < L; l++) ctx[l ? "lineTo" : "moveTo"](x(l), y(Number(c.entropy[l])));
    ctx.stroke();
    for (let l = 0; l < L; l++) {
      ctx.beginPath();
      ctx.arc(x(l), y(Number(c.entropy[l])), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    const l = cv.hover;
    cv.readout.textContent = l == null ? "hover a layer for its numbers" :
      `layer ${l}: ` + PARTS.map((p) => `${PART_LABELS[p]} ${fmt(Number(c.parts[p][l]))}`).join(" · ") +
      ` · entropy ${fmt(Number(c.entropy[l]), 2)} nats (uniform ${fmt(uniform, 2)})`;
  }

  // ---- masked-LM guesses --------------------------------------------------------------------------------------
  function renderMlm() {
    const mv = ui.mlm, ex = cur(), pos = state.position, tok = ex.tokens[pos];
    mv.section.dataset.position = String(pos);
    mv.body.textContent = "";
    const guesses = ex.guesses.get(pos);
    mv.caption.textContent = !ex.topK ? "" : LIVE ? `the model's top ${ex.topK} guesses, re-run live by the notebook`
      : `the model's top ${ex.topK} guesses, precomputed per position`;
    if (ex.mlmNote) {
      mv.body.append(el("p", { class: "bjv-empty", text: ex.mlmNote }));
      mv.section.dataset.rendered = "1";
      return;
    }
    if (LIVE && !guesses && !["[CLS]", "[SEP]"].includes(tok)) {
      mv.body.append(el("p", { class: "bjv-empty" }, "Asking the model about ",
        el("span", { class: "bjv-token", text: tok }), ` (position ${pos}) masked…`));
      mv.section.dataset.rendered = "1";
      return;
    }
    if (!guesses || !guesses.length) {
      mv.body.append(el("p", { class: "bjv-empty" }, "No guesses stored for ",
        el("span", { class: "bjv-token", text: tok }), ` (position ${pos}).`));
      mv.section.dataset.rendered = "1";
      return;
    }
    mv.body.append(el("p", {}, "With ", el("span", { class: "bjv-token", text: tok }),
      ` (position ${pos}) masked, the model guesses:`));
    const list = el("ol", { class: "bjv-guesses" });
    let found = false;
    for (const [guess, prob] of guesses) {
      const original = String(guess) === tok;
      found ||= original;
      const p = Number(prob);
      list.append(el("li", {
        class: `bjv-guess${original ? " original" : ""}`, title: original ? "the original token" : null,
      },
        el("span", { class: "bjv-guess-token", text: String(guess) }),
        el("span", { class: "bjv-bar" },
          el("span", { class: "bjv-bar-fill", style: `width: ${clamp(p, 0, 1) * 100}%` })),
        el("span", { class: "bjv-guess-prob", text: `${(p * 100).toFixed(1)}%` }),
        original ? el("span", { class: "bjv-badge", text: "✓ original" }) : null));
    }
    mv.body.append(list);
    if (!found) {
      mv.body.append(el("p", { class: "bjv-note" }, "The original token ",
        el("span", { class: "bjv-token", text: tok }), " is not among them."));
    }
    mv.section.dataset.rendered = "1";
  }

  // ---- neuron view --------------------------------------------------------------------------------------------
  function buildNeuronView() {
    const nv = ui.neuron;
    nv.headSelect = el("select", { id: "neuron-head-select", onchange: (e) => setNeuronHead(Number(e.target.value)) });
    for (let h = 0; h < N; h++) nv.headSelect.append(el("option", { value: h, text: `head ${h}` }));
    nv.summary = el("p", { class: "bjv-subtitle" });
    nv.canvas = el("canvas", { class: "bjv-neuron-canvas" });
    nv.readout = el("p", { class: "bjv-readout", text: " " });
    nv.scroll = el("div", { class: "bjv-scroll" }, nv.canvas);
    nv.scale = el("p", { class: "bjv-readout" });
    nv.content = el("div", {}, el("label", { class: "bjv-control" }, "head ", nv.headSelect), nv.summary, nv.scroll,
      nv.readout, nv.scale);
    nv.canvas.addEventListener("mousemove", (e) => {
      const lay = nv.layout;
      if (!lay) return;
      const [x, y] = mousePos(e, nv.canvas);
      const r = Math.floor((y - lay.rowsTop) / lay.rowH);
      if (y >= lay.qTop && y < lay.qTop + lay.rowH && x >= lay.xk && x < lay.xk + lay.vecW) {
        const d = Math.floor((x - lay.xk) / lay.cellW);
        nv.readout.textContent = `query ${quoted(cur().tokens[state.position])}, dim ${d}: q = ${fmt(lay.q[d])}`;
        return;
      }
      if (r < 0 || r >= lay.rows.length) {
        nv.readout.textContent = "hover a cell for its value";
        return;
      }
      const row = lay.rows[r], tok = quoted(cur().tokens[row.j]);
      let d = -1;
      if (x >= lay.xk && x < lay.xk + lay.vecW) d = Math.floor((x - lay.xk) / lay.cellW);
      else if (x >= lay.xp && x < lay.xp + lay.vecW) d = Math.floor((x - lay.xp) / lay.cellW);
      nv.readout.textContent = d >= 0
        ? `key ${tok} (${row.j}), dim ${d}: q = ${fmt(lay.q[d])}, k = ${fmt(row.k[d])}, ` +
          `q·k term = ${fmt(lay.q[d] * row.k[d])}`
        : `key ${tok} (${row.j}): q·k/√D = ${fmt(row.score)}, softmax ${fmt(row.prob)}, stored ${fmt(row.stored)}`;
    });
    nv.canvas.addEventListener("mouseleave", () => { nv.readout.textContent = "hover a cell for its value"; });
  }

  function renderNeuron() {
    const nv = ui.neuron, ex = cur(), T = ex.T;
    const i = state.position, layer = state.layer, head = state.neuronHead;
    Object.assign(nv.section.dataset, { position: String(i), layer: String(layer), head: String(head) });
    if (nv.body.firstChild !== nv.content) {
      nv.body.textContent = "";
      nv.body.append(nv.content);
    }
    nv.headSelect.value = String(head);
    if (!ex.q) {
      nv.summary.textContent = "No query/key vectors stored for this example.";
      nv.canvas.hidden = true;
      nv.section.dataset.rendered = "1";
      return;
    }
    nv.canvas.hidden = false;
    const keys = ex.blocks.get(ex.blockOf[i]);
    const q = dequantised(ex, "query", layer, i, head);
    const sqrtD = Math.sqrt(D);
    const rows = keys.map((j) => {
      const k = dequantised(ex, "key", layer, j, head);
      const prod = new Float32Array(D);
      let dot = 0;
      for (let d = 0; d < D; d++) {
        prod[d] = q[d] * k[d];
        dot += prod[d];
      }
      return { j, k, prod, score: dot / sqrtD, stored: ex.att[((layer * N + head) * T + i) * T + j] / 255 };
    });
    const maxScore = Math.max(...rows.map((r) => r.score));
    let total = 0;
    for (const r of rows) total += (r.exp = Math.exp(r.score - maxScore));
    let maxDiff = 0, best = rows[0];
    for (const r of rows) {
      r.prob = r.exp / total;
      maxDiff = Math.max(maxDiff, Math.abs(r.prob - r.stored));
      if (r.stored > best.stored) best = r;
    }
    nv.section.dataset.maxDiff = maxDiff.toFixed(6);
    nv.summary.textContent = `query ${quoted(ex.tokens[i])} (position ${i}), layer ${layer}, head ${head}: ` +
      `softmax(q·k/√D) vs stored attention: max difference ${fmt(maxDiff, 4)} ` +
      "(q and k are stored as int8 per vector, the attention to ±1/510)" +
      (ex.pairs ? ` · keys: pair ${ex.blockOf[i]}'s block only` : "");
    // layout
    const many = rows.length > MANY_TOKENS;
    const rowH = many ? 14 : 18, cellW = clamp(Math.floor(160 / D), 2, 18), vecW = cellW * D;
    const labelW = ex.tokenWidth + 30, gap = 14, numW = 64, barW = 104;
    const xk = labelW, xp = xk + vecW + gap, xs = xp + vecW + gap, xsm = xs + numW + gap, xst = xsm + barW + gap;
    const W = xst + barW + 4, qTop = 22, rowsTop = qTop + rowH + 12, H = rowsTop + rows.length * rowH + 6;
    nv.layout = { rowH, cellW, vecW, xk, xp, qTop, rowsTop, rows, q };
    nv.scroll.classList.toggle("many", many);
    nv.section.classList.toggle("bjv-wide", W > columnWidth());  // wide vectors: the grid's full width
    const ctx = sizeCanvas(nv.canvas, W, H);
    let qkMax = 0, prodMax = 0;
    for (let d = 0; d < D; d++) qkMax = Math.max(qkMax, Math.abs(q[d]));
    for (const r of rows) {
      for (let d = 0; d < D; d++) {
        qkMax = Math.max(qkMax, Math.abs(r.k[d]));
        prodMax = Math.max(prodMax, Math.abs(r.prod[d]));
      }
    }
    ctx.font = SMALL;
    ctx.textBaseline = "middle";
    ctx.fillStyle = MUTED;
    ctx.textAlign = "left";
    const heads = [[xk, "q, k"], [xp, "q ⊙ k"], [xs, "q·k/√D"], [xsm, "softmax"], [xst, "stored"]];
    for (const [x, t] of heads) ctx.fillText(t, x, 9);
    nv.scale.textContent = `cells: blue < 0 < red, white = 0; full colour at ±${fmt(qkMax, 2)} for q and k, ` +
      `±${fmt(prodMax, 2)} for q ⊙ k · highlighted: the key with the largest stored probability`;
    const cells = (x, yTop, v, max) => {
      for (let d = 0; d < D; d++) {
        ctx.fillStyle = divColour(v[d], max);
        ctx.fillRect(x + d * cellW, yTop + 1, cellW - (cellW > 3 ? 1 : 0), rowH - 2);
      }
    };
    const bar = (x, yc, p, colour) => {
      ctx.fillStyle = "#f1f3f5";
      ctx.fillRect(x, yc - 4, 56, 8);
      ctx.fillStyle = colour;
      ctx.fillRect(x, yc - 4, 56 * clamp(p, 0, 1), 8);
      ctx.fillStyle = TEXT;
      ctx.textAlign = "left";
      ctx.fillText(fmt(p), x + 60, yc);
    };
    // the query row
    ctx.font = BOLD;
    ctx.fillStyle = TEXT;
    ctx.textAlign = "right";
    ctx.fillText(fit(ctx, `q: ${ex.tokens[i]}`, labelW - 8), xk - 6, qTop + rowH / 2);
    cells(xk, qTop, q, qkMax);
    ctx.strokeStyle = "#dee2e6";
    ctx.beginPath();
    ctx.moveTo(0, rowsTop - 6);
    ctx.lineTo(W, rowsTop - 6);
    ctx.stroke();
    rows.forEach((r, n) => {
      const yTop = rowsTop + n * rowH, yc = yTop + rowH / 2;
      if (r === best) {
        ctx.fillStyle = PICKED_BG;
        ctx.fillRect(0, yTop, W, rowH);
      }
      ctx.font = r.j === i ? BOLD : FONT;
      ctx.fillStyle = Number(ex.segments[r.j]) !== 0 ? SEG_B : TEXT;
      ctx.textAlign = "right";
      ctx.fillText(fit(ctx, ex.tokens[r.j], labelW - 8), xk - 6, yc);
      cells(xk, yTop, r.k, qkMax);
      cells(xp, yTop, r.prod, prodMax);
      ctx.font = SMALL;
      ctx.fillStyle = TEXT;
      ctx.fillText(fmt(r.score, 2), xs + numW - 8, yc);
      bar(xsm, yc, r.prob, "#4263eb");
      bar(xst, yc, r.stored, "#868e96");
    });
    nv.readout.textContent = "hover a cell for its value";
    nv.section.dataset.rendered = "1";
  }

  // ---- actions (the API) --------------------------------------------------------------------------------------
  function checkIndex(value, size, what) {
    if (!Number.isInteger(value) || value < 0 || value >= size) {
      throw new RangeError(`${what} ${value} not in 0..${size - 1}`);
    }
  }

  function pick(position) {
    checkIndex(position, cur().T, "position");
    state.position = position;
    if (LIVE && window.parent !== window && !cur().guesses.has(position)) {
      // A live notebook view (bertjax.attention_viewer.live): the kernel re-runs the model and answers with
      // postMessage({bertjaxView: "setGuesses", args: [position, guesses, example]}).
      window.parent.postMessage({ bertjaxPicked: { example: state.example, position } }, "*");
    }
    const pair = pairOf(cur(), position);
    renderTokenStrip();
    drawHeadView();
    renderDetail();
    if (pair !== state.pair) {
      state.pair = pair;
      renderCls();
    }
    renderMlm();
    renderNeuron();
  }

  function setLayer(layer) {
    checkIndex(layer, L, "layer");
    state.layer = layer;
    ui.layerSelect.value = String(layer);
    renderHeadView();
    ui.model.rowLabels.forEach((label, l) => label.classList.toggle("current", l === layer));
    renderNeuron();
  }

  function setHeads(heads) {
    heads = [...new Set(heads.map(Number))].sort((a, b) => a - b);
    heads.forEach((h) => checkIndex(h, N, "head"));
    state.heads = heads;
    if (heads.length && !heads.includes(state.neuronHead)) state.neuronHead = heads[0];
    renderHeadView();
    renderNeuron();
  }

  function selectHead(layer, head) {
    checkIndex(layer, L, "layer");
    checkIndex(head, N, "head");
    state.layer = layer;
    state.heads = [head];
    state.neuronHead = head;
    state.detail = { layer, head };
    ui.layerSelect.value = String(layer);
    renderHeadView();
    renderModelView();
    renderNeuron();
  }

  function setNeuronHead(head) {
    checkIndex(head, N, "head");
    state.neuronHead = head;
    renderNeuron();
  }

  function setPair(pair) {
    checkIndex(pair, Math.max(1, cur().cls.length), "pair");
    state.pair = pair;
    renderCls();
  }

  function setExample(index) {
    checkIndex(index, examples.length, "example");
    state.example = index;
    state.position = defaultPosition(cur());
    state.pair = pairOf(cur(), state.position);
    state.detail = null;
    state.heads = defaultHeads(cur());
    state.neuronHead = state.heads[0];
    renderAll();
  }

  function setGuesses(position, guesses, example = state.example) {
    checkIndex(example, examples.length, "example");
    const ex = examples[example];
    checkIndex(position, ex.T, "position");
    if (guesses == null || (Array.isArray(guesses) && !guesses.length)) ex.guesses.delete(position);
    else {
      if (!Array.isArray(guesses) || guesses.some((g) => !Array.isArray(g) || g.length !== 2)) {
        throw new TypeError("guesses: a list of [token, probability] pairs");
      }
      ex.guesses.set(position, guesses.map(([t, p]) => [String(t), Number(p)]));
    }
    if (example === state.example) {
      renderTokenStrip();
      renderMlm();
    }
  }

  function renderAll() {
    renderInfo();
    renderControls();
    renderTokenStrip();
    renderHeadView();
    renderModelView();
    renderCls();
    renderMlm();
    renderNeuron();
  }

  function showError(error) {
    console.error("bertjax attention viewer:", error);
    const box = el("div", { class: "bjv-error", role: "alert" },
      el("strong", { text: "The attention viewer failed: " }),
      String(error && error.message ? error.message : error));
    root.prepend(box);
    const status = document.getElementById("bjv-status");
    if (status) status.remove();
    document.body.dataset.error = "1";
  }

  async function main() {
    const script = document.getElementById("bertjax-view-data");
    if (!script) throw new Error("no data (<script id=\"bertjax-view-data\">) in the page");
    DATA = JSON.parse(script.textContent);
    if (DATA.format !== FORMAT) throw new Error(`data format ${JSON.stringify(DATA.format)}, expected ${FORMAT}`);
    LIVE = DATA.mlm_live === true;
    ({ num_layers: L, num_heads: N, head_dim: D } = DATA.model);
    if (!(L > 0 && N > 0 && D > 0)) throw new Error("model: num_layers, num_heads and head_dim must be positive");
    if (!Array.isArray(DATA.examples) || !DATA.examples.length) throw new Error("no examples in the data");
    buildSkeleton();
    ui.info.textContent = "decoding…";
    let t0 = performance.now();
    examples = await Promise.all(DATA.examples.map((raw, i) => decodeExample(raw, i)));
    timings.decode_ms = performance.now() - t0;
    t0 = performance.now();
    state.example = 0;
    state.heads = defaultHeads(cur());
    state.neuronHead = state.heads[0];
    state.position = defaultPosition(cur());
    state.pair = pairOf(cur(), state.position);
    renderAll();
    timings.first_render_ms = performance.now() - t0;

    const api = {
      state, data: DATA, timings,
      get examples() { return examples.length; },
      attention(example, layer, head) {
        checkIndex(example, examples.length, "example");
        checkIndex(layer, L, "layer");
        checkIndex(head, N, "head");
        const ex = examples[example], T = ex.T, base = (layer * N + head) * T * T;
        const out = new Float32Array(T * T);
        for (let p = 0; p < T * T; p++) out[p] = ex.att[base + p] / 255;
        return out;
      },
      neurons(example, which, layer, token, head) {
        checkIndex(example, examples.length, "example");
        if (which !== "query" && which !== "key") throw new TypeError('which: "query" or "key"');
        checkIndex(layer, L, "layer");
        checkIndex(token, examples[example].T, "token");
        checkIndex(head, N, "head");
        return dequantised(examples[example], which, layer, token, head);
      },
      pick, selectHead, setGuesses, setLayer, setHeads, setExample, setNeuronHead, setPair,
    };
    window.bertjaxView = api;
    const CALLABLE = new Set(["pick", "selectHead", "setGuesses", "setLayer", "setHeads", "setExample",
      "setNeuronHead", "setPair"]);
    window.addEventListener("message", (event) => {
      const m = event.data;
      if (m && typeof m === "object" && CALLABLE.has(m.bertjaxView)) {
        try {
          api[m.bertjaxView](...(Array.isArray(m.args) ? m.args : []));
        } catch (error) {
          console.warn("bertjax attention viewer: message", m.bertjaxView, "failed:", error);
        }
      }
    });
    document.getElementById("bjv-status")?.remove();
    document.body.dataset.ready = "1";
    window.dispatchEvent(new CustomEvent("bertjax-view-ready"));
  }

  main().catch(showError);
})();

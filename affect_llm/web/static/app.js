// affect-llm's web page: drop a clip, follow the analysis stage by stage, watch its cues on a timeline synced
// with the player, read the explanation (cited ids link to their cues) and ask about it. It talks to the same
// API as any client (POST /v1/analyses, its events, its result, its chat), and loads nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

const STAGES = {
  probe: "reading the file", decode_audio: "decoding the audio", load_asr: "loading Whisper",
  asr: "transcribing the speech", prosody: "measuring the voice", face: "reading the face (landmarks, AUs, FER)",
  decode_video: "decoding the video", load_clip: "loading CLIP", scene: "matching the scene (CLIP)",
  load_context: "loading the dialogue model", context: "reading the dialogue", wait_llm: "loading the LLM",
  label: "scoring the labels (LLM)", open_vocab: "naming free emotion words", explain: "writing the explanation",
  cached: "analysed before: from the cache",
};
const MODALITY_NAMES = {
  llm: "LLM (the words)", context: "dialogue model", face: "face: FER model", facs: "face: AU pattern (FACS)",
  scene: "scene: CLIP",
};
const LANES = [["speech", "S", "speech"], ["prosody", "P", "voice"], ["face", "F", "face"], ["scene", "C", "scene"]];
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const CITE = /\[([A-Z][0-9]{1,3})\]/g;

const state = { key: sessionStorage.getItem("affect-llm-key") || "", health: null, job: null, analysis: null,
  name: "", mediaUrl: null, player: null, history: [], busy: false, pendingKey: null };

// -- the API ------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers.Authorization = "Bearer " + state.key;
  let res;
  try {
    res = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError("Cannot reach the server (is affect-llm serve still running?)", 0);
  }
  if (res.status === 401) {
    askForKey("The key was not accepted; enter the server's API key.");
    throw new ApiError("This server needs its API key.", 401);
  }
  if (!res.ok) {
    let message = `the server answered ${res.status}`;
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (e) { /* not JSON: the status says it */ }
    throw new ApiError(message, res.status);
  }
  return res;
}

// -- messages and progress ------------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function askForKey(why) {
  $("key-panel").hidden = false;
  showMessage(why, "info");
  $("api-key").focus();
}

function resetProgress(title) {
  $("progress").hidden = false;
  $("progress-title").textContent = title;
  $("stages").replaceChildren();
}

function stageEvent(e) {
  const list = $("stages");
  let li = list.querySelector(`li[data-stage="${e.stage}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.stage = e.stage;
    li.append(el("span", "stage-name", STAGES[e.stage] || e.stage), el("span", "stage-status", ""));
    list.append(li);
  }
  li.className = e.status;
  li.querySelector(".stage-status").textContent =
    e.status === "start" ? "…" : e.status === "done" ? `✓ ${fmtSeconds(e.seconds)}` : "✗ failed";
}

function fmtSeconds(s) { return s == null ? "" : s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`; }

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text != null) n.textContent = text;
  return n;
}

function setBusy(on) {
  state.busy = on;
  for (const id of ["file", "analyse-text"]) $(id).disabled = on;
  $("drop").classList.toggle("disabled", on);
}

// -- starting an analysis -----------------------------------------------------------------------------------------

async function analyseFile(file) {
  if (state.busy) return;
  showMessage("");
  const limit = state.health ? state.health.max_body_mb : null;
  if (limit && file.size > limit * 1024 * 1024) {
    showMessage(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes files up to ` +
      `${limit} MB (start it with a larger --max-body-mb).`);
    return;
  }
  if (!file.size) { showMessage(`${file.name} is empty.`); return; }
  if (state.mediaUrl) URL.revokeObjectURL(state.mediaUrl);
  state.mediaUrl = URL.createObjectURL(file);
  state.name = file.name;
  state.fileType = file.type || "";
  // always octet-stream: a dropped .json file must not be read as a text request
  await start(`/v1/analyses?filename=${encodeURIComponent(file.name)}`,
    { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } }, file.name);
}

async function analyseText(text, context) {
  if (state.busy) return;
  showMessage("");
  if (!text.trim()) { showMessage("Type a sentence to analyse (or choose a file)."); return; }
  if (state.mediaUrl) URL.revokeObjectURL(state.mediaUrl);
  state.mediaUrl = null;
  state.name = "text";
  const body = { text };
  if (context.trim()) body.context = context;
  await start("/v1/analyses", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } }, "the text");
}

async function start(path, options, what) {
  setBusy(true);
  $("result").hidden = true;
  resetProgress(`Analysing ${what}…`);
  STAGES.upload = options.body instanceof Blob ? `sending ${what}` : "sending the text";
  stageEvent({ stage: "upload", status: "start" });
  const t0 = performance.now();
  try {
    const job = await (await api(path, options)).json();
    stageEvent({ stage: "upload", status: "done", seconds: (performance.now() - t0) / 1000 });
    state.job = job.id;
    await follow(job.id);
  } catch (e) {
    stageEvent({ stage: "upload", status: "failed" });
    failed(e.message);
  } finally {
    setBusy(false);
  }
}

function failed(message) {
  $("progress-title").textContent = "The analysis stopped";
  showMessage(message);
}

// The job's server-sent events, read from a fetch stream (so the API key header goes with it); if the stream
// breaks, the job's state is polled until the server answers again or it is clearly gone.
async function follow(id) {
  let ended = false;
  try {
    const res = await api(`/v1/analyses/${id}/events`, { headers: { Accept: "text/event-stream" } });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const ev = parseEvent(block);
        if (!ev) continue;
        if (ev.event === "stage") stageEvent(ev.data);
        else if (ev.event === "done") { ended = true; await fetchResult(id); return; }
        else if (ev.event === "error") { ended = true; failed(ev.data.error.message); return; }
      }
    }
  } catch (e) {
    if (e.status === 401) throw e;
    if (e.status === 404) throw e;
  }
  if (!ended) await poll(id);
}

function parseEvent(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return null;
  try { return { event, data: JSON.parse(data) }; } catch (e) { return null; }
}

async function poll(id) {
  let misses = 0;
  for (;;) {
    try {
      const view = await (await api(`/v1/analyses/${id}`)).json();
      misses = 0;
      if (document.querySelector("#message.info")) showMessage("");
      view.events.forEach(stageEvent);
      if (view.status === "done") { render(view.analysis); return; }
      if (view.status === "failed") { failed(view.error.error.message); return; }
    } catch (e) {
      if (e.status === 404 || e.status === 401) throw e;
      misses += 1;
      if (misses >= 20) {
        throw new ApiError("Lost the connection to the server: it does not answer (is affect-llm serve still " +
          "running?). Start the analysis again once it is back.", 0);
      }
      showMessage(`The connection to the server was lost; retrying (${misses})…`, "info");
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function fetchResult(id) {
  const view = await (await api(`/v1/analyses/${id}`)).json();
  if (view.status !== "done") throw new ApiError("the analysis has no result", 0);
  render(view.analysis);
}

// -- the result ---------------------------------------------------------------------------------------------------

function render(a) {
  state.analysis = a;
  state.history = [];
  $("progress-title").textContent = `Analysed in ${fmtSeconds(a.timings.total || 0)}`;
  $("result").hidden = false;
  renderPlayer(a);
  renderTimeline(a);
  renderCues(a);
  $("label").textContent = a.label;
  $("label-prob").textContent = `${Math.round((a.probabilities[a.label] || 0) * 100)} %`;
  $("decision").textContent = a.decision || "";
  renderModalities(a);
  $("explanation").replaceChildren(...linked(a.explanation || "(no explanation was asked for)", a));
  const known = new Set(a.cues.map((c) => c.id));
  const inText = [...(a.explanation || "").matchAll(CITE)].map((m) => m[1]).filter((id) => !known.has(id));
  const uncited = [...new Set([...(a.uncited_ids || []), ...inText])];
  $("uncited").hidden = !uncited.length;
  $("uncited").textContent = uncited.length ?
    `The explanation mentions ${uncited.map((x) => `[${x}]`).join(", ")}, which the evidence does not hold.` : "";
  const missing = a.missing_modalities || [];
  $("missing").textContent = missing.length ? `Missing: ${missing.join(", ")}` : "";
  $("notes").replaceChildren(...(a.notes || []).map((n) => el("li", null, n)));
  $("chat-log").replaceChildren();
}

function renderPlayer(a) {
  const box = $("player-box");
  box.replaceChildren();
  state.player = null;
  if (!state.mediaUrl || !a.media) return;
  const video = a.media.has_video;
  const p = document.createElement(video ? "video" : "audio");
  p.id = "player";
  p.controls = true;
  p.preload = "auto";
  p.src = state.mediaUrl;
  p.addEventListener("timeupdate", movePlayhead);
  p.addEventListener("seeked", movePlayhead);
  p.addEventListener("play", () => requestAnimationFrame(tick));
  p.addEventListener("error", () => showMessage("This browser cannot play the file (its codec?): the analysis " +
    "is shown, but the player cannot play or seek.", "info"));
  box.append(p);
  state.player = p;
}

function tick() {
  movePlayhead();
  if (state.player && !state.player.paused) requestAnimationFrame(tick);
}

function seek(t, cueId) {
  if (cueId) highlight(cueId);
  if (!state.player || t == null) return;
  state.player.currentTime = t;
  movePlayhead();
}

function highlight(cueId) {
  for (const n of document.querySelectorAll(".selected")) n.classList.remove("selected");
  for (const n of document.querySelectorAll(`[data-id="${cueId}"]`)) n.classList.add("selected");
  const li = document.querySelector(`#cues li[data-id="${cueId}"]`);
  if (li) li.scrollIntoView({ block: "nearest" });
}

// The timeline: one lane per signal the analysis has, all on the clip's time axis; a click anywhere seeks.
const GEO = { left: 96, right: 12, width: 760 };

function renderTimeline(a) {
  const box = $("timeline");
  box.replaceChildren();
  const duration = a.media && a.media.duration;
  if (!duration || !state.mediaUrl) { box.hidden = true; return; }
  box.hidden = false;
  const width = Math.max(480, Math.min(1100, box.clientWidth || GEO.width));
  const x = (t) => GEO.left + (Math.max(0, Math.min(duration, t)) / duration) * (width - GEO.left - GEO.right);
  const svg = document.createElementNS(SVG, "svg");
  svg.id = "timeline-svg";
  let y = 8;
  const lanes = [];
  const lane = (name, height) => {
    const top = y;
    lanes.push([name, top, height]);
    y += height + 8;
    return top;
  };
  const words = (a.transcript && a.transcript.segments || []).flatMap((s) => s.words || []);
  if (words.length) {
    const top = lane("words", 22);
    for (const w of words) {
      const r = rect(x(w.start), top, Math.max(1.5, x(w.end) - x(w.start)), 22, "word");
      r.append(title(`${w.word.trim()} (${w.start.toFixed(2)}–${w.end.toFixed(2)} s)`));
      svg.append(r);
      if (x(w.end) - x(w.start) > 7 * w.word.trim().length) svg.append(label(x(w.start) + 2, top + 15, w.word.trim(), "word-text"));
    }
  }
  for (const [modality, prefix, name] of LANES) {
    const cues = a.cues.filter((c) => c.modality === modality && c.start != null);
    if (!cues.length) continue;
    const top = lane(name + " cues", 22);
    for (const c of cues) {
      const end = c.end != null && c.end > c.start ? c.end : c.start + duration / 200;
      const r = rect(x(c.start), top, Math.max(3, x(end) - x(c.start)), 22, `cue-span lane-${prefix}`);
      r.dataset.id = c.id;
      r.dataset.start = c.start;
      r.append(title(`[${c.id}] ${c.text}`));
      r.addEventListener("click", (ev) => { ev.stopPropagation(); seek(c.start, c.id); });
      svg.append(r);
      svg.append(label(x(c.start) + 3, top + 15, c.id, "cue-id"));
    }
  }
  const face = (a.timeline && a.timeline.face) || [];
  if (face.length) {
    const peak = {};
    for (const f of face) for (const [au, v] of Object.entries(f.aus || {})) peak[au] = Math.max(peak[au] || 0, v);
    const shown = Object.keys(peak).sort((p, q) => peak[q] - peak[p]).slice(0, 6);
    const top = lane("AU intensity", 82);  // a legend row, then the curves
    shown.forEach((au, i) => {
      svg.append(curve(face.map((f) => [f.t, f.aus ? f.aus[au] : null]), x, top + 14, 68, 0, 5, COLOURS[i], `au au-${au}`));
      svg.append(label(width - GEO.right - 44 * (shown.length - i), top + 10, au, "legend", COLOURS[i]));
    });
    const exprs = [...new Set(face.flatMap((f) => Object.keys(f.expression || {})))];
    if (exprs.length) {
      const top2 = lane("expression", 72);
      exprs.forEach((e, i) => {
        svg.append(curve(face.map((f) => [f.t, f.expression ? f.expression[e] : null]), x, top2 + 14, 58, 0, 1,
          COLOURS[i % COLOURS.length], "expression"));
        svg.append(label(width - GEO.right - 62 * (exprs.length - i), top2 + 10, e, "legend", COLOURS[i % COLOURS.length]));
      });
    }
  }
  const voice = (a.timeline && a.timeline.prosody) || [];
  const pitched = voice.filter((p) => p.pitch_hz != null);
  if (pitched.length) {
    const hz = pitched.map((p) => p.pitch_hz);
    const top = lane("pitch (Hz)", 50);
    svg.append(curve(voice.map((p) => [p.t, p.pitch_hz]), x, top, 50, Math.min(...hz) * 0.9, Math.max(...hz) * 1.1,
      "#1f77b4", "pitch"));
    svg.append(label(GEO.left + 3, top + 48, `${Math.round(Math.min(...hz) * 0.9)} Hz`, "axis-end"));
    svg.append(label(GEO.left + 3, top + 10, `${Math.round(Math.max(...hz) * 1.1)} Hz`, "axis-end"));
  }
  const loud = voice.filter((p) => p.loudness_db != null);
  if (loud.length) {
    const db = loud.map((p) => p.loudness_db);
    const top = lane("loudness (dB)", 40);
    svg.append(curve(voice.map((p) => [p.t, p.loudness_db]), x, top, 40, Math.min(...db), Math.max(...db),
      "#ff7f0e", "loudness"));
  }
  // the time axis
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => duration / s <= 12) || 600;
  for (let t = 0; t <= duration + 1e-6; t += step) {
    svg.prepend(line(x(t), 4, x(t), y, "grid"));  // under the lanes
    svg.append(label(x(t), y + 12, `${+t.toFixed(1)} s`, "tick"));
  }
  for (const [name, top, height] of lanes) svg.append(label(GEO.left - 8, top + Math.min(height, 22) / 2 + 4, name, "lane-name"));
  const head = line(x(0), 2, x(0), y, "playhead");
  head.id = "playhead";
  svg.append(head);
  svg.setAttribute("viewBox", `0 0 ${width} ${y + 20}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", y + 20);
  svg.addEventListener("click", (ev) => {
    const box2 = svg.getBoundingClientRect();
    const px = (ev.clientX - box2.left) * (width / box2.width);
    if (px < GEO.left) return;
    seek(((px - GEO.left) / (width - GEO.left - GEO.right)) * duration);
  });
  state.x = x;
  box.append(svg);
}

function movePlayhead() {
  const head = $("playhead");
  if (!head || !state.player || !state.x) return;
  const px = state.x(state.player.currentTime || 0);
  head.setAttribute("x1", px);
  head.setAttribute("x2", px);
}

function rect(x, y, w, h, cls) {
  const r = document.createElementNS(SVG, "rect");
  for (const [k, v] of Object.entries({ x, y, width: w, height: h, class: cls, rx: 2 })) r.setAttribute(k, v);
  return r;
}

function line(x1, y1, x2, y2, cls) {
  const l = document.createElementNS(SVG, "line");
  for (const [k, v] of Object.entries({ x1, y1, x2, y2, class: cls })) l.setAttribute(k, v);
  return l;
}

function label(x, y, text, cls, colour) {
  const t = document.createElementNS(SVG, "text");
  t.setAttribute("x", x);
  t.setAttribute("y", y);
  t.setAttribute("class", cls);
  if (colour) t.setAttribute("fill", colour);
  t.textContent = text;
  return t;
}

function title(text) {
  const t = document.createElementNS(SVG, "title");
  t.textContent = text;
  return t;
}

// a polyline over [t, v] points (v null: a gap), v mapped from [lo, hi] into the lane
function curve(points, x, top, height, lo, hi, colour, cls) {
  const span = hi - lo || 1;
  let d = "", pen = false;
  for (const [t, v] of points) {
    if (v == null || Number.isNaN(v)) { pen = false; continue; }
    const py = top + height - ((Math.max(lo, Math.min(hi, v)) - lo) / span) * height;
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${py.toFixed(1)}`;
    pen = true;
  }
  const p = document.createElementNS(SVG, "path");
  p.setAttribute("d", d || "M0,0");
  p.setAttribute("class", "curve " + cls);
  p.setAttribute("stroke", colour);
  return p;
}

function renderCues(a) {
  $("cues").replaceChildren(...a.cues.map((c) => {
    const li = el("li", `cue modality-${c.modality}`);
    li.dataset.id = c.id;
    li.id = `cue-${c.id}`;
    const when = c.start != null ? `${c.start.toFixed(1)}–${(c.end ?? c.start).toFixed(1)} s` : "";
    const b = el("button", "cue-id", c.id);
    b.type = "button";
    b.dataset.id = c.id;
    b.addEventListener("click", () => seek(c.start, c.id));
    li.append(b, el("span", "cue-time", when), el("span", "cue-text", c.text));
    return li;
  }));
}

function renderModalities(a) {
  const rows = [["fused", a.probabilities, null]];
  for (const [name, dist] of Object.entries(a.distributions || {})) rows.push([name, dist, (a.fusion || {})[name]]);
  $("modalities").replaceChildren(...rows.map(([name, dist, weight]) => {
    const row = el("div", "modality");
    row.dataset.modality = name;
    const head = el("div", "modality-name", name === "fused" ? "decision (fused)" : MODALITY_NAMES[name] || name);
    if (weight != null) head.append(el("span", "weight", ` weight ${weight.toFixed(2)}`));
    else if (name !== "fused" && Object.keys(a.fusion || {}).length) head.append(el("span", "weight", " not fused"));
    row.append(head);
    const top = Object.entries(dist).sort((p, q) => q[1] - p[1]).slice(0, 3);
    for (const [lab, p] of top) {
      const bar = el("div", "bar");
      const fill = el("span", "fill");
      fill.style.width = `${Math.round(p * 100)}%`;
      bar.append(fill, el("span", "bar-label", `${lab} ${Math.round(p * 100)} %`));
      row.append(bar);
    }
    return row;
  }));
}

// a text with its [ID] citations as links to their cues (ids the evidence lacks are flagged)
function linked(text, a) {
  const ids = new Set(a.cues.map((c) => c.id));
  const out = [];
  let at = 0;
  for (const m of text.matchAll(CITE)) {
    out.push(document.createTextNode(text.slice(at, m.index)));
    const id = m[1];
    if (ids.has(id)) {
      const link = el("a", "cite", `[${id}]`);
      link.href = `#cue-${id}`;
      link.dataset.id = id;
      link.addEventListener("click", (ev) => {
        ev.preventDefault();
        const c = a.cues.find((q) => q.id === id);
        seek(c.start, id);
      });
      out.push(link);
    } else {
      const bad = el("span", "uncited-id", `[${id}]`);
      bad.title = "not in the evidence";
      out.push(bad);
    }
    at = m.index + m[0].length;
  }
  out.push(document.createTextNode(text.slice(at)));
  return out;
}

// -- chat and downloads -----------------------------------------------------------------------------------------

async function ask(question) {
  if (!state.job || !state.analysis || !question.trim()) return;
  const log = $("chat-log");
  log.append(el("p", "q", question));
  const pending = el("p", "a pending", "thinking…");
  log.append(pending);
  $("ask").disabled = true;
  const messages = [];
  for (const [q, ans] of state.history) messages.push({ role: "user", content: q }, { role: "assistant", content: ans });
  messages.push({ role: "user", content: question });
  try {
    const r = await (await api(`/v1/analyses/${state.job}/chat`, { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ messages }) })).json();
    pending.classList.remove("pending");
    pending.replaceChildren(...linked(r.answer, state.analysis));
    state.history.push([question, r.answer]);
  } catch (e) {
    pending.classList.remove("pending");
    pending.classList.add("error");
    pending.textContent = `No answer: ${e.message}`;
  } finally {
    $("ask").disabled = false;
  }
}

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

const stem = () => (state.name || "analysis").replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "_");

async function downloadPlot() {
  try {
    const blob = await (await api(`/v1/analyses/${state.job}/plot.png`)).blob();
    save(blob, `${stem()}-timeline.png`);
  } catch (e) {
    showMessage(`No plot: ${e.message}`);
  }
}

// -- wiring ---------------------------------------------------------------------------------------------------------

async function checkServer() {
  try {
    const res = await fetch("/health");
    state.health = await res.json();
    $("server-status").textContent = state.health.models_loaded ? "models loaded" : "ready (models load on first use)";
    $("limit").textContent = `files up to ${state.health.max_body_mb} MB`;
    if (state.health.auth_required && !state.key) askForKey("This server needs its API key.");
  } catch (e) {
    $("server-status").textContent = "the server does not answer";
    showMessage("Cannot reach the server (is affect-llm serve running?)");
  }
}

function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => { if (ev.target.files[0]) analyseFile(ev.target.files[0]); ev.target.value = ""; });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = ev.dataTransfer.files[0];
    if (f) analyseFile(f);
  });
  $("text-form").addEventListener("submit", (ev) => { ev.preventDefault(); analyseText($("text").value, $("context").value); });
  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("question").value;
    $("question").value = "";
    ask(q);
  });
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("affect-llm-key", state.key);
    $("key-panel").hidden = true;
    showMessage("");
  });
  $("download-json").addEventListener("click", () => {
    if (state.analysis) save(new Blob([JSON.stringify(state.analysis, null, 2)], { type: "application/json" }), `${stem()}.analysis.json`);
  });
  $("download-plot").addEventListener("click", downloadPlot);
  window.addEventListener("resize", () => { if (state.analysis) { renderTimeline(state.analysis); movePlayhead(); } });
  checkServer();
}

document.addEventListener("DOMContentLoaded", init);

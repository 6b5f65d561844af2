// earshot inbox: lists voice notes from GET /v1/jobs, polls it for changes, uploads through
// POST /v1/jobs. Everything from the server or the user is put in the page as text
// (textContent / attributes), never as HTML.
"use strict";

const POLL_MS = 1500;
// Words the model gave less than this probability are marked for the operator.
const UNSURE_WORD = 0.5;
const POLL_HIDDEN_MS = 10000;
const PAGE = 50;

// STRINGS, the page's words in each language, comes before this file: src/web/strings.json,
// the one table the page and the Telegram bot's replies share (see web::strings).

// The page's language: the one chosen with the switch (kept in this browser), else the
// browser's own (what it sends as Accept-Language).
const LANG_KEY = "earshot.lang";
function chosenLang() {
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved === "ru" || saved === "en") return saved;
  } catch (_) { /* storage off: the browser's language */ }
  return (navigator.languages && navigator.languages[0] || navigator.language || "en")
    .toLowerCase().startsWith("ru") ? "ru" : "en";
}
const lang = chosenLang();
const T = STRINGS[lang];
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem("earshot.key") || "",
  limit: PAGE,
  rows: new Map(), // job id -> { li, sig, parts }
  timer: null,
  busy: false,
};

/** An element with attributes and children; strings become text nodes, never HTML. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

function headers() {
  return state.key ? { Authorization: "Bearer " + state.key } : {};
}

class Unauthorized extends Error {}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({}, opts, {
    headers: Object.assign(headers(), (opts && opts.headers) || {}),
  }));
  if (r.status === 401) throw new Unauthorized();
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error((body.error && body.error.message) || r.statusText);
    e.code = body.error && body.error.code;
    throw e;
  }
  return body;
}

// ---- formatting ------------------------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const dateFmt = new Intl.DateTimeFormat(lang, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
let langNames = null;
try { langNames = new Intl.DisplayNames([lang], { type: "language" }); } catch (_) { /* old browser */ }

function when(unix) {
  const d = new Date(unix * 1000);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateFmt.format(d);
}

function duration(s) {
  if (typeof s !== "number") return "";
  const t = Math.round(s);
  return Math.floor(t / 60) + ":" + String(t % 60).padStart(2, "0");
}

function languageName(code) {
  if (!code || code === "unknown") return "";
  try { return (langNames && langNames.of(code)) || code; } catch (_) { return code; }
}

function reason(job) {
  const e = job.error || {};
  return T.err[e.code] || e.message || e.code || "";
}

// ---- the list --------------------------------------------------------------------------------

function signature(j) {
  return [j.status, j.text, j.error && j.error.code, j.error && j.error.message, j.attempts,
    j.language, j.duration, j.audio_url, j.filename, j.external_id,
    JSON.stringify(j.review || null), JSON.stringify(j.progress || null)].join("\u0001");
}

/** The review verdict in words ("very quiet recording; the words are uncertain"); speech
 * with no text says where to listen from ("part of this note has no text: listen from 0:12"). */
function reviewText(review) {
  const skipped = (review && review.skipped_speech) || [];
  return ((review && review.reasons) || []).map((r) => {
    const words = T.review[r] || r;
    return r === "skipped_speech" && skipped.length ? words + " " + duration(skipped[0].start) : words;
  }).join("; ");
}

/** The transcript as word spans (seekable, unsure ones marked), or plain text. */
function fillText(p, j) {
  const words = (j.transcript && j.transcript.words) || [];
  p.text.replaceChildren();
  if (!j.text) {
    p.text.textContent = T.no_speech;
    return;
  }
  if (!words.length) {
    p.text.textContent = j.text;
    return;
  }
  words.forEach((w, i) => {
    if (i) p.text.append(" ");
    const unsure = typeof w.probability === "number" && w.probability < UNSURE_WORD;
    const span = el("span", {
      class: unsure ? "w unsure" : "w",
      "data-start": String(w.start),
      title: (unsure ? T.unsure_word + " · " : "") + T.seek + " " + duration(w.start),
      text: w.word,
    });
    p.text.append(span);
  });
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Not a secure context (plain http on a LAN address): the old way.
    const ta = el("textarea", { class: "visually-hidden", readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  button.textContent = T.copied;
  setTimeout(() => { button.textContent = T.copy; }, 1500);
}

function buildRow(j) {
  const li = el("li", { class: "job", "data-id": j.id });
  const name = el("span", { class: "name", dir: "auto" });
  const time = el("time", { class: "when" });
  const meta = el("span", { class: "meta" });
  const status = el("span", { class: "status" });
  const badge = el("span", { class: "badge listen", role: "note" });
  const text = el("p", { class: "text", dir: "auto" });
  const whyText = el("span", { class: "reason" });
  const detail = el("span", { class: "detail" });
  const why = el("p", { class: "why" }, whyText, " ", detail);
  const copy = el("button", { type: "button", class: "copy", text: T.copy });
  copy.addEventListener("click", () => copyText(li.dataset.text || "", copy));
  const retry = el("button", { type: "button", class: "retry", text: T.retry });
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      await api("/v1/jobs/" + encodeURIComponent(j.id) + "/retry", { method: "POST" });
      retry.textContent = T.retrying;
      poll();
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(T.key_wrong);
      retry.disabled = false;
      why.textContent = e.message;
    }
  });
  const audio = el("audio", { controls: true, preload: "none" });
  // Click a word: play the note from that word.
  text.addEventListener("click", (ev) => {
    const w = ev.target.closest(".w");
    if (!w) return;
    audio.currentTime = Math.max(0, Number(w.dataset.start) - 0.15);
    audio.play().catch(() => { /* the browser may refuse until the user plays once */ });
  });
  // A note with speech that has no text: click the badge to play from there.
  badge.addEventListener("click", () => {
    if (!badge.dataset.start) return;
    audio.currentTime = Math.max(0, Number(badge.dataset.start) - 0.3);
    audio.play().catch(() => { /* the browser may refuse until the user plays once */ });
  });
  const download = el("a", { class: "download", text: T.download });
  li.append(
    el("div", { class: "head" }, time, name, meta, badge, status),
    why,
    el("div", { class: "body" }, text, copy, retry),
    el("div", { class: "media" }, audio, download),
  );
  return { li, sig: "", parts: { name, time, meta, status, badge, text, why, whyText, detail, copy, retry, audio, download } };
}

function fillRow(row, j) {
  const p = row.parts;
  const label = j.external_id || j.filename || j.id;
  p.name.textContent = label;
  p.time.textContent = when(j.created_at);
  p.time.setAttribute("datetime", new Date(j.created_at * 1000).toISOString());
  p.meta.textContent = [duration(j.duration), languageName(j.language)].filter(Boolean).join(" · ");
  // A long recording in progress says how far it has got: "Transcribing… 42% (4:12 / 10:03)".
  const pr = j.status === "running" && j.progress;
  p.status.textContent = (T[j.status] || j.status) + (pr
    ? " " + Math.round(100 * pr.fraction) + "% (" + duration(pr.audio_seconds_done) + " / " + duration(pr.audio_seconds) + ")"
    : "");
  p.status.className = "status " + j.status;
  row.li.className = "job " + j.status;
  const done = j.status === "done";
  row.li.dataset.text = done ? (j.text || "") : "";
  if (done) fillText(p, j);
  else p.text.textContent = "";
  p.text.hidden = !done;
  const needed = done && j.review && j.review.needed;
  p.badge.hidden = !needed;
  row.li.classList.toggle("review", Boolean(needed));
  if (needed) {
    p.badge.textContent = T.listen + ": " + reviewText(j.review);
  }
  const skipped = needed && j.review.skipped_speech && j.review.skipped_speech[0];
  if (skipped) p.badge.dataset.start = String(skipped.start);
  else delete p.badge.dataset.start;
  p.badge.classList.toggle("seek", Boolean(skipped));
  p.copy.hidden = !done || !j.text;
  const failed = j.status === "failed";
  p.why.hidden = !failed;
  p.retry.hidden = !failed;
  if (failed) {
    p.whyText.textContent = reason(j);
    // The service's own words are English: shown beside a translated reason only on the
    // English page.
    p.detail.textContent = lang === "en" && j.error && j.error.message && T.err[j.error.code]
      ? "(" + j.error.message + ")" : "";
    p.retry.disabled = false;
    p.retry.textContent = T.retry;
  }
  p.audio.setAttribute("aria-label", T.play + ": " + label);
  // Swap a signed URL only while not playing, so an hourly refresh never cuts playback.
  if (p.audio.getAttribute("src") !== j.audio_url && p.audio.paused) p.audio.src = j.audio_url;
  p.download.href = j.audio_url;
  p.download.setAttribute("download", j.filename || j.id);
}

function render(jobs, filtered) {
  const list = $("list");
  const seen = new Set();
  let prev = null;
  for (const j of jobs) {
    seen.add(j.id);
    let row = state.rows.get(j.id);
    if (!row) {
      row = buildRow(j);
      state.rows.set(j.id, row);
    }
    const sig = signature(j);
    if (row.sig !== sig) {
      fillRow(row, j);
      row.sig = sig;
    }
    // Move a row only when it is out of place: moving a node pauses its player.
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== row.li) list.insertBefore(row.li, want);
    prev = row.li;
  }
  for (const [id, row] of state.rows) {
    if (!seen.has(id)) {
      row.li.remove();
      state.rows.delete(id);
    }
  }
  $("empty").hidden = jobs.length > 0;
  $("empty").textContent = filtered ? T.empty_filtered : T.empty;
  // A link from the Telegram bot's operators' chat, /#job=ID: that note, marked, in view.
  const focus = (location.hash.match(/^#job=([0-9A-Za-z-]{1,64})$/) || [])[1];
  if (focus && state.focused !== focus && state.rows.has(focus)) {
    state.focused = focus;
    const li = state.rows.get(focus).li;
    li.classList.add("focus");
    li.scrollIntoView({ block: "center" });
  }
}

function query() {
  const p = new URLSearchParams({ limit: String(state.limit) });
  const q = $("q").value.trim();
  const status = $("status").value;
  if (q) p.set("q", q);
  if (status === "review") p.set("review", "needed");
  else if (status) p.set("status", status);
  return { url: "/v1/jobs?" + p.toString(), filtered: Boolean(q || status) };
}

async function poll() {
  clearTimeout(state.timer);
  if (state.busy) return schedule();
  state.busy = true;
  const { url, filtered } = query();
  try {
    const body = await api(url);
    // The filters may have changed while this request was out: only the latest counts.
    if (query().url === url) {
      render(body.data, filtered);
      $("more").hidden = !body.has_more;
    }
    $("conn").textContent = T.live;
    $("conn").className = "conn live";
  } catch (e) {
    if (e instanceof Unauthorized) {
      state.busy = false;
      return showLogin(state.key ? T.key_wrong : "");
    }
    $("conn").textContent = T.offline;
    $("conn").className = "conn offline";
  }
  state.busy = false;
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, document.hidden ? POLL_HIDDEN_MS : POLL_MS);
}

// ---- uploads ---------------------------------------------------------------------------------

function upload(file) {
  const bar = el("progress", { max: 100, value: 0 });
  const msg = el("span", { class: "msg", text: T.uploading });
  const item = el("li", {}, el("span", { class: "name", dir: "auto", text: file.name }), bar, msg);
  bar.setAttribute("aria-label", T.uploading + ": " + file.name);
  $("uploads").append(item);
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/jobs");
  if (state.key) xhr.setRequestHeader("Authorization", "Bearer " + state.key);
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
  });
  xhr.addEventListener("load", () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 401) return showLogin(T.key_wrong);
    if (xhr.status >= 200 && xhr.status < 300) {
      bar.value = 100;
      msg.textContent = T.uploaded;
      item.className = "ok";
      setTimeout(() => item.remove(), 4000);
    } else {
      item.className = "failed";
      msg.textContent = T.upload_failed + ": " +
        ((body.error && (T.err[body.error.code] || body.error.message)) || xhr.statusText);
    }
    poll();
  });
  xhr.addEventListener("error", () => {
    item.className = "failed";
    msg.textContent = T.upload_failed + ": " + T.offline;
  });
  xhr.send(form);
}

function uploadAll(files) {
  for (const f of files) upload(f);
}

// ---- start -----------------------------------------------------------------------------------

function showLogin(message) {
  clearTimeout(state.timer);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !state.key;
  poll();
}

function translate() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-t]")) {
    const s = T[e.dataset.t];
    if (typeof s === "string") e.textContent = s;
  }
  $("list").setAttribute("aria-label", T.list_label);
  $("langs").setAttribute("aria-label", T.lang_switch);
  for (const b of document.querySelectorAll("#langs button")) {
    b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
    b.addEventListener("click", () => {
      if (b.dataset.lang === lang) return;
      try { localStorage.setItem(LANG_KEY, b.dataset.lang); } catch (_) { /* this page only */ }
      location.reload(); // the key stays: it is in this tab's sessionStorage
    });
  }
}

function init() {
  translate();
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("earshot.key", state.key);
    $("key").value = "";
    showApp();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem("earshot.key");
    state.key = "";
    for (const row of state.rows.values()) row.li.remove();
    state.rows.clear();
    showLogin("");
  });
  $("files").addEventListener("change", (e) => {
    uploadAll(e.target.files);
    e.target.value = "";
  });
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) uploadAll(e.dataTransfer.files);
  });
  // A file dropped anywhere else must not navigate away from the inbox.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  let typing = null;
  $("q").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(poll, 250); });
  $("status").addEventListener("change", poll);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); poll(); });
  $("more").addEventListener("click", () => { state.limit = Math.min(state.limit + PAGE, 1000); poll(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  showApp();
}

document.addEventListener("DOMContentLoaded", init);

// mlpoc pages: plain JavaScript over the JSON API. The API key stays in this tab (sessionStorage).
"use strict";

const page = document.body.dataset.page;
const model = document.body.dataset.model;
const statusBox = document.getElementById("status");

function say(text, kind) {
  statusBox.textContent = text;
  statusBox.className = kind || "";
}

function key() { return sessionStorage.getItem("mlpoc-key"); }

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "X-API-Key": key() || "", "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) { askForKey("That API key was not accepted."); throw new Error("unauthorized"); }
  if (!response.ok) { throw new Error((data.error && data.error.message) || response.statusText); }
  return data;
}

function askForKey(message) {
  sessionStorage.removeItem("mlpoc-key");
  document.getElementById("key-form").hidden = false;
  document.getElementById("forget-key").hidden = true;
  say(message || "Enter the API key to start.");
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  Object.entries(attributes || {}).forEach(([name, value]) => {
    if (name === "class") node.className = value; else if (name.startsWith("on")) node.addEventListener(name.slice(2), value); else node.setAttribute(name, value);
  });
  children.flat().forEach((child) => node.append(child instanceof Node ? child : document.createTextNode(String(child))));
  return node;
}

function when(seconds) { return seconds ? new Date(seconds * 1000).toLocaleString() : ""; }

// -- review predictions --------------------------------------------------------------------
let classes = [];
let featureNames = [];
const corrected = new Set();

// an image when the features are a square of numbers (the digits), else the row's cells
const isImage = (features) => features.length >= 16 && Number.isInteger(Math.sqrt(features.length))
  && features.every((v) => typeof v === "number");

function cells(features) {
  return el("dl", { class: "cells" }, ...features.slice(0, 12).flatMap((value, i) => [
    el("dt", {}, featureNames[i] || `column ${i + 1}`),
    el("dd", {}, value === null ? "(blank)" : String(value)),
  ]));
}

function drawDigit(canvas, features) {
  const side = Math.round(Math.sqrt(features.length));
  canvas.width = side; canvas.height = side;
  const context = canvas.getContext("2d");
  const image = context.createImageData(side, side);
  const top = Math.max(...features, 1);
  features.forEach((value, i) => {
    const shade = Math.round(255 * value / top);
    image.data.set([shade, shade, shade, 255], i * 4);
  });
  context.putImageData(image, 0, 0);
}

function card(item) {
  let canvas = el("canvas", { "aria-label": `item ${item.item_id}` });
  if (item.features && isImage(item.features)) drawDigit(canvas, item.features);
  else if (item.features) canvas = cells(item.features);
  const node = el("article", { class: "card", "data-item": item.item_id });
  const save = async (label, button) => {
    try {
      await api("POST", `/v1/annotations/${model}`, { item_id: item.item_id, label });
      node.classList.add("done");
      node.querySelectorAll("button").forEach((b) => b.classList.remove("chosen"));
      button.classList.add("chosen");
      corrected.add(item.item_id);
      document.getElementById("done-count").textContent = `${corrected.size} corrected`;
      document.getElementById("retrain").disabled = corrected.size === 0;
      say(`Saved: ${item.item_id} is a ${label}.`, "ok");
    } catch (error) { say(error.message, "error"); }
  };
  const confirm = el("button", { class: "confirm", onclick: (e) => save(item.label, e.currentTarget) }, `Yes, it is a ${item.label}`);
  const choices = el("div", { class: "choices" }, classes.map((label) =>
    el("button", { "data-label": label, onclick: (e) => save(label, e.currentTarget), title: `It is a ${label}` }, label)));
  node.append(
    canvas,
    el("div", { class: "guess" }, el("span", {}, "Model says ", el("b", {}, item.label)),
      el("span", { class: "confidence" }, `${Math.round(item.confidence * 100)}% sure`)),
    confirm, el("small", {}, "or pick the right label:"), choices,
  );
  return node;
}

async function annotate() {
  const detail = await api("GET", `/v1/models/${model}`);
  const promoted = detail.versions.find((v) => v.version === detail.promoted);
  classes = promoted ? promoted.classes : [];
  featureNames = promoted ? promoted.features : [];
  const queue = await api("GET", `/v1/annotations/${model}?limit=24`);
  const cards = document.getElementById("cards");
  cards.replaceChildren(...queue.items.map(card));
  document.getElementById("empty").hidden = queue.items.length > 0;
  say(queue.items.length ? `${queue.items.length} predictions need a look. The least sure come first.` : "");
  document.getElementById("retrain").onclick = async (event) => {
    event.currentTarget.disabled = true;
    try {
      const job = await api("POST", `/v1/annotations/${model}/retrain`);
      say(`Training started with ${job.corrections} corrections: job ${job.job_id}. Follow it on the Jobs page.`, "ok");
      statusBox.append(" ", el("a", { href: "/ui/jobs", id: "job-link" }, "Open Jobs"));
    } catch (error) { say(error.message, "error"); event.currentTarget.disabled = false; }
  };
}

// -- models ---------------------------------------------------------------------------------
// the API draws each chart as SVG; fetched with the key, parsed as SVG (never as HTML)
async function chart(box, path) {
  const response = await fetch(path, { headers: { "X-API-Key": key() || "" } });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    box.replaceChildren(el("p", { class: "empty" }, (data.error && data.error.message) || response.statusText));
    return;
  }
  const svg = new DOMParser().parseFromString(await response.text(), "image/svg+xml").documentElement;
  box.replaceChildren(document.importNode(svg, true));
}

function options(select, versions, chosen) {
  select.replaceChildren(...versions.map((v) => el("option", { value: v }, `v${v}`)));
  select.value = String(chosen);
}

async function models() {
  const [detail, quality] = await Promise.all([
    api("GET", `/v1/models/${model}`), api("GET", `/v1/models/${model}/quality`)]);
  const realized = Object.fromEntries(quality.realized.map((r) => [r.version, r]));
  const rows = detail.versions.slice().reverse().map((v) => el("tr", {},
    el("td", {}, `v${v.version} `, v.version === detail.promoted ? el("span", { class: "badge promoted" }, "serving") : ""),
    el("td", {}, scores(v.metrics)),
    el("td", {}, realized[v.version] ? `${(realized[v.version].realized * 100).toFixed(1)}% of ${realized[v.version].reviewed}` : "not reviewed"),
    el("td", {}, when(v.created_at)),
    el("td", {}, v.job_id, v.feature_set ? ` (features: ${v.feature_set.name} v${v.feature_set.version})` : ""),
    el("td", {}, v.version === detail.promoted ? "" : el("button", { onclick: async () => {
      try { await api("POST", `/v1/models/${model}/promote`, { version: v.version }); say(`v${v.version} is now serving.`, "ok"); models(); }
      catch (error) { say(error.message, "error"); }
    } }, "Promote")),
  ));
  document.getElementById("versions").replaceChildren(...rows);
  // a model trained with a feature set: the version its requests by key read, and why not another
  const bound = detail.features;
  document.getElementById("features-summary").replaceChildren(...(bound
    ? ["Requests by key read feature set ", el("a", { href: `/ui/features/${bound.set}` }, bound.set),
      ` v${bound.version} (trained with v${bound.trained_with}, key ${bound.key}).` + (bound.note ? ` ${bound.note}.` : "")]
    : []));
  document.getElementById("rollback").onclick = async () => {
    try { const p = await api("POST", `/v1/models/${model}/rollback`); say(`Rolled back: v${p.promoted} is serving.`, "ok"); models(); }
    catch (error) { say(error.message, "error"); }
  };
  const numbers = detail.versions.map((v) => v.version).sort((a, b) => a - b);
  const live = detail.promoted || numbers[numbers.length - 1];
  const base = `/v1/models/${model}/charts`;
  const confusion = document.getElementById("confusion-version");
  const [a, b] = [document.getElementById("compare-a"), document.getElementById("compare-b")];
  options(confusion, numbers, live);
  options(a, numbers, numbers.length > 1 ? numbers[numbers.length - 2] : live);
  options(b, numbers, numbers[numbers.length - 1]);
  confusion.onchange = () => chart(document.getElementById("chart-confusion"), `${base}/confusion.svg?version=${confusion.value}`);
  a.onchange = b.onchange = () => chart(document.getElementById("chart-compare"), `${base}/compare.svg?a=${a.value}&b=${b.value}`);
  const drawn = [
    chart(document.getElementById("chart-metric"), `${base}/metric.svg`),
    chart(document.getElementById("chart-realized"), `${base}/realized.svg?version=${live}`),
    confusion.onchange(), a.onchange(),
  ];
  const report = quality.monitor;
  const summary = document.getElementById("monitor-summary");
  const drift = document.getElementById("chart-drift");
  if (!report) {
    summary.textContent = `No monitor report yet: run \`mlpoc monitor run ${model}\`, or schedule it (mlpoc:monitor).`;
    drift.replaceChildren();
  } else {
    const judged = report.versions.filter((v) => v.judged);
    summary.textContent = `Monitor run ${when(report.created_at)}: ` + (report.versions.length ? report.versions.map((v) => v.judged
      ? `v${v.version}: ${v.drifting.length} drifting feature(s) of ${Object.keys(v.features).length} over ${v.rows} rows${v.drift ? " (drift)" : ""}`
      : `v${v.version}: ${v.why}`).join("; ") : "no recent inputs in its window") + (report.alerts.length ? `. Alerts: ${report.alerts.join(" ")}` : ".");
    const boxes = judged.flatMap((v) => v.drifting.slice(0, 6).map((feature) => {
      const box = el("figure", { class: "chart-box drift", "data-feature": feature });
      drawn.push(chart(box, `${base}/drift.svg?version=${v.version}&feature=${encodeURIComponent(feature)}`));
      return box;
    }));
    drift.replaceChildren(...boxes);
  }
  await Promise.all(drawn);
}

// -- feature sets ---------------------------------------------------------------------------
// "64 numbers, 1 category: ink": how many of each type, the categories by name
function columnTypes(columns) {
  const numbers = columns.filter((c) => c.type === "number").length;
  const categories = columns.filter((c) => c.type === "category").map((c) => c.name);
  const shown = categories.slice(0, 8).join(", ") + (categories.length > 8 ? ", …" : "");
  return [numbers ? `${numbers} number${numbers === 1 ? "" : "s"}` : "",
    categories.length ? `${categories.length} categor${categories.length === 1 ? "y" : "ies"}: ${shown}` : ""]
    .filter(Boolean).join(", ");
}

async function features() {
  const detail = await api("GET", `/v1/features/${model}`);
  const rows = detail.versions.slice().reverse().map((v) => el("tr", { "data-version": v.version },
    el("td", {}, `v${v.version} `, v.version === detail.promoted ? el("span", { class: "badge promoted" }, "promoted") : "",
      v.expires_at ? el("span", { class: "badge" }, "expiring") : ""),
    el("td", {}, v.key),
    el("td", {}, columnTypes(v.columns)),
    el("td", {}, String(v.rows)),
    el("td", {}, when(v.created_at)),
    el("td", {}, v.job_id),
    el("td", {}, v.version === detail.promoted || v.expires_at ? "" : el("button", { onclick: async () => {
      try { await api("POST", `/v1/features/${model}/promote`, { version: v.version }); say(`v${v.version} is now promoted.`, "ok"); features(); }
      catch (error) { say(error.message, "error"); }
    } }, "Promote")),
  ));
  document.getElementById("feature-versions").replaceChildren(...rows);
  document.getElementById("rollback").onclick = async () => {
    try { const p = await api("POST", `/v1/features/${model}/rollback`); say(`Rolled back: v${p.promoted} is promoted.`, "ok"); features(); }
    catch (error) { say(error.message, "error"); }
  };
  const readers = Object.entries(detail.read_by);
  document.getElementById("read-by").replaceChildren(...(readers.length ? readers.map(([name, bound]) => el("li", { "data-model": name },
    el("a", { href: `/ui/models/${name}` }, name), ` reads v${bound.version} (trained with v${bound.trained_with})`, bound.note ? `: ${bound.note}` : ""))
    : [el("li", {}, "No model this API holds reads it yet (a model is held from its first request).")]));
}

// -- jobs -----------------------------------------------------------------------------------
// held-out metrics as people read them: shares as percentages, errors as numbers
function score(name, value) {
  return ["accuracy", "macro_f1"].includes(name) ? `${name} ${(value * 100).toFixed(1)}%` : `${name} ${Number(value.toPrecision(4))}`;
}
const scores = (metrics) => Object.entries(metrics).map(([name, value]) => score(name, value)).join(" · ");

function outcome(result) {
  if (!result) return "";
  if (result.metrics) {
    const metric = result.metric || "accuracy";
    const compared = result.compared && result.compared.live_score !== undefined
      ? `; v${result.compared.live} ${score(metric, result.compared.live_score)} on the same rows` : "";
    return score(metric, result.metrics[metric]) + compared + (result.promoted ? " (promoted)" : "");
  }
  if (result.report) return `${result.rows} recent rows; ${result.drifting_versions.length ? `drift in v${result.drifting_versions.join(", v")}` : "no drift"}; ${result.alerts} alert(s)`;
  if (result.rows !== undefined) return `${result.rows} predictions${result.shards ? ` in ${result.shards} shards` : ""}`;
  return "";
}

async function jobs() {
  const list = await api("GET", "/v1/jobs?limit=50");
  document.getElementById("jobs").replaceChildren(...list.jobs.map((job) => el("tr", { "data-job": job.job_id },
    el("td", {}, job.job_id), el("td", {}, job.type || ""), el("td", {}, job.model || ""),
    el("td", {}, el("span", { class: `badge ${job.status}` }, job.status),
      job.shards ? el("span", { class: "shards" }, ` ${job.shards.done}/${job.shards.total} shards`) : ""),
    el("td", {}, job.attempts ?? ""), el("td", {}, when(job.created_at)),
    el("td", { class: "reason" }, job.reason || outcome(job.result)),
  )));
}

// -- start ----------------------------------------------------------------------------------
const pages = { annotate, models, features, jobs };

async function start() {
  if (!key()) { askForKey(); return; }
  document.getElementById("key-form").hidden = true;
  document.getElementById("forget-key").hidden = false;
  say("");
  try {
    await pages[page]();
    if (page === "jobs") setInterval(() => jobs().catch(() => {}), 2000);
  } catch (error) { if (error.message !== "unauthorized") say(error.message, "error"); }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("mlpoc-key", document.getElementById("key").value.trim());
  start();
});
document.getElementById("forget-key").addEventListener("click", () => askForKey("Key forgotten."));
start();

// The drawing page: pointer events (mouse, pen, touch) on a canvas, a debounced
// POST of the drawing as PNG to /api/featuremaps, and the answer drawn as bars
// and feature maps. No framework, no external assets.
"use strict";

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const DEBOUNCE_MS = 150;
let drawing = false;
let last = null;
let timer = null;
let inflight = false;
let pending = false;

// data-busy on <body>: "1" from the first stroke until the answer for the
// latest drawing is shown, "0" otherwise (for scripts and tests that wait).
function setBusy(b) { document.body.dataset.busy = b ? "1" : "0"; }
setBusy(false);

function clearCanvas() {
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

function point(ev) {
  const r = canvas.getBoundingClientRect();
  return { x: (ev.clientX - r.left) * canvas.width / r.width,
           y: (ev.clientY - r.top) * canvas.height / r.height };
}

function stroke(a, b) {
  ctx.strokeStyle = "#000000";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
}

canvas.addEventListener("pointerdown", (ev) => {
  ev.preventDefault();
  canvas.setPointerCapture(ev.pointerId);
  drawing = true;
  last = point(ev);
  stroke(last, last);
  schedule();
});
canvas.addEventListener("pointermove", (ev) => {
  if (!drawing) return;
  ev.preventDefault();
  const p = point(ev);
  stroke(last, p);
  last = p;
  schedule();
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
  canvas.addEventListener(name, () => {
    if (drawing) { drawing = false; schedule(); }
  });
}

document.getElementById("clear").addEventListener("click", () => {
  clearCanvas();
  document.getElementById("prediction").textContent = "-";
  document.getElementById("prediction").dataset.class = "";
  document.getElementById("confidence").textContent = "";
  document.getElementById("probabilities").innerHTML = "";
  document.getElementById("layers").innerHTML = "";
});

document.getElementById("upload").addEventListener("change", (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  if (file.type.startsWith("audio/") || file.name.toLowerCase().endsWith(".wav")) {
    clearCanvas();
    send(file);  // a recording, for a sound model: the server reads it
    return;
  }
  const img = new Image();
  img.onload = () => {
    clearCanvas();
    const s = Math.min(canvas.width / img.width, canvas.height / img.height);
    const w = img.width * s, h = img.height * s;
    ctx.drawImage(img, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(img.src);
    send(file);  // the original file: the server does the resizing
  };
  img.onerror = () => showError("this file is not an image the browser can read");
  img.src = URL.createObjectURL(file);
});

function schedule() {
  setBusy(true);
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    canvas.toBlob((blob) => send(blob), "image/png");
  }, DEBOUNCE_MS);
}

async function send(blob) {
  setBusy(true);
  if (inflight) { pending = true; return; }  // one request at a time; the latest drawing wins
  inflight = true;
  try {
    const resp = await fetch("/api/featuremaps", {
      method: "POST",
      headers: { "Content-Type": blob.type || "application/octet-stream" },
      body: blob,
    });
    const data = await resp.json();
    if (!resp.ok) { showError(data.error || resp.statusText); return; }
    showError("");
    render(data);
  } catch (err) {
    showError(String(err));
  } finally {
    inflight = false;
    if (pending) { pending = false; schedule(); }
    else if (timer === null) setBusy(false);  // no newer drawing waiting
  }
}

function showError(msg) {
  document.getElementById("error").textContent = msg;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(data) {
  const pred = document.getElementById("prediction");
  pred.textContent = data.top.class;
  pred.dataset.class = data.top.class;
  document.getElementById("confidence").textContent =
    "(" + (100 * data.top.probability).toFixed(1) + "%)";
  const table = document.getElementById("probabilities");
  table.innerHTML = "";
  data.classes.forEach((name, i) => {
    const p = data.probabilities[i];
    const tr = el("tr", { id: "prob-" + i, "data-class": name });
    if (i === data.top.index) tr.className = "top";
    tr.appendChild(el("td", {}, name));
    const bar = el("td");
    bar.appendChild(el("span", { class: "bar", style: "width:" + Math.round(200 * p) + "px" }));
    tr.appendChild(bar);
    tr.appendChild(el("td", {}, p.toFixed(3)));
    table.appendChild(tr);
  });
  let overlay = document.getElementById("overlay");  // segmentation models: classes over the image
  if (data.overlay) {
    if (!overlay) {
      overlay = el("img", { id: "overlay", alt: "predicted classes over the image" });
      document.getElementById("result-panel").appendChild(overlay);
    }
    overlay.src = data.overlay;
  }
  const layers = document.getElementById("layers");
  layers.innerHTML = "";
  const first = el("div", { class: "layer" });
  first.appendChild(el("h3", {}, "input (preprocessed)"));
  const firstMaps = el("div", { class: "maps" });
  firstMaps.appendChild(el("img", { src: data.input, alt: "input" }));
  first.appendChild(firstMaps);
  layers.appendChild(first);
  for (const layer of data.layers) {
    const div = el("div", { class: "layer" });
    div.appendChild(el("h3", {}, layer.name + ": " + layer.type + " → " + layer.shape.join("×")));
    // A Concat's maps are its branches' maps stacked: the branch rows show them all.
    if (!(layer.branches && layer.type === "Concat")) div.appendChild(mapsOf(layer));
    if (layer.branches) div.appendChild(branchRows(layer.branches));
    layers.appendChild(div);
  }
}

function mapsOf(layer) {
  const maps = el("div", { class: "maps" });
  layer.maps.forEach((src, i) => maps.appendChild(el("img", { src: src, alt: layer.name + " map " + i })));
  return maps;
}

// One labelled row per branch of a merge (Concat, Add, Residual), nested for nested merges.
function branchRows(branches) {
  const box = el("div", { class: "branches" });
  branches.forEach((b, i) => {
    const row = el("div", { class: "branch", id: "branch-" + b.name.replace(/\./g, "-") });
    row.appendChild(el("h4", {}, "branch " + (i + 1) + " of " + branches.length + " (" + b.name +
      "): " + b.label + " → " + b.shape.join("×")));
    row.appendChild(b.branches ? branchRows(b.branches) : mapsOf(b));
    box.appendChild(row);
  });
  return box;
}

async function loadModel() {
  try {
    const resp = await fetch("/api/model");
    const info = await resp.json();
    document.getElementById("model-info").textContent =
      "input " + info.input_shape.join("×") + ", classes: " + info.class_names.join(", ");
  } catch (err) {
    showError("cannot reach the server: " + err);
  }
}

clearCanvas();
loadModel();

// nodule-search viewer: plain JS against the service's own API (no external assets).
// World coordinates are mm in the ITK/LPS frame; axial views from /v1/scans/{uid}/axial.png are
// world-aligned, so a click maps to world x/y by the scan's extent and the pixel size.
"use strict";

const COLOURS = { 1: "#2c7bb6", 2: "#74add1", 4: "#f46d43", 5: "#d7191c" };
const NO_LABEL = "#9ca3af";
const state = { scan: null, pixelMm: null, map: [], highlight: { query: null, neighbours: [] } };

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function describeFailure(response) {
  // Every error body of the API is {"detail": "..."}; fall back to the status line.
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return `${response.status}: ${body.detail}`;
  } catch (e) { /* not JSON */ }
  return `${response.status}: ${response.statusText || "request failed"}`;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error(`the service cannot be reached (${e.message})`);
  }
  if (!response.ok) throw new Error(await describeFailure(response));
  return response;
}

function fmt(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function esc(text) {
  const div = document.createElement("div");
  div.textContent = String(text);
  return div.innerHTML;
}

// ---- tabs ----------------------------------------------------------------------------------
function selectTab(name) {
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("form[data-pane]").forEach((f) => { f.hidden = f.dataset.pane !== name; });
}

// ---- scans and the axial view ----------------------------------------------------------------
async function loadScans() {
  const list = await (await api("/v1/scans?limit=1000")).json();
  const select = $("scan-select");
  select.innerHTML = "";
  for (const scan of list.scans) {
    const option = document.createElement("option");
    option.value = scan.series_uid;
    option.textContent = `${scan.patient_id || "?"} · …${scan.series_uid.slice(-12)} (${scan.n_nodules} nodules)`;
    select.appendChild(option);
  }
  if (list.scans.length) await openScan(list.scans[0].series_uid);
}

async function openScan(uid, point) {
  const scan = await (await api(`/v1/scans/${encodeURIComponent(uid)}`)).json();
  state.scan = scan;
  $("scan-select").value = uid;
  const slider = $("z-slider");
  slider.min = scan.extent_min_xyz[2];
  slider.max = scan.extent_max_xyz[2];
  slider.step = scan.spacing_xyz[2];
  const chips = $("scan-nodules");
  chips.innerHTML = scan.nodules.length ? "Indexed nodules: " : "No indexed nodules in this scan.";
  for (const n of scan.nodules) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `#${n.id} · ${fmt(n.diameter_mm)} mm`;
    b.addEventListener("click", () => setPoint(n.center_xyz));
    chips.appendChild(b);
  }
  const start = point || (scan.nodules.length ? scan.nodules[0].center_xyz : [
    (scan.extent_min_xyz[0] + scan.extent_max_xyz[0]) / 2,
    (scan.extent_min_xyz[1] + scan.extent_max_xyz[1]) / 2,
    (scan.extent_min_xyz[2] + scan.extent_max_xyz[2]) / 2,
  ]);
  await setPoint(start);
}

async function showSlice(z) {
  if (!state.scan) return;
  const uid = encodeURIComponent(state.scan.series_uid);
  const response = await api(`/v1/scans/${uid}/axial.png?z=${z}`);
  state.pixelMm = Number(response.headers.get("X-Pixel-MM"));
  const img = $("axial");
  const url = URL.createObjectURL(await response.blob());
  await new Promise((resolve) => { img.onload = resolve; img.src = url; });
  placeCrosshair();
}

function placeCrosshair() {
  const img = $("axial");
  const mark = $("crosshair");
  if (!state.scan || !state.pixelMm || !img.naturalWidth) { mark.hidden = true; return; }
  const x = Number($("x").value), y = Number($("y").value);
  const col = (x - state.scan.extent_min_xyz[0]) / state.pixelMm;
  const row = (y - state.scan.extent_min_xyz[1]) / state.pixelMm;
  mark.style.left = `${(col + 0.5) * img.clientWidth / img.naturalWidth}px`;
  mark.style.top = `${(row + 0.5) * img.clientHeight / img.naturalHeight}px`;
  mark.hidden = false;
}

async function setPoint(xyz) {
  $("x").value = Number(xyz[0]).toFixed(2);
  $("y").value = Number(xyz[1]).toFixed(2);
  $("z").value = Number(xyz[2]).toFixed(2);
  $("z-slider").value = xyz[2];
  await showSlice(xyz[2]);
}

function clickOnSlice(event) {
  const img = $("axial");
  if (!state.scan || !state.pixelMm) return;
  const col = event.offsetX * img.naturalWidth / img.clientWidth - 0.5;
  const row = event.offsetY * img.naturalHeight / img.clientHeight - 0.5;
  $("x").value = (state.scan.extent_min_xyz[0] + col * state.pixelMm).toFixed(2);
  $("y").value = (state.scan.extent_min_xyz[1] + row * state.pixelMm).toFixed(2);
  $("z").value = Number($("z-slider").value).toFixed(2);
  placeCrosshair();
}

// ---- results --------------------------------------------------------------------------------
function renderVote(vote) {
  const box = $("vote");
  if (!vote.n_labelled) {
    box.innerHTML = "No labelled neighbour: no vote.";
    return;
  }
  const p = vote.malignant_probability;
  const majority = vote.binary === 1 ? "malignant (ratings 4–5)" : "benign (ratings 1–2)";
  let dist = "";
  for (const r of ["1", "2", "4", "5"]) {
    const share = vote.four_class[r] || 0;
    dist += `<span>${r}</span><div class="bar"><div style="width:${share * 100}%;background:${COLOURS[r]}"></div></div><span>${Math.round(share * 100)}%</span>`;
  }
  box.innerHTML = `
    <div data-testid="vote-probability">Similarity-weighted malignant share: <b>${fmt(p * 100, 0)}%</b>
      of ${vote.n_labelled} labelled neighbours</div>
    <div class="bar" title="${fmt(p, 2)}"><div style="width:${p * 100}%"></div></div>
    <div>Majority: <b>${majority}</b></div>
    <div class="dist">${dist}</div>
    <div class="disclaimer">Decision support from similar cases, not a diagnosis.</div>`;
}

function renderNeighbours(neighbors) {
  const box = $("neighbors");
  box.innerHTML = "";
  for (const n of neighbors) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.testid = "neighbor-card";
    card.setAttribute("data-testid", "neighbor-card");
    const l = n.labels;
    const ratings = l ? l.ratings.join(", ") : "no reads";
    const label = l && l.label_binary !== null
      ? `${l.label_binary ? "malignant" : "benign"} · class ${l.label_4class}`
      : "no label";
    card.innerHTML = `
      <img src="/v1/nodules/${n.id}/preview.png" alt="nodule ${n.id}" loading="lazy">
      <div>
        <b>#${n.id}</b> · similarity <b>${fmt(n.similarity, 3)}</b><br>
        ${fmt(n.diameter_mm)} mm · patient ${esc(n.patient_id || "?")}<br>
        readers' malignancy: ${esc(ratings)}${l && l.mean !== null ? ` (mean ${fmt(l.mean, 2)})` : ""}<br>
        ${label}
      </div>`;
    card.addEventListener("click", () => searchNodule(n.id));
    box.appendChild(card);
  }
}

function renderResult(result, previewUrl) {
  const q = result.query;
  const where = q.nodule_id !== null && q.nodule_id !== undefined
    ? `indexed nodule #${q.nodule_id}`
    : q.series_uid ? `series …${esc(q.series_uid.slice(-12))}` : "uploaded volume";
  const centre = q.center_xyz ? q.center_xyz.map((v) => fmt(v, 1)).join(", ") : "?";
  $("query-info").innerHTML = `${where} at (${centre}) mm · catalogue ${esc(q.index_version)}`;
  const img = $("query-preview");
  if (previewUrl) { img.src = previewUrl; img.hidden = false; } else { img.hidden = true; }
  renderVote(result.vote);
  renderNeighbours(result.neighbors);
  // A point query has no place of its own on the map; when its nearest neighbour is the very same
  // nodule (similarity ~1), that catalogue nodule stands for the query.
  let queryId = q.nodule_id ?? null;
  const first = result.neighbors[0];
  if (queryId === null && first && first.similarity > 0.9999) queryId = first.id;
  state.highlight = { query: queryId, neighbours: result.neighbors.map((n) => n.id).filter((id) => id !== queryId) };
  drawMap();
}

async function searchPoint(event) {
  event.preventDefault();
  clearError();
  const center = ["x", "y", "z"].map((id) => Number($(id).value));
  const body = {
    series_uid: state.scan ? state.scan.series_uid : $("scan-select").value,
    center_xyz: center,
    k: Number($("k").value) || 5,
    filters: { labelled_only: $("labelled-only").checked },
  };
  try {
    const response = await api("/v1/search/coordinate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const uid = encodeURIComponent(body.series_uid);
    renderResult(await response.json(), `/v1/scans/${uid}/preview.png?center_xyz=${center.join(",")}`);
  } catch (e) { showError(e.message); }
}

async function searchUpload(event) {
  event.preventDefault();
  clearError();
  const file = $("upload-file").files[0];
  if (!file) { showError("choose a file to upload"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  if ($("upload-center").value.trim()) form.append("center_xyz", $("upload-center").value);
  if ($("upload-spacing").value.trim()) form.append("spacing_zyx", $("upload-spacing").value);
  form.append("k", $("upload-k").value || "5");
  form.append("preview", "true");
  try {
    const result = await (await api("/v1/search/upload", { method: "POST", body: form })).json();
    const png = result.query.preview_png_base64;
    renderResult(result, png ? `data:image/png;base64,${png}` : null);
  } catch (e) { showError(e.message); }
}

async function searchNodule(id) {
  clearError();
  try {
    const k = Number($("k").value) || 5;
    const result = await (await api(`/v1/nodules/${Number(id)}/similar?k=${k}`)).json();
    renderResult(result, `/v1/nodules/${Number(id)}/preview.png`);
    $("nodule-id").value = id;
  } catch (e) { showError(e.message); }
}

// ---- the map --------------------------------------------------------------------------------
async function loadMap() {
  const map = await (await api("/v1/map")).json();
  state.map = map.points;
  drawMap();
}

function drawMap() {
  const svg = $("map");
  const ns = "http://www.w3.org/2000/svg";
  svg.innerHTML = "";
  const points = state.map;
  if (!points.length) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "20"); text.setAttribute("y", "200");
    text.textContent = "This catalogue version has no map.";
    svg.appendChild(text);
    return;
  }
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (v) => 15 + (v - x0) / ((x1 - x0) || 1) * 370;
  const sy = (v) => 385 - (v - y0) / ((y1 - y0) || 1) * 370;
  const neighbours = new Set(state.highlight.neighbours);
  const ordered = [...points].sort((a, b) => (neighbours.has(a.id) || a.id === state.highlight.query)
    - (neighbours.has(b.id) || b.id === state.highlight.query));
  for (const p of ordered) {
    const c = document.createElementNS(ns, "circle");
    const isQuery = p.id === state.highlight.query, isNeighbour = neighbours.has(p.id);
    c.setAttribute("cx", sx(p.x).toFixed(1));
    c.setAttribute("cy", sy(p.y).toFixed(1));
    c.setAttribute("r", isQuery ? "8" : isNeighbour ? "6" : "4");
    c.setAttribute("fill", COLOURS[p.label_4class] || NO_LABEL);
    c.setAttribute("stroke", isQuery ? "#111" : isNeighbour ? "#16a34a" : "#fff");
    c.setAttribute("stroke-width", isQuery || isNeighbour ? "2.5" : "0.8");
    c.setAttribute("data-testid", "map-point");
    c.setAttribute("data-id", String(p.id));
    c.addEventListener("mousemove", (e) => {
      const tip = $("map-tip");
      tip.textContent = `#${p.id} · ${fmt(p.diameter_mm)} mm · ${p.label_4class ? `class ${p.label_4class}` : "no label"}`;
      tip.style.left = `${e.clientX + 12}px`;
      tip.style.top = `${e.clientY + 12}px`;
      tip.hidden = false;
    });
    c.addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
    c.addEventListener("click", () => searchNodule(p.id));
    svg.appendChild(c);
  }
}

// ---- start ----------------------------------------------------------------------------------
async function start() {
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("scan-select").addEventListener("change", (e) => openScan(e.target.value).catch((err) => showError(err.message)));
  $("z-slider").addEventListener("input", (e) => { $("z").value = Number(e.target.value).toFixed(2); });
  $("z-slider").addEventListener("change", (e) => showSlice(e.target.value).catch((err) => showError(err.message)));
  $("axial").addEventListener("click", clickOnSlice);
  $("axial").addEventListener("wheel", (e) => {
    // Scroll through slices, one voxel step at a time.
    e.preventDefault();
    const slider = $("z-slider");
    const next = Math.min(Number(slider.max), Math.max(Number(slider.min), Number(slider.value) + Math.sign(e.deltaY) * Number(slider.step)));
    slider.value = next;
    $("z").value = next.toFixed(2);
    showSlice(next).catch((err) => showError(err.message));
  }, { passive: false });
  $("point-form").addEventListener("submit", searchPoint);
  $("upload-form").addEventListener("submit", searchUpload);
  $("nodule-form").addEventListener("submit", (e) => { e.preventDefault(); searchNodule($("nodule-id").value); });
  try {
    const info = await (await api("/v1/index")).json();
    $("index-info").textContent = `catalogue ${info.version} · ${info.n_nodules} nodules in ${info.n_scans} scans · ${info.n_labelled} labelled`;
    await Promise.all([loadScans(), loadMap()]);
    document.body.dataset.ready = "true";
  } catch (e) {
    showError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);

// nodule-search viewer: plain JS against the service's own API (no external assets).
// World coordinates are mm in the ITK/LPS frame; axial views from /v1/scans/{uid}/axial.png are
// world-aligned, so a click maps to world x/y by the scan's extent and the pixel size.
"use strict";

const COLOURS = { 1: "#2c7bb6", 2: "#74add1", 4: "#f46d43", 5: "#d7191c" };
const NO_LABEL = "#9ca3af";
// Standard CT display windows (HU); the service windows the PNGs (app/preview.py), so images
// stay 8-bit crisp in every window. Bounds as the API's (422 beyond them).
const PRESETS = {
  lung: { width: 1500, level: -600 },
  mediastinum: { width: 350, level: 50 },
  bone: { width: 1800, level: 400 },
};
const WIDTH_RANGE = [1, 5000];
const LEVEL_RANGE = [-1500, 3000];
// HU per screen pixel of a window/level drag.
const DRAG_WIDTH_PER_PX = 4;
const DRAG_LEVEL_PER_PX = 2;

const state = {
  scan: null,
  pixelMm: null,
  map: [],
  index: null,
  highlight: { query: null, neighbours: [] },
  wl: { width: PRESETS.lung.width, level: PRESETS.lung.level, preset: "lung" },
  // Axial slices: at most one request in flight, the latest wish wins (typing, wheel, drag).
  slice: { wanted: null, inFlight: false, url: null, z: null },
  // Searches: a new one aborts the previous; only the latest one's answer is drawn.
  search: { seq: 0, controller: null },
  result: null,
  drag: null,
  suppressClick: false,
  typing: null,
};

const $ = (id) => document.getElementById(id);

async function describeFailure(response) {
  // Every error body of the API is problem details {"title", "status", "detail"}; fall back to
  // the status line.
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return `${response.status}: ${body.detail}`;
  } catch (e) { /* not JSON */ }
  return `${response.status}: ${response.statusText || "request failed"}`;
}

// A deployment with NODULE_ACCESS_TOKEN answers 401 + "WWW-Authenticate: Bearer": the viewer
// asks for the token once and keeps it for this tab only (sessionStorage).
const TOKEN_KEY = "nodule-search-access-token";

function withToken(options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return options || {};
  const headers = new Headers((options && options.headers) || {});
  headers.set("Authorization", `Bearer ${token}`);
  return { ...(options || {}), headers };
}

async function api(path, options) {
  let response;
  for (let attempt = 0; ; attempt += 1) {
    try {
      response = await fetch(path, withToken(options));
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new Error(`the service cannot be reached (${e.message})`);
    }
    const wantsToken = response.status === 401 && (response.headers.get("WWW-Authenticate") || "").startsWith("Bearer");
    if (!wantsToken || attempt > 0) break;
    const token = window.prompt("This service needs an access token (ask its operator):");
    if (!token) break;
    sessionStorage.setItem(TOKEN_KEY, token.trim());
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

function clamp(value, [low, high]) {
  return Math.min(high, Math.max(low, value));
}

// ---- tabs ----------------------------------------------------------------------------------
function selectTab(name) {
  document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("form[data-pane]").forEach((f) => { f.hidden = f.dataset.pane !== name; });
}

// ---- window / level ----------------------------------------------------------------------------
function wlQuery() {
  return `window=${Math.round(state.wl.width)}&level=${Math.round(state.wl.level)}`;
}

function showWl() {
  document.querySelectorAll("button.wl").forEach((b) => b.classList.toggle("active", b.dataset.preset === state.wl.preset));
  $("wl-readout").textContent = `W ${Math.round(state.wl.width)} / L ${Math.round(state.wl.level)}`;
}

function setWindow(width, level, preset) {
  state.wl = { width: clamp(width, WIDTH_RANGE), level: clamp(level, LEVEL_RANGE), preset: preset || null };
  showWl();
  if (state.slice.z !== null) requestSlice(state.slice.z);
}

function startWlDrag(event) {
  // Right button, or Shift with the left one: the plain left click stays "set the point".
  if (!(event.button === 2 || (event.button === 0 && event.shiftKey))) return;
  event.preventDefault();
  state.drag = { x: event.clientX, y: event.clientY, width: state.wl.width, level: state.wl.level, moved: false };
  $("slice-box").classList.add("wl-drag");
}

function moveWlDrag(event) {
  const drag = state.drag;
  if (!drag) return;
  const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) < 3 && !drag.moved) return;
  drag.moved = true;
  // Right: wider window; down: higher level (darker image), as in most PACS viewers.
  setWindow(drag.width + dx * DRAG_WIDTH_PER_PX, drag.level + dy * DRAG_LEVEL_PER_PX, null);
}

function endWlDrag() {
  const drag = state.drag;
  if (!drag) return;
  state.drag = null;
  $("slice-box").classList.remove("wl-drag");
  if (drag.moved) {
    state.suppressClick = true; // the click that ends a Shift-drag does not set the point
    refreshResultImages();
  }
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
  state.slice.z = null;
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
  setPoint(start);
}

function requestSlice(z) {
  if (!state.scan) return;
  state.slice.wanted = { uid: state.scan.series_uid, z: Number(z), query: wlQuery(), wl: { ...state.wl } };
  if (!state.slice.inFlight) pumpSlices();
}

async function pumpSlices() {
  const img = $("axial");
  state.slice.inFlight = true;
  $("slice-spinner").hidden = false;
  try {
    while (state.slice.wanted) {
      const want = state.slice.wanted;
      state.slice.wanted = null;
      try {
        const uid = encodeURIComponent(want.uid);
        const response = await api(`/v1/scans/${uid}/axial.png?z=${want.z}&${want.query}`);
        const pixel = Number(response.headers.get("X-Pixel-MM"));
        const blob = await response.blob();
        if (!state.scan || want.uid !== state.scan.series_uid) continue; // another scan opened
        const url = URL.createObjectURL(blob);
        await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
        if (state.slice.url) URL.revokeObjectURL(state.slice.url);
        state.slice.url = url;
        state.slice.z = want.z;
        state.pixelMm = pixel;
        // What is on screen, for people and for tests: the slice's world z and its window.
        img.dataset.z = want.z.toFixed(2);
        img.dataset.window = String(Math.round(want.wl.width));
        img.dataset.level = String(Math.round(want.wl.level));
        $("slice-label").textContent = `axial z ${want.z.toFixed(2)} mm · ${img.naturalWidth}×${img.naturalHeight} px at ${pixel.toFixed(2)} mm`;
        placeCrosshair();
      } catch (e) {
        showSliceNotice(`slice: ${e.message || "the image could not be shown"}`);
      }
    }
  } finally {
    state.slice.inFlight = false;
    $("slice-spinner").hidden = true;
  }
}

function placeCrosshair() {
  const img = $("axial");
  const mark = $("crosshair");
  if (!state.scan || !state.pixelMm || !img.naturalWidth) { mark.hidden = true; return; }
  const x = Number($("x").value), y = Number($("y").value);
  const col = (x - state.scan.extent_min_xyz[0]) / state.pixelMm;
  const row = (y - state.scan.extent_min_xyz[1]) / state.pixelMm;
  mark.style.left = `${img.offsetLeft + (col + 0.5) * img.clientWidth / img.naturalWidth}px`;
  mark.style.top = `${img.offsetTop + (row + 0.5) * img.clientHeight / img.naturalHeight}px`;
  mark.hidden = false;
}

function setPoint(xyz) {
  $("x").value = Number(xyz[0]).toFixed(2);
  $("y").value = Number(xyz[1]).toFixed(2);
  $("z").value = Number(xyz[2]).toFixed(2);
  $("z-slider").value = xyz[2];
  checkTypedPoint();
  requestSlice(Number($("z").value));
  placeCrosshair();
}

function clickOnSlice(event) {
  if (state.suppressClick) { state.suppressClick = false; return; }
  const img = $("axial");
  if (!state.scan || !state.pixelMm || state.slice.z === null) return;
  const col = event.offsetX * img.naturalWidth / img.clientWidth - 0.5;
  const row = event.offsetY * img.naturalHeight / img.clientHeight - 0.5;
  $("x").value = (state.scan.extent_min_xyz[0] + col * state.pixelMm).toFixed(2);
  $("y").value = (state.scan.extent_min_xyz[1] + row * state.pixelMm).toFixed(2);
  // The point's z is the slice on screen, so image and query always agree.
  $("z").value = state.slice.z.toFixed(2);
  checkTypedPoint();
  placeCrosshair();
}

function showSliceNotice(message) {
  const box = $("slice-notice");
  box.textContent = message;
  box.hidden = !message;
}

// The typed point against the scan's extent; returns the valid coordinates (null where not).
function checkTypedPoint() {
  const problems = [];
  const values = ["x", "y", "z"].map((axis, i) => {
    const input = $(axis);
    const text = input.value.trim();
    const value = Number(text);
    let ok = text !== "" && Number.isFinite(value);
    if (ok && state.scan) {
      const low = state.scan.extent_min_xyz[i], high = state.scan.extent_max_xyz[i];
      const tolerance = 1e-3;
      ok = value >= low - tolerance && value <= high + tolerance;
      if (!ok) problems.push(`${axis} ${fmt(value, 2)} mm is outside this scan (${axis} from ${fmt(low)} to ${fmt(high)} mm)`);
    } else if (!ok) {
      problems.push(`${axis} must be a number (mm)`);
    }
    input.classList.toggle("invalid", !ok);
    return ok ? value : null;
  });
  showSliceNotice(problems.join("; "));
  return values;
}

// Typing in x, y or z: the slice follows z and the crosshair x/y, once the typing pauses.
function applyTypedPoint() {
  clearTimeout(state.typing);
  state.typing = null;
  const [, , z] = checkTypedPoint();
  if (z !== null) {
    $("z-slider").value = z;
    const pending = state.slice.wanted ? state.slice.wanted.z : state.slice.z;
    if (pending === null || Math.abs(pending - z) > 1e-6) requestSlice(z);
  }
  placeCrosshair();
}

// ---- searches ---------------------------------------------------------------------------------
function setBusy(busy, label) {
  $("loading").hidden = !busy;
  $("loading-text").textContent = label || "Searching…";
  // The previous result stays in place, dimmed and out of reach, until the new one replaces it.
  $("results").classList.toggle("stale", busy);
  $("result-panel").setAttribute("aria-busy", String(busy));
  document.querySelectorAll("button.search").forEach((b) => { b.disabled = busy; });
  if (busy) $("error").hidden = true;
}

async function runSearch(label, request) {
  if (state.search.controller) state.search.controller.abort();
  const controller = new AbortController();
  const seq = ++state.search.seq;
  state.search.controller = controller;
  setBusy(true, label);
  try {
    const { result, preview, sized } = await request(controller.signal);
    if (seq !== state.search.seq) return;
    renderResult(result, preview, Boolean(sized));
  } catch (e) {
    if (seq !== state.search.seq) return;
    showResultError(e.message);
  } finally {
    if (seq === state.search.seq) {
      state.search.controller = null;
      setBusy(false);
    }
  }
}

// An error replaces the result area: nothing of an earlier, unrelated result stays on screen.
function showResultError(message) {
  state.result = null;
  $("results").hidden = true;
  $("neighbors").innerHTML = "";
  $("vote").innerHTML = "—";
  $("match-notice").hidden = true;
  $("size-estimate").hidden = true;
  $("query-preview-box").hidden = true;
  closeCompare();
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  state.highlight = { query: null, neighbours: [] };
  drawMap();
}

async function searchPoint(event) {
  event.preventDefault();
  applyTypedPoint();
  const center = ["x", "y", "z"].map((id) => Number($(id).value));
  const body = {
    series_uid: state.scan ? state.scan.series_uid : $("scan-select").value,
    center_xyz: center,
    k: Number($("k").value) || 5,
    filters: { labelled_only: $("labelled-only").checked },
    estimate_size: true,
  };
  await runSearch("Searching similar nodules…", async (signal) => {
    const response = await api("/v1/search/coordinate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
    const uid = encodeURIComponent(body.series_uid);
    return { result: await response.json(), preview: { url: `/v1/scans/${uid}/preview.png?center_xyz=${center.join(",")}`, windowed: true }, sized: true };
  });
}

async function searchUpload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { showResultError("choose a file to upload"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  if ($("upload-center").value.trim()) form.append("center_xyz", $("upload-center").value);
  if ($("upload-spacing").value.trim()) form.append("spacing_zyx", $("upload-spacing").value);
  form.append("k", $("upload-k").value || "5");
  form.append("preview", "true");
  const mask = $("upload-mask").files[0];
  if (mask) form.append("mask", mask, mask.name);
  else form.append("estimate_size", "true");
  await runSearch(`Uploading ${file.name} and searching…`, async (signal) => {
    const result = await (await api("/v1/search/upload", { method: "POST", body: form, signal })).json();
    const png = result.query.preview_png_base64;
    // The upload's preview is the model's own patch (its HU window), not re-windowable.
    return { result, preview: png ? { url: `data:image/png;base64,${png}`, windowed: false } : null, sized: true };
  });
}

async function searchNodule(id) {
  const nodule = Number(id);
  const k = Number($("k").value) || 5;
  $("nodule-id").value = nodule;
  await runSearch(`Searching nodules similar to #${nodule}…`, async (signal) => {
    const result = await (await api(`/v1/nodules/${nodule}/similar?k=${k}`, { signal })).json();
    return { result, preview: { url: `/v1/nodules/${nodule}/preview.png`, windowed: true } };
  });
}

// ---- results --------------------------------------------------------------------------------
function windowedUrl(url) {
  return `${url}${url.includes("?") ? "&" : "?"}${wlQuery()}`;
}

// An image in a placeholder box that shows a spinner until it has loaded. Fetched through api()
// (not img.src) so that a deployment's access token goes with it.
async function loadThumb(box, img, url) {
  box.classList.add("loading");
  box.classList.remove("failed");
  img.dataset.wanted = url;
  try {
    const blob = await (await api(url)).blob();
    if (img.dataset.wanted !== url) return; // a newer image was asked for meanwhile
    const objectUrl = URL.createObjectURL(blob);
    await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = objectUrl; });
    if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
    img.dataset.objectUrl = objectUrl;
    box.classList.remove("loading");
  } catch (e) {
    if (img.dataset.wanted !== url) return;
    box.classList.remove("loading");
    box.classList.add("failed");
  }
}

function refreshResultImages() {
  const result = state.result;
  if (!result) return;
  if (!$("compare").hidden) drawComparePanes();
  if (result.preview && result.preview.windowed) loadThumb($("query-preview-box"), $("query-preview"), windowedUrl(result.preview.url));
  document.querySelectorAll("#neighbors .thumb").forEach((box) => {
    const img = box.querySelector("img");
    loadThumb(box, img, windowedUrl(`/v1/nodules/${img.dataset.nodule}/preview.png`));
  });
}

function labelText(labels) {
  if (!labels || labels.label_binary === null || labels.label_binary === undefined) return { text: "no label", colour: NO_LABEL };
  const word = labels.label_binary ? "malignant" : "benign";
  return { text: `${word} (${labels.label_4class})`, colour: COLOURS[labels.label_4class] || NO_LABEL };
}

function renderMatchNotice(query, neighbours) {
  const box = $("match-notice");
  const percentile = state.index && state.index.match_threshold ? state.index.match_threshold.percentile : null;
  const rule = percentile !== null
    ? `the ${fmt(percentile, 0)}th percentile of how similar this catalogue's nodules are to their nearest nodule of another patient`
    : "calibrated on this catalogue's own nodules";
  box.className = "notice";
  if (query.close_match === false) {
    box.innerHTML = `<b>No close match in the catalogue.</b> The most similar nodule has similarity
      ${fmt(query.best_similarity, 3)}, below this catalogue's match threshold ${fmt(query.match_threshold, 3)}
      (${esc(rule)}). The vote is withheld: these neighbours are not like the query.`;
    box.hidden = false;
  } else if (query.close_match === null && query.match_threshold === null && neighbours.length) {
    box.classList.add("info");
    box.textContent = "This catalogue version has no match threshold (it was built before thresholds were recorded), so there is no warning when nothing in it is close to the query; rebuilding it adds one.";
    box.hidden = false;
  } else {
    box.hidden = true;
    box.textContent = "";
  }
}

function renderVote(vote) {
  const box = $("vote");
  box.classList.toggle("withheld", Boolean(vote.withheld));
  if (!vote.n_labelled) {
    box.innerHTML = vote.withheld
      ? `<span class="withheld-tag" data-testid="vote-withheld">Vote withheld: no close match</span><div>No labelled neighbour.</div>`
      : "No labelled neighbour: no vote.";
    return;
  }
  const p = vote.malignant_probability;
  const majority = vote.binary === 1 ? "malignant (ratings 4–5)" : "benign (ratings 1–2)";
  let dist = "";
  for (const r of ["1", "2", "4", "5"]) {
    const share = vote.four_class[r] || 0;
    dist += `<span>${r}</span><div class="bar"><div style="width:${share * 100}%;background:${COLOURS[r]}"></div></div><span>${Math.round(share * 100)}%</span>`;
  }
  const head = vote.withheld
    ? `<span class="withheld-tag" data-testid="vote-withheld">Vote withheld: no close match</span>
       <div>For reference only, from neighbours that are not close to the query:</div>`
    : "";
  box.innerHTML = `${head}
    <div data-testid="vote-probability">Similarity-weighted malignant share: <b>${fmt(p * 100, 0)}%</b>
      of ${vote.n_labelled} labelled neighbours</div>
    <div class="bar" title="${fmt(p, 2)}"><div style="width:${p * 100}%"></div></div>
    <div>${vote.withheld ? "Majority (withheld)" : "Majority"}: <b>${majority}</b></div>
    <div class="dist">${dist}</div>
    <div class="disclaimer">Decision support from similar cases, not a diagnosis.</div>`;
}

function renderNeighbours(neighbors) {
  const box = $("neighbors");
  box.innerHTML = "";
  for (const n of neighbors) {
    const card = document.createElement("div");
    card.className = "card";
    card.setAttribute("data-testid", "neighbor-card");
    card.dataset.id = String(n.id);
    const l = n.labels;
    const ratings = l ? l.ratings.join(", ") : "no reads";
    const label = labelText(l);
    card.innerHTML = `
      <div class="thumb loading">
        <img alt="nodule ${n.id}: axial, coronal and sagittal slices" loading="lazy" data-nodule="${n.id}">
        <span class="thumb-caption" data-testid="thumb-caption">#${n.id} · sim ${fmt(n.similarity, 3)} ·
          <span class="lab" style="color:${label.colour}">${esc(label.text)}</span></span>
      </div>
      <div class="details">
        <b>#${n.id}</b> · similarity <b>${fmt(n.similarity, 3)}</b>${n.weak_match ? `<span class="weak-tag" data-testid="weak-match" title="below this catalogue's calibrated match threshold">weak match</span>` : ""}<br>
        ${fmt(n.diameter_mm)} mm · patient ${esc(n.patient_id || "?")}<br>
        readers' malignancy: ${esc(ratings)}${l && l.mean !== null ? ` (mean ${fmt(l.mean, 2)})` : ""}<br>
        ${esc(label.text)}
      </div>`;
    const thumb = card.querySelector(".thumb");
    loadThumb(thumb, thumb.querySelector("img"), windowedUrl(`/v1/nodules/${n.id}/preview.png`));
    card.title = "compare side by side with the query";
    card.addEventListener("click", () => openCompare(n));
    box.appendChild(card);
  }
}

function sizeText(size) {
  const type = size.nodule_type ? esc(size.nodule_type) : "type not estimated";
  const category = size.lung_rads ? ` · Lung-RADS ${esc(size.lung_rads)} (size category)` : "";
  return `mean diameter <b>${fmt(size.mean_diameter_mm)} mm</b> (long ${fmt(size.long_axis_mm)} × short ${fmt(size.short_axis_mm)} mm) · volume ${fmt(size.volume_mm3, 0)} mm³ · ${type}${category}`;
}

function renderSizeEstimate(size, asked) {
  const box = $("size-estimate");
  if (size) {
    box.innerHTML = `<b>Size (estimate)</b>: ${sizeText(size)}<div class="note">${esc(size.method)}; ${esc(size.note)}</div>`;
  } else {
    box.innerHTML = `<b>No size estimate</b>: <span class="note">no nodule could be parted from its surroundings at this point (region growing refuses rather than guesses).</span>`;
  }
  box.hidden = !size && !asked;
}

function renderResult(result, preview, sized = false) {
  state.result = { ...result, preview };
  $("error").hidden = true;
  $("results").hidden = false;
  const q = result.query;
  const where = q.nodule_id !== null && q.nodule_id !== undefined
    ? `indexed nodule #${q.nodule_id}`
    : q.series_uid ? `series …${esc(q.series_uid.slice(-12))}` : "uploaded volume";
  const centre = q.center_xyz ? q.center_xyz.map((v) => fmt(v, 1)).join(", ") : "?";
  const match = q.best_similarity === null || q.best_similarity === undefined ? ""
    : ` · best similarity ${fmt(q.best_similarity, 3)}${q.match_threshold !== null ? ` (threshold ${fmt(q.match_threshold, 3)})` : ""}`;
  $("query-info").innerHTML = `${where} at (${centre}) mm · catalogue ${esc(q.index_version)}${match}`;
  const previewBox = $("query-preview-box");
  if (preview) {
    previewBox.hidden = false;
    loadThumb(previewBox, $("query-preview"), preview.windowed ? windowedUrl(preview.url) : preview.url);
  } else {
    previewBox.hidden = true;
  }
  renderSizeEstimate(result.size_estimate, sized);
  // A query in a stored series can be saved as DICOM (the service says if the series is not).
  $("sr-bar").hidden = !(q.series_uid && q.center_xyz);
  $("sr-notice").textContent = "";
  renderMatchNotice(q, result.neighbors);
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

// ---- the search as DICOM ------------------------------------------------------------------------
async function saveSr() {
  const q = state.result && state.result.query;
  if (!q || !q.series_uid) return;
  const notice = $("sr-notice");
  notice.textContent = "Writing the DICOM SR…";
  const body = { series_uid: q.series_uid, center_xyz: q.center_xyz, k: state.result.neighbors.length || 5 };
  try {
    const response = await api("/v1/reports/sr?seg=true", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    // multipart/related: the SR, then the SEG when a mask could be grown; saved as one file each.
    const type = response.headers.get("Content-Type") || "";
    const boundary = (type.match(/boundary=([^;]+)/) || [])[1];
    const data = new Uint8Array(await response.arrayBuffer());
    const parts = boundary ? splitMultipart(data, boundary) : [data];
    parts.forEach((part, i) => download(part, i === 0 ? "nodule-search-sr.dcm" : "nodule-search-seg.dcm"));
    notice.textContent = parts.length > 1 ? "Saved: the SR and the SEG of the estimated mask." : "Saved: the SR (no mask could be grown, so no SEG).";
  } catch (e) {
    notice.textContent = e.message;
  }
}

function splitMultipart(data, boundary) {
  // Parts are "--boundary\r\nheaders\r\n\r\nbody\r\n"; the bodies are binary, so search bytes.
  const marker = new TextEncoder().encode(`--${boundary}`);
  const find = (from, needle) => {
    outer: for (let i = from; i <= data.length - needle.length; i += 1) {
      for (let j = 0; j < needle.length; j += 1) if (data[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  };
  const blank = new TextEncoder().encode("\r\n\r\n");
  const parts = [];
  let at = find(0, marker);
  while (at >= 0) {
    const next = find(at + marker.length, marker);
    if (next < 0) break;
    const start = find(at, blank) + blank.length;
    parts.push(data.slice(start, next - 2));
    at = next;
  }
  return parts;
}

function download(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/dicom" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ---- side-by-side comparison ------------------------------------------------------------------
// Two zoomed axial views, one per nodule, each at its own centre plus one shared z offset, in the
// same window: scrolling either moves both (synchronised around each nodule's centre).
const COMPARE_FOV_MM = 64;
const COMPARE_REACH_MM = 30;
const CHARACTERISTIC_NAMES = {
  subtlety: "subtlety", internalStructure: "internal structure", calcification: "calcification",
  sphericity: "sphericity", margin: "margin", lobulation: "lobulation", spiculation: "spiculation",
  texture: "texture", malignancy: "malignancy",
};
const compare = { neighbor: null, sides: {}, offset: 0, step: 1, panes: {} };

function textureType(texture) {
  // LIDC texture: 1-2 ground-glass, 3-4 part-solid, 5 solid (docs/protocol.md).
  if (texture === null || texture === undefined) return null;
  return texture <= 2 ? "ground-glass" : texture < 5 ? "part-solid" : "solid";
}

async function scanInfo(uid) {
  try {
    return await (await api(`/v1/scans/${encodeURIComponent(uid)}`)).json();
  } catch (e) {
    return null; // a series outside the catalogue (an upload's, a PACS study's)
  }
}

async function noduleDetail(id) {
  return (await api(`/v1/nodules/${id}?estimate_size=true`)).json();
}

function detailHtml(detail, size) {
  const parts = [];
  if (detail) {
    const l = detail.labels;
    parts.push(`#${detail.id} · patient ${esc(detail.patient_id || "?")} · catalogue diameter <b>${fmt(detail.diameter_mm)} mm</b>`);
    parts.push(l ? `readers' malignancy ${esc(l.ratings.join(", "))}${l.mean !== null ? ` (mean ${fmt(l.mean, 2)})` : ""} · ${esc(labelText(l).text)}` : "no readers' ratings");
    const texture = detail.characteristics ? detail.characteristics.texture : null;
    if (texture !== null && texture !== undefined) parts.push(`readers' texture ${fmt(texture, 1)} (${textureType(texture)})`);
  } else {
    parts.push("the query: no readers' ratings (not a catalogue nodule)");
  }
  parts.push(size ? `estimate: ${sizeText(size)}` : `<span class="note">no size estimate at this centre</span>`);
  return parts.map((p) => `<div>${p}</div>`).join("");
}

function renderWhy(levels, similarities, queryChars, neighborChars) {
  const box = $("why-similar");
  let html = "";
  (similarities || []).forEach((value, i) => {
    const width = Math.max(0, Math.min(1, value)) * 100;
    html += `<span data-testid="why-level">${esc(levels[i] || `part ${i}`)}</span><div class="bar"><div style="width:${width}%"></div></div><span>${fmt(value, 3)}</span>`;
  });
  if (!html) html = "<span>No per-level similarity in this answer.</span>";
  if (neighborChars) {
    let rows = "";
    for (const [name, label] of Object.entries(CHARACTERISTIC_NAMES)) {
      const q = queryChars ? queryChars[name] : undefined, n = neighborChars[name];
      if (n === undefined && q === undefined) continue;
      const shared = q !== undefined && n !== undefined && Math.round(q) === Math.round(n);
      rows += `<tr class="${shared ? "shared" : ""}" data-testid="why-characteristic"><td>${esc(label)}</td><td>${q === undefined ? "–" : fmt(q, 1)}</td><td>${n === undefined ? "–" : fmt(n, 1)}</td><td>${shared ? "shared" : ""}</td></tr>`;
    }
    const note = queryChars ? "" : " (the query has no readers' ratings: only the neighbour's)";
    html += `<table><caption>Readers' median ratings (LIDC scales)${esc(note)}</caption><tr><th></th><th>query</th><th>neighbour</th><th></th></tr>${rows}</table>`;
  }
  box.innerHTML = html;
}

function compareUrl(side) {
  const [x, y, z] = side.center;
  const uid = encodeURIComponent(side.uid);
  return `/v1/scans/${uid}/zoom.png?center_xyz=${x},${y},${z + compare.offset}&fov_mm=${COMPARE_FOV_MM}&${wlQuery()}`;
}

// One request in flight per view; the latest wish wins (wheel, slider, window).
async function pumpPane(which) {
  const pane = compare.panes[which];
  const img = $(`compare-${which}-img`), note = $(`compare-${which}-note`);
  pane.inFlight = true;
  try {
    while (pane.wanted) {
      const want = pane.wanted;
      pane.wanted = null;
      try {
        const blob = await (await api(want.url)).blob();
        const objectUrl = URL.createObjectURL(blob);
        await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = objectUrl; });
        if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
        img.dataset.objectUrl = objectUrl;
        note.hidden = true;
      } catch (e) {
        note.textContent = `Δz ${fmt(want.offset)} mm: ${e.message}`;
        note.hidden = false;
      }
      // What is on screen, for people and for tests.
      img.dataset.offset = want.offset.toFixed(1);
      img.dataset.window = String(Math.round(want.width));
    }
  } finally {
    pane.inFlight = false;
  }
}

function drawComparePanes() {
  $("compare-offset").textContent = `Δz ${compare.offset >= 0 ? "+" : ""}${fmt(compare.offset)} mm from each centre`;
  for (const which of ["query", "neighbor"]) {
    const side = compare.sides[which];
    if (!side) continue;
    const pane = compare.panes[which] || (compare.panes[which] = { wanted: null, inFlight: false });
    pane.wanted = { url: compareUrl(side), offset: compare.offset, width: state.wl.width };
    if (!pane.inFlight) pumpPane(which);
  }
}

function setCompareOffset(offset) {
  const reach = Math.floor(COMPARE_REACH_MM / compare.step) * compare.step;
  compare.offset = Math.max(-reach, Math.min(reach, Math.round(offset / compare.step) * compare.step));
  $("compare-slider").value = String(compare.offset);
  drawComparePanes();
}

async function openCompare(n) {
  const result = state.result;
  if (!result) return;
  const q = result.query;
  compare.neighbor = n;
  compare.sides = { neighbor: { uid: n.series_uid, center: n.center_xyz } };
  compare.panes = {};
  // A point on an indexed nodule is that nodule (its nearest neighbour is itself, similarity ~1).
  const first = result.neighbors[0];
  const itself = first && first.similarity > 0.9999 && first.series_uid === q.series_uid ? first.id : null;
  const queryNodule = q.nodule_id !== null && q.nodule_id !== undefined ? q.nodule_id : itself;
  if (q.series_uid && q.center_xyz) compare.sides.query = { uid: q.series_uid, center: q.center_xyz };
  $("compare").hidden = false;
  $("compare-title").textContent = `Query and neighbour #${n.id} side by side · similarity ${fmt(n.similarity, 3)}${n.weak_match ? " (weak match)" : ""}`;
  $("compare-query-caption").textContent = queryNodule !== null ? `Query: nodule #${queryNodule}` : q.series_uid ? "Query: the point searched" : "Query: the uploaded volume";
  $("compare-neighbor-caption").textContent = `Neighbour #${n.id}`;
  const queryImg = $("compare-query-img");
  const queryNote = $("compare-query-note");
  queryNote.hidden = true;
  if (!compare.sides.query) {
    // An upload has no stored slices: its own patch preview, which does not scroll.
    queryImg.removeAttribute("src");
    if (result.preview) queryImg.src = result.preview.url;
    queryNote.textContent = "An uploaded volume is not stored: its patch is shown, and only the neighbour scrolls.";
    queryNote.hidden = false;
  }
  const [queryScan, neighborScan, queryDetail, neighborDetail] = await Promise.all([
    compare.sides.query ? scanInfo(compare.sides.query.uid) : null,
    scanInfo(n.series_uid),
    queryNodule !== null ? noduleDetail(queryNodule) : null,
    noduleDetail(n.id),
  ]);
  if (compare.neighbor !== n) return; // another comparison was opened meanwhile
  // Both views move by the coarser of the two slice spacings, so each step shows a new slice.
  compare.step = Math.max(queryScan ? queryScan.spacing_xyz[2] : 0, neighborScan ? neighborScan.spacing_xyz[2] : 0) || 1;
  const slider = $("compare-slider");
  const reach = Math.floor(COMPARE_REACH_MM / compare.step) * compare.step;
  slider.min = String(-reach); slider.max = String(reach); slider.step = String(compare.step);
  $("compare-query-details").innerHTML = detailHtml(queryDetail, queryDetail ? queryDetail.size_estimate : result.size_estimate);
  $("compare-neighbor-details").innerHTML = detailHtml(neighborDetail, neighborDetail.size_estimate);
  renderWhy(q.levels || [], n.level_similarity, queryDetail ? queryDetail.characteristics : null, neighborDetail.characteristics);
  setCompareOffset(0);
}

function closeCompare() {
  $("compare").hidden = true;
  compare.neighbor = null;
}

function wheelCompare(event) {
  event.preventDefault();
  setCompareOffset(compare.offset + Math.sign(event.deltaY) * compare.step);
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
  $("scan-select").addEventListener("change", (e) => openScan(e.target.value).catch((err) => showSliceNotice(err.message)));
  $("z-slider").addEventListener("input", (e) => {
    $("z").value = Number(e.target.value).toFixed(2);
    checkTypedPoint();
    requestSlice(Number(e.target.value));
  });
  for (const axis of ["x", "y", "z"]) {
    $(axis).addEventListener("input", () => { clearTimeout(state.typing); state.typing = setTimeout(applyTypedPoint, 250); });
    $(axis).addEventListener("change", applyTypedPoint);
  }
  document.querySelectorAll("button.wl").forEach((b) => b.addEventListener("click", () => {
    const preset = PRESETS[b.dataset.preset];
    setWindow(preset.width, preset.level, b.dataset.preset);
    refreshResultImages();
  }));
  const box = $("slice-box");
  box.addEventListener("mousedown", startWlDrag);
  box.addEventListener("contextmenu", (e) => e.preventDefault());
  window.addEventListener("mousemove", moveWlDrag);
  window.addEventListener("mouseup", endWlDrag);
  $("axial").addEventListener("click", clickOnSlice);
  $("axial").addEventListener("wheel", (e) => {
    // Scroll through slices, one voxel step at a time.
    e.preventDefault();
    const slider = $("z-slider");
    const next = Math.min(Number(slider.max), Math.max(Number(slider.min), Number(slider.value) + Math.sign(e.deltaY) * Number(slider.step)));
    slider.value = next;
    $("z").value = next.toFixed(2);
    checkTypedPoint();
    requestSlice(next);
  }, { passive: false });
  window.addEventListener("resize", placeCrosshair);
  $("point-form").addEventListener("submit", searchPoint);
  $("upload-form").addEventListener("submit", searchUpload);
  $("nodule-form").addEventListener("submit", (e) => { e.preventDefault(); searchNodule($("nodule-id").value); });
  $("save-sr").addEventListener("click", saveSr);
  $("compare-close").addEventListener("click", closeCompare);
  $("compare").addEventListener("click", (e) => { if (e.target === $("compare")) closeCompare(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("compare").hidden) closeCompare(); });
  $("compare-slider").addEventListener("input", (e) => setCompareOffset(Number(e.target.value)));
  for (const which of ["query", "neighbor"]) $(`compare-${which}-img`).addEventListener("wheel", wheelCompare, { passive: false });
  $("compare-similar").addEventListener("click", () => {
    const n = compare.neighbor;
    closeCompare();
    if (n) searchNodule(n.id);
  });
  showWl();
  try {
    const info = await (await api("/v1/index")).json();
    state.index = info;
    const threshold = info.match_threshold
      ? ` · match threshold ${fmt(info.match_threshold.value, 3)}`
      : " · no match threshold";
    $("index-info").textContent = `catalogue ${info.version} · ${info.n_nodules} nodules in ${info.n_scans} scans · ${info.n_labelled} labelled${threshold}`;
    await Promise.all([loadScans(), loadMap()]);
    document.body.dataset.ready = "true";
  } catch (e) {
    showResultError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);

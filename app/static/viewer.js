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
// Keyboard slice scrolling: Up/Down one slice, Page Up/Down this many.
const PAGE_SLICES = 10;
// The point marker's gap: the radius of the nodule under the point (else this), plus a margin.
const DEFAULT_MARK_RADIUS_MM = 3;
const MARK_MARGIN_PX = 4;

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
  // The catalogue's scans by series UID (GET /v1/scans: patient, nodules, dicom).
  scans: new Map(),
  // Ruler: up to four clicks on one axial slice, world [x, y] mm; the first two the long axis.
  ruler: { active: false, points: [], z: null },
  // The OHIF link of a PACS scan's point: the latest wish, fetched once the point rests.
  ohif: { timer: null, seq: 0 },
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

/**
 * An element with attributes and children (strings become text nodes, never markup).
 * @param {string} tag
 * @param {Object<string, string>} [attrs]
 * @param {...(Node|string|null|undefined)} children
 * @returns {HTMLElement}
 */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/**
 * @param {unknown} value
 * @returns {boolean} whether the value is neither null nor undefined
 */
function given(value) {
  return value !== null && value !== undefined;
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
  document.querySelectorAll("button.wl[data-preset]").forEach((b) => b.classList.toggle("active", b.dataset.preset === state.wl.preset));
  $("wl-readout").textContent = `W ${Math.round(state.wl.width)} / L ${Math.round(state.wl.level)}`;
}

function setWindow(width, level, preset) {
  state.wl = { width: clamp(width, WIDTH_RANGE), level: clamp(level, LEVEL_RANGE), preset: preset || null };
  showWl();
  if (state.slice.z !== null) requestSlice(state.slice.z);
}

/**
 * A window preset for the slice, the result's images and the comparison.
 * @param {string} name a key of PRESETS
 */
function applyPreset(name) {
  const preset = PRESETS[name];
  if (!preset) return;
  setWindow(preset.width, preset.level, name);
  refreshResultImages();
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
/**
 * The scan list's text of a scan: patient, series, nodules, and a DICOM tag where an SR can be
 * made of it (only a series stored as DICOM has the study an SR belongs to).
 * @param {{series_uid: string, patient_id: ?string, n_nodules: number, dicom?: boolean}} scan
 * @returns {string}
 */
function scanOptionText(scan) {
  const tag = scan.dicom ? " · DICOM" : "";
  return `${scan.patient_id || "?"} · …${scan.series_uid.slice(-12)} (${scan.n_nodules} nodules)${tag}`;
}

async function loadScans() {
  const list = await (await api("/v1/scans?limit=1000")).json();
  const select = $("scan-select");
  select.replaceChildren();
  state.scans = new Map(list.scans.map((scan) => [scan.series_uid, scan]));
  for (const scan of list.scans) {
    const option = el("option", { "data-dicom": String(Boolean(scan.dicom)) }, scanOptionText(scan));
    option.value = scan.series_uid;
    select.appendChild(option);
  }
  if (list.scans.length) await openScan(list.scans[0].series_uid);
}

/**
 * Whether a series is stored as DICOM, so that an SR can be made of a search in it.
 * @param {?string} uid
 * @returns {boolean}
 */
function isDicomSeries(uid) {
  if (!uid) return false;
  if (state.scan && state.scan.series_uid === uid && given(state.scan.dicom)) return state.scan.dicom === true;
  const summary = state.scans.get(uid);
  return Boolean(summary && summary.dicom === true);
}

function showScanFormat() {
  const tag = $("scan-format");
  const dicom = state.scan && state.scan.dicom === true;
  tag.textContent = dicom ? "DICOM" : "image file";
  tag.className = `format-tag ${dicom ? "dicom" : "image"}`;
  tag.title = dicom
    ? "stored as DICOM: a search in it can be saved as a DICOM SR + SEG"
    : "stored as an image file: searches work, but no DICOM SR can be made of them";
  tag.hidden = !state.scan;
}

async function openScan(uid, point) {
  const scan = await (await api(`/v1/scans/${encodeURIComponent(uid)}`)).json();
  state.scan = scan;
  state.slice.z = null;
  clearRuler();
  const select = $("scan-select");
  if (![...select.options].some((o) => o.value === uid)) {
    // A series from a link (a PACS study), not one of the catalogue's scans.
    const option = el("option", { "data-dicom": String(Boolean(scan.dicom)) }, `series …${uid.slice(-12)} (linked)`);
    option.value = uid;
    select.appendChild(option);
  }
  select.value = uid;
  showScanFormat();
  const slider = $("z-slider");
  slider.min = scan.extent_min_xyz[2];
  slider.max = scan.extent_max_xyz[2];
  slider.step = scan.spacing_xyz[2];
  const chips = $("scan-nodules");
  chips.replaceChildren(scan.nodules.length ? "Indexed nodules: " : "No indexed nodules in this scan.");
  for (const n of scan.nodules) {
    const b = el("button", { type: "button" }, `#${n.id} · ${fmt(n.diameter_mm)} mm`);
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

/**
 * Show a series at a point: the scan already open moves there, another one is opened.
 * @param {string} uid
 * @param {number[]} xyz world mm
 */
async function showScanAt(uid, xyz) {
  selectTab("point");
  if (state.scan && state.scan.series_uid === uid) setPoint(xyz);
  else await openScan(uid, xyz);
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
        // What is on screen, for people and for tests: the slice's world z, pixel and window.
        img.dataset.series = want.uid;
        img.dataset.z = want.z.toFixed(2);
        img.dataset.pixelMm = String(pixel);
        img.dataset.window = String(Math.round(want.wl.width));
        img.dataset.level = String(Math.round(want.wl.level));
        $("slice-label").textContent = `axial z ${want.z.toFixed(2)} mm · ${img.naturalWidth}×${img.naturalHeight} px at ${pixel.toFixed(2)} mm`;
        drawOverlays();
      } catch (e) {
        showSliceNotice(`slice: ${e.message || "the image could not be shown"}`);
      }
    }
  } finally {
    state.slice.inFlight = false;
    $("slice-spinner").hidden = true;
  }
}

/**
 * Screen pixels (CSS px, relative to the image) of a world point on the axial view; null
 * before a slice is shown.
 * @param {number} x world mm
 * @param {number} y world mm
 * @returns {?{left: number, top: number}}
 */
function worldToScreen(x, y) {
  const img = $("axial");
  if (!state.scan || !state.pixelMm || !img.naturalWidth) return null;
  const col = (x - state.scan.extent_min_xyz[0]) / state.pixelMm;
  const row = (y - state.scan.extent_min_xyz[1]) / state.pixelMm;
  return {
    left: (col + 0.5) * img.clientWidth / img.naturalWidth,
    top: (row + 0.5) * img.clientHeight / img.naturalHeight,
  };
}

/**
 * The world x/y (mm) of a mouse event on the axial view.
 * @param {MouseEvent} event
 * @returns {number[]} [x, y]
 */
function screenToWorld(event) {
  const img = $("axial");
  const col = event.offsetX * img.naturalWidth / img.clientWidth - 0.5;
  const row = event.offsetY * img.naturalHeight / img.clientHeight - 0.5;
  return [state.scan.extent_min_xyz[0] + col * state.pixelMm, state.scan.extent_min_xyz[1] + row * state.pixelMm];
}

/** @returns {number} screen pixels per world mm on the axial view */
function screenPxPerMm() {
  const img = $("axial");
  return img.clientWidth / img.naturalWidth / state.pixelMm;
}

/**
 * The radius (mm) the point marker keeps clear: the indexed nodule the point lies in, else a
 * small nodule's.
 * @param {number[]} xyz world mm
 * @returns {number}
 */
function markRadiusMm(xyz) {
  let radius = DEFAULT_MARK_RADIUS_MM;
  for (const n of (state.scan && state.scan.nodules) || []) {
    const r = n.diameter_mm / 2;
    if (Math.hypot(xyz[0] - n.center_xyz[0], xyz[1] - n.center_xyz[1], xyz[2] - n.center_xyz[2]) <= r) radius = Math.max(radius, r);
  }
  return radius;
}

function drawOverlays() {
  placeCrosshair();
  drawRuler();
}

function placeCrosshair() {
  const mark = $("crosshair");
  const xyz = ["x", "y", "z"].map((id) => Number($(id).value));
  const at = worldToScreen(xyz[0], xyz[1]);
  if (!at) { mark.hidden = true; return; }
  const gap = markRadiusMm(xyz) * screenPxPerMm() + MARK_MARGIN_PX;
  mark.style.left = `${at.left}px`;
  mark.style.top = `${at.top}px`;
  mark.style.setProperty("--gap", `${gap.toFixed(1)}px`);
  mark.dataset.gapPx = gap.toFixed(1);
  mark.hidden = false;
}

function setPoint(xyz) {
  $("x").value = Number(xyz[0]).toFixed(2);
  $("y").value = Number(xyz[1]).toFixed(2);
  $("z").value = Number(xyz[2]).toFixed(2);
  $("z-slider").value = xyz[2];
  checkTypedPoint();
  requestSlice(Number($("z").value));
  pointMoved();
}

/** The point changed: its crosshair, and for a PACS series its OHIF link. */
function pointMoved() {
  placeCrosshair();
  clearTimeout(state.ohif.timer);
  state.ohif.timer = setTimeout(updateOhifLink, 300);
}

/**
 * "Open in OHIF at this slice" for a scan read from the PACS, when the service names an OHIF
 * Viewer over that PACS (GET /v1/scans/{uid}/ohif); hidden otherwise.
 */
async function updateOhifLink() {
  const link = $("ohif-link");
  const seq = ++state.ohif.seq;
  const point = checkTypedPoint();
  if (!state.scan || !state.scan.from_pacs || point.some((v) => v === null)) { link.hidden = true; return; }
  const uid = encodeURIComponent(state.scan.series_uid);
  try {
    const answer = await (await api(`/v1/scans/${uid}/ohif?center_xyz=${point.join(",")}`)).json();
    if (seq !== state.ohif.seq) return;
    link.href = answer.url;
    link.hidden = false;
  } catch {
    if (seq === state.ohif.seq) link.hidden = true; // no OHIF configured, or the point is off the slices
  }
}

function clickOnSlice(event) {
  if (state.suppressClick) { state.suppressClick = false; return; }
  if (!state.scan || !state.pixelMm || state.slice.z === null) return;
  const [x, y] = screenToWorld(event);
  if (state.ruler.active) { addRulerPoint(x, y); return; }
  $("x").value = x.toFixed(2);
  $("y").value = y.toFixed(2);
  // The point's z is the slice on screen, so image and query always agree.
  $("z").value = state.slice.z.toFixed(2);
  checkTypedPoint();
  pointMoved();
}

/**
 * Move the axial view by whole slices (the wheel, the arrow keys, Page Up/Down).
 * @param {number} slices positive: towards the head (higher z)
 */
function stepSlices(slices) {
  const slider = $("z-slider");
  // From the slice asked for last (the slider snaps to its steps; a typed z need not).
  const wanted = state.slice.wanted ? state.slice.wanted.z : state.slice.z;
  const current = given(wanted) ? wanted : Number(slider.value);
  const next = clamp(current + slices * Number(slider.step), [Number(slider.min), Number(slider.max)]);
  slider.value = next;
  $("z").value = next.toFixed(2);
  checkTypedPoint();
  requestSlice(next);
}

const SLICE_KEYS = { ArrowUp: 1, ArrowDown: -1, PageUp: PAGE_SLICES, PageDown: -PAGE_SLICES };

/**
 * Up/Down: one slice; Page Up/Down: PAGE_SLICES. Only while the focus is on the slice, its
 * toolbar or nowhere in particular: fields and lists keep their own keys.
 * @param {KeyboardEvent} event
 */
function keyOnPage(event) {
  if (event.key === "Escape" && !$("compare").hidden) { closeCompare(); return; }
  const slices = SLICE_KEYS[event.key];
  if (!slices || !state.scan || !$("compare").hidden || $("point-form").hidden) return;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  const onSlice = target === document.body || $("slice-box").contains(target) || Boolean(target.closest && target.closest(".wl-bar"));
  if (!onSlice) return;
  event.preventDefault();
  stepSlices(slices);
}

// ---- the ruler ------------------------------------------------------------------------------
/** @param {boolean} active */
function setRulerMode(active) {
  state.ruler.active = active;
  $("ruler-toggle").setAttribute("aria-pressed", String(active));
  $("slice-box").classList.toggle("ruler-mode", active);
}

function clearRuler() {
  state.ruler.points = [];
  state.ruler.z = null;
  drawRuler();
}

/**
 * A ruler click: the first two give the long axis, the next two the short one; a fifth, or a
 * click on another slice, starts a new measurement.
 * @param {number} x world mm
 * @param {number} y world mm
 */
function addRulerPoint(x, y) {
  const ruler = state.ruler;
  if (ruler.points.length >= 4 || (ruler.z !== null && Math.abs(ruler.z - state.slice.z) > 1e-6)) ruler.points = [];
  if (!ruler.points.length) ruler.z = state.slice.z;
  ruler.points.push([x, y]);
  drawRuler();
}

/**
 * @param {number[]} a world [x, y] mm
 * @param {number[]} b world [x, y] mm
 * @returns {number} mm
 */
function distanceMm(a, b) {
  return Math.hypot(b[0] - a[0], b[1] - a[1]);
}

/**
 * The ruler's two axes as the API takes them (short <= long), or null until both are drawn.
 * @returns {?{long_axis_mm: number, short_axis_mm: number}}
 */
function measuredAxes() {
  const p = state.ruler.points;
  if (p.length < 4) return null;
  const first = distanceMm(p[0], p[1]), second = distanceMm(p[2], p[3]);
  const round = (v) => Math.round(v * 100) / 100;
  return { long_axis_mm: round(Math.max(first, second)), short_axis_mm: round(Math.min(first, second)) };
}

/**
 * Which of the two drawn axes is the long one: the longer, whichever was drawn first.
 * @returns {string[]} the kind of the first and of the second axis
 */
function rulerKinds() {
  const p = state.ruler.points;
  if (p.length < 4 || distanceMm(p[0], p[1]) >= distanceMm(p[2], p[3])) return ["long", "short"];
  return ["short", "long"];
}

function drawRuler() {
  const layer = $("ruler-layer");
  layer.replaceChildren();
  const { points, z } = state.ruler;
  $("ruler-clear").disabled = !points.length;
  showRulerReadout();
  if (!points.length || state.slice.z === null || Math.abs(z - state.slice.z) > 1e-6) return;
  const screen = points.map(([x, y]) => worldToScreen(x, y));
  if (screen.some((s) => !s)) return;
  const [first, second] = rulerKinds();
  drawRulerAxis(layer, screen.slice(0, 2), points.slice(0, 2), first);
  if (points.length > 2) drawRulerAxis(layer, screen.slice(2, 4), points.slice(2, 4), second);
}

/**
 * One axis of the ruler: its end marks, and the line with its length once both ends are set.
 * @param {SVGElement} layer
 * @param {{left: number, top: number}[]} ends on screen
 * @param {number[][]} world the same ends in world mm
 * @param {string} kind "long" or "short"
 */
function drawRulerAxis(layer, ends, world, kind) {
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text) node.textContent = text;
    layer.appendChild(node);
    return node;
  };
  for (const end of ends) add("circle", { cx: end.left, cy: end.top, r: 2.5, class: kind });
  if (ends.length < 2) return;
  const [a, b] = ends;
  add("line", { x1: a.left, y1: a.top, x2: b.left, y2: b.top, class: kind, "data-testid": `ruler-${kind}` });
  // The length beyond the second end, along the line, so that two crossing axes' labels part.
  const length = Math.hypot(b.left - a.left, b.top - a.top) || 1;
  const ux = (b.left - a.left) / length, uy = (b.top - a.top) / length;
  const label = `${fmt(distanceMm(world[0], world[1]))} mm`;
  add("text", {
    x: b.left + ux * 10, y: b.top + 4 + uy * 14,
    "text-anchor": Math.abs(ux) < 0.3 ? "middle" : ux > 0 ? "start" : "end",
    class: kind, "data-testid": `ruler-${kind}-label`,
  }, label);
}

function showRulerReadout() {
  const box = $("ruler-readout");
  const p = state.ruler.points;
  box.hidden = !p.length && !state.ruler.active;
  if (box.hidden) return;
  const parts = [];
  const axes = measuredAxes();
  if (axes) {
    parts.push("Ruler: ", el("span", { class: "long" }, `long axis ${fmt(axes.long_axis_mm)} mm`), " · ",
      el("span", { class: "short" }, `short axis ${fmt(axes.short_axis_mm)} mm`), " · goes with the search");
  } else {
    parts.push("Ruler: ");
    if (p.length >= 2) parts.push(el("span", { class: "long" }, `long axis ${fmt(distanceMm(p[0], p[1]))} mm`), " · ");
    parts.push(["click one end of the long axis", "click its other end", "click one end of the short axis", "click its other end"][p.length]);
  }
  box.replaceChildren(...parts);
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
  pointMoved();
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
    const { result, preview, ...how } = await request(controller.signal);
    if (seq !== state.search.seq) return;
    renderResult(result, preview, how);
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
  $("size-measured").hidden = true;
  $("patient-scope").hidden = true;
  $("query-preview-box").hidden = true;
  closeCompare();
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  state.highlight = { query: null, neighbours: [] };
  drawMap();
}

/**
 * The body of a coordinate search, and of the SR of it (POST /v1/reports/sr takes the same).
 * @param {number[]} center world mm
 * @returns {Object} the request body
 */
function coordinateBody(center) {
  const body = {
    series_uid: state.scan ? state.scan.series_uid : $("scan-select").value,
    center_xyz: center,
    k: Number($("k").value) || 5,
    filters: { labelled_only: $("labelled-only").checked },
    estimate_size: true,
    include_own_patient: $("include-own-patient").checked,
  };
  const axes = measuredAxes();
  if (axes) body.measured_axes_mm = axes;
  return body;
}

async function searchPoint(event) {
  event.preventDefault();
  applyTypedPoint();
  const center = ["x", "y", "z"].map((id) => Number($(id).value));
  await searchCoordinate(coordinateBody(center));
}

/**
 * A coordinate search (the point form's, or a link's) and its result drawn.
 * @param {Object} body the request body (coordinateBody's shape)
 */
async function searchCoordinate(body) {
  await runSearch("Searching similar nodules…", async (signal) => {
    const response = await api("/v1/search/coordinate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
    const uid = encodeURIComponent(body.series_uid);
    return { result: await response.json(), preview: { url: `/v1/scans/${uid}/preview.png?center_xyz=${body.center_xyz.join(",")}`, windowed: true }, sized: true, request: body };
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

/**
 * The nodules most similar to a catalogue nodule; its patient's other nodules are left out
 * unless "include this patient's other nodules" is on (as for a point search).
 * @param {number|string} id
 */
async function searchNodule(id) {
  const nodule = Number(id);
  const k = Number($("k").value) || 5;
  const include = $("include-own-patient").checked;
  $("nodule-id").value = nodule;
  await runSearch(`Searching nodules similar to #${nodule}…`, async (signal) => {
    const params = new URLSearchParams({ k: String(k) });
    let excluded = null;
    if (!include) {
      const detail = await (await api(`/v1/nodules/${nodule}`, { signal })).json();
      excluded = detail.patient_id || null;
      if (excluded) params.set("exclude_patient_id", excluded);
    }
    const result = await (await api(`/v1/nodules/${nodule}/similar?${params}`, { signal })).json();
    return { result, preview: { url: `/v1/nodules/${nodule}/preview.png`, windowed: true }, excludedPatient: excluded, included: include };
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
  // malignant_share; malignant_probability is its deprecated name (one more release).
  const p = given(vote.malignant_share) ? vote.malignant_share : vote.malignant_probability;
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
    <div data-testid="vote-share">Similarity-weighted malignant share: <b>${fmt(p * 100, 0)}%</b>
      of ${vote.n_labelled} labelled neighbours</div>
    <div class="bar" title="malignant share ${fmt(p, 2)}"><div style="width:${p * 100}%"></div></div>
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

/**
 * A size as text: mean, axes, volume (estimates only), type and Lung-RADS size category.
 * @param {Object} size a size_estimate or size_measured of the API
 * @returns {string}
 */
function sizeText(size) {
  const type = size.nodule_type ? size.nodule_type : size.type_assumed ? "taken as solid (no type estimated)" : "type not estimated";
  const category = size.lung_rads ? ` · Lung-RADS ${size.lung_rads} (size category)` : "";
  const volume = given(size.volume_mm3) ? ` · volume ${fmt(size.volume_mm3, 0)} mm³` : "";
  return `mean diameter ${fmt(size.mean_diameter_mm)} mm (long ${fmt(size.long_axis_mm)} × short ${fmt(size.short_axis_mm)} mm)${volume} · ${type}${category}`;
}

/**
 * "Size (estimate by METHOD)" under the query, or why there is none.
 * @param {?Object} size
 * @param {boolean} asked whether the search asked for one
 */
function renderSizeEstimate(size, asked) {
  const box = $("size-estimate");
  if (size) {
    // The method in the heading: a radiologist weighs a network's mask and region growing differently.
    const heading = `Size (estimate by ${size.estimated_by})`;
    const replaced = size.superseded ? "replaced by your measurement below for size and Lung-RADS; " : "";
    box.replaceChildren(el("b", {}, heading), `: ${sizeText(size)}`, el("div", { class: "note" }, `${replaced}${size.method}; ${size.note}`));
  } else {
    box.replaceChildren(el("b", {}, "No size estimate"), ": ",
      el("span", { class: "note" }, "no nodule could be parted from its surroundings at this point (the estimate refuses rather than guesses)."));
  }
  box.hidden = !size && !asked;
}

/**
 * "Measured (ruler)" under the query: the user's own long and short axis, with the Lung-RADS
 * size category the service gives them.
 * @param {?Object} size the answer's size_measured
 */
function renderSizeMeasured(size) {
  const box = $("size-measured");
  box.hidden = !size;
  if (!size) { box.replaceChildren(); return; }
  const note = [size.method, size.note].filter(Boolean).join("; ");
  box.replaceChildren(el("b", {}, "Measured (ruler)"), `: ${sizeText(size)}`, note ? el("div", { class: "note" }, note) : null);
}

/**
 * Which patient's nodules were left out of the neighbours: the answer says so for a point
 * search (query.excluded_patient_id, query.own_patient_included); an indexed nodule's search
 * names the patient it asked to leave out.
 * @param {Object} query the answer's query
 * @param {{excludedPatient?: ?string, included?: boolean}} how what the viewer asked for
 * @returns {?{included: boolean, patient: ?string}} null when nothing is known
 */
function patientScope(query, how) {
  if (given(query.excluded_patient_id)) return { included: false, patient: query.excluded_patient_id };
  if (query.own_patient_included === true || how.included === true) return { included: true, patient: null };
  if (how.excludedPatient) return { included: false, patient: how.excludedPatient };
  return null;
}

/**
 * "Neighbours from this patient excluded" (the default, the paper's protocol) or "included".
 * @param {?{included: boolean, patient: ?string}} scope
 */
function renderPatientScope(scope) {
  const box = $("patient-scope");
  box.hidden = !scope;
  if (!scope) { box.replaceChildren(); return; }
  box.replaceChildren(...(scope.included
    ? [el("b", {}, "Neighbours from this patient included"), ": its other nodules may be among them"]
    : [el("b", {}, "Neighbours from this patient excluded"), ` (patient ${scope.patient}): only other patients' nodules`]));
}

/**
 * The catalogue nodule that stands for the query: the indexed nodule searched, or the one a
 * point query lies in (the service names it in query.nodule_id; it is never a neighbour).
 * @param {Object} query
 * @returns {?number}
 */
function queryNoduleId(query) {
  return given(query.nodule_id) ? query.nodule_id : null;
}

/**
 * The query line: where it was taken and how close its best match is.
 * @param {Object} q the answer's query
 * @returns {string}
 */
function queryText(q) {
  const series = q.series_uid ? `series …${q.series_uid.slice(-12)}` : "uploaded volume";
  const where = given(q.nodule_id) ? `indexed nodule #${q.nodule_id} · ${series}` : series;
  const centre = q.center_xyz ? q.center_xyz.map((v) => fmt(v, 1)).join(", ") : "?";
  const match = given(q.best_similarity)
    ? ` · best similarity ${fmt(q.best_similarity, 3)}${given(q.match_threshold) ? ` (threshold ${fmt(q.match_threshold, 3)})` : ""}`
    : "";
  return `${where} at (${centre}) mm · catalogue ${q.index_version}${match}`;
}

/**
 * Draw a search's answer.
 * @param {Object} result the API's answer
 * @param {?{url: string, windowed: boolean}} preview the query's slices
 * @param {{sized?: boolean, request?: Object, excludedPatient?: ?string, included?: boolean}} how
 *   whether a size estimate was asked for; the coordinate search's body (reused for its SR);
 *   the patient an indexed nodule's search left out, or whether it included them
 */
function renderResult(result, preview, how = {}) {
  state.result = { ...result, preview, request: how.request || null };
  $("error").hidden = true;
  $("results").hidden = false;
  const q = result.query;
  $("query-info").textContent = queryText(q);
  const previewBox = $("query-preview-box");
  if (preview) {
    previewBox.hidden = false;
    loadThumb(previewBox, $("query-preview"), preview.windowed ? windowedUrl(preview.url) : preview.url);
  } else {
    previewBox.hidden = true;
  }
  renderPatientScope(patientScope(q, how));
  renderSizeMeasured(result.size_measured || null);
  renderSizeEstimate(result.size_estimate, Boolean(how.sized));
  // Only a series stored as DICOM has a study an SR can belong to (else the service says 422).
  $("sr-bar").hidden = !(q.series_uid && q.center_xyz && isDicomSeries(q.series_uid));
  $("sr-notice").textContent = "";
  renderMatchNotice(q, result.neighbors);
  renderVote(result.vote);
  renderNeighbours(result.neighbors);
  const queryId = queryNoduleId(q);
  state.highlight = { query: queryId, neighbours: result.neighbors.map((n) => n.id).filter((id) => id !== queryId) };
  drawMap();
}

// ---- the search as DICOM ------------------------------------------------------------------------
/**
 * The SR's request: the coordinate search as it was sent (its patient choice and ruler
 * measurement included); an indexed nodule's search as a search at its centre.
 * @param {Object} result state.result
 * @returns {Object}
 */
function srBody(result) {
  if (result.request) return { ...result.request };
  const q = result.query;
  return {
    series_uid: q.series_uid,
    center_xyz: q.center_xyz,
    k: result.neighbors.length || 5,
    include_own_patient: $("include-own-patient").checked,
  };
}

async function saveSr() {
  const q = state.result && state.result.query;
  if (!q || !q.series_uid) return;
  const notice = $("sr-notice");
  notice.textContent = "Writing the DICOM SR…";
  const body = srBody(state.result);
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
// The brackets around each nodule stand this far outside its radius.
const COMPARE_MARK_MARGIN_MM = 2;
const CHARACTERISTIC_NAMES = {
  subtlety: "subtlety", internalStructure: "internal structure", calcification: "calcification",
  sphericity: "sphericity", margin: "margin", lobulation: "lobulation", spiculation: "spiculation",
  texture: "texture", malignancy: "malignancy",
};
// What each value of an LIDC characteristic means (the LIDC-IDRI readers' scales, value 1 first).
const LIDC_SCALES = {
  subtlety: ["extremely subtle", "moderately subtle", "fairly subtle", "moderately obvious", "obvious"],
  internalStructure: ["soft tissue", "fluid", "fat", "air"],
  calcification: ["popcorn", "laminated", "solid", "non-central", "central", "absent"],
  sphericity: ["linear", "ovoid/linear", "ovoid", "ovoid/round", "round"],
  margin: ["poorly defined", "near poorly defined", "medium margin", "near sharp", "sharp"],
  lobulation: ["none", "nearly none", "medium", "near marked", "marked"],
  spiculation: ["none", "nearly none", "medium", "near marked", "marked"],
  texture: ["non-solid/GGO", "non-solid/mixed", "part solid/mixed", "solid/mixed", "solid"],
  malignancy: ["highly unlikely", "moderately unlikely", "indeterminate", "moderately suspicious", "highly suspicious"],
};
// The encoder's levels, fine to coarse, in a reader's words (their technical names stay as a
// tooltip): the finest sees edges and texture, the coarsest the nodule with its surroundings.
const LEVEL_WORDS = ["fine detail: edges and texture", "local shape", "overall shape and size", "surroundings"];
// The search vector's blocks (a model with a search space, issue 29), in a reader's words.
const BLOCK_WORDS = {
  features: "image features (the network's)",
  size: "size",
  density: "density, calcium included",
  shape: "shape and margin",
  learned: "learned from readers' ratings",
};
const compare = { neighbor: null, sides: {}, offset: 0, step: 1, panes: {} };

/**
 * The meaning of a readers' median on an LIDC scale ("absent", "between ovoid and round").
 * @param {string} name a key of LIDC_SCALES
 * @param {number} value
 * @returns {string} "" for a name or value off the scale
 */
function ratingMeaning(name, value) {
  const scale = LIDC_SCALES[name];
  if (!scale || !given(value)) return "";
  const low = Math.floor(value + 1e-6), high = Math.ceil(value - 1e-6);
  if (low < 1 || high > scale.length) return "";
  return low === high ? scale[low - 1] : `between ${scale[low - 1]} and ${scale[high - 1]}`;
}

/**
 * A median rating with its meaning: "6 (absent)", "3.5 (between fairly subtle and …)".
 * @param {string} name
 * @param {number} value
 * @returns {string}
 */
function ratingText(name, value) {
  const number = Number.isInteger(value) ? String(value) : fmt(value, 1);
  const meaning = ratingMeaning(name, value);
  return meaning ? `${number} (${meaning})` : number;
}

/**
 * The whole scale of a characteristic, for a tooltip: "1 popcorn, 2 laminated, …".
 * @param {string} name
 * @returns {string}
 */
function scaleText(name) {
  return (LIDC_SCALES[name] || []).map((word, i) => `${i + 1} ${word}`).join(", ");
}

/**
 * A level of the search vector in a reader's words.
 * @param {string} name the API's name ("level 0 (full resolution)", "size profile (…)")
 * @param {number} nLevels how many encoder levels the model has
 * @returns {string}
 */
function levelWords(name, nLevels) {
  if (BLOCK_WORDS[name]) return BLOCK_WORDS[name];
  if (name.startsWith("size profile")) return "density from the centre outwards (size)";
  if (name === "bottleneck") return "overall appearance";
  const match = /^level (\d+)/.exec(name);
  if (!match) return name;
  const slot = nLevels > 1 ? Math.round(Number(match[1]) * (LEVEL_WORDS.length - 1) / (nLevels - 1)) : LEVEL_WORDS.length - 1;
  return LEVEL_WORDS[clamp(slot, [0, LEVEL_WORDS.length - 1])];
}

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

/**
 * The readers' texture with its LIDC meaning, and the nodule type it stands for when that says
 * more ("3 (part solid/mixed)" is part-solid; "2 (non-solid/mixed)" ground-glass).
 * @param {number} texture the readers' median
 * @returns {string}
 */
function textureLine(texture) {
  const type = textureType(texture);
  const text = `readers' texture ${ratingText("texture", texture)}`;
  return ratingMeaning("texture", texture).startsWith(type) ? text : `${text}: ${type}`;
}

/**
 * What is known of one side of the comparison, under its view.
 * @param {?Object} detail the catalogue nodule (null: a point or an upload, no ratings)
 * @param {?Object} size its size estimate
 * @returns {HTMLElement[]}
 */
function detailRows(detail, size) {
  const rows = [];
  if (detail) {
    const l = detail.labels;
    rows.push(el("div", {}, `#${detail.id} · patient ${detail.patient_id || "?"} · catalogue diameter `, el("b", {}, `${fmt(detail.diameter_mm)} mm`)));
    rows.push(el("div", {}, l
      ? `readers' malignancy ${l.ratings.join(", ")}${l.mean !== null ? ` (mean ${fmt(l.mean, 2)})` : ""} · ${labelText(l).text}`
      : "no readers' ratings"));
    const texture = detail.characteristics ? detail.characteristics.texture : null;
    if (given(texture)) rows.push(el("div", {}, textureLine(texture)));
  } else {
    rows.push(el("div", {}, "the query: no readers' ratings (not a catalogue nodule)"));
  }
  rows.push(size ? el("div", {}, `estimate: ${sizeText(size)}`) : el("div", { class: "note" }, "no size estimate at this centre"));
  return rows;
}

/**
 * "Why similar": the similarity of each level, named in a reader's words (the technical name
 * as its tooltip), and the readers' median ratings of both nodules with their meaning.
 */
function renderWhy(levels, similarities, queryChars, neighborChars, sizeForSearch) {
  const box = $("why-similar");
  const nLevels = levels.filter((name) => /^level \d+/.test(name)).length;
  const cells = [];
  if (sizeForSearch) {
    // Which size the size, density, shape and learned blocks were read at: an estimate is
    // said to be one, and without a size the image features alone searched.
    const at = given(sizeForSearch.diameter_mm) ? `${fmt(sizeForSearch.diameter_mm, 1)} mm, ` : "";
    cells.push(el("div", { class: "note", "data-testid": "why-size" }, `searched at ${at}${sizeForSearch.title}`));
  }
  (similarities || []).forEach((value, i) => {
    const technical = levels[i] || `part ${i}`;
    const bar = el("div", { class: "bar" }, el("div", { style: `width:${clamp(value, [0, 1]) * 100}%` }));
    cells.push(el("span", { class: "level-name", "data-testid": "why-level", title: technical }, levelWords(technical, nLevels)), bar, el("span", {}, fmt(value, 3)));
  });
  if (!cells.length) cells.push(el("span", {}, "No per-level similarity in this answer."));
  if (neighborChars) cells.push(characteristicsTable(queryChars, neighborChars));
  box.replaceChildren(...cells);
}

/**
 * The readers' median ratings of the query (when it has them) and the neighbour.
 * @param {?Object<string, number>} queryChars
 * @param {Object<string, number>} neighborChars
 * @returns {HTMLElement}
 */
function characteristicsTable(queryChars, neighborChars) {
  const note = queryChars ? "" : " (the query has no readers' ratings: only the neighbour's)";
  const table = el("table", {},
    el("caption", {}, `Readers' median ratings on the LIDC scales${note}`),
    el("tr", {}, el("th"), el("th", {}, "query"), el("th", {}, "neighbour"), el("th")));
  for (const [name, label] of Object.entries(CHARACTERISTIC_NAMES)) {
    const q = queryChars ? queryChars[name] : undefined, n = neighborChars[name];
    if (n === undefined && q === undefined) continue;
    const shared = q !== undefined && n !== undefined && Math.round(q) === Math.round(n);
    const value = (v, side) => el("td", { class: side }, v === undefined ? "–" : ratingText(name, v));
    table.appendChild(el("tr", { class: shared ? "shared" : "", "data-testid": "why-characteristic", "data-name": name },
      el("td", { title: `LIDC scale: ${scaleText(name)}` }, label), value(q, "query"), value(n, "neighbor"), el("td", {}, shared ? "shared" : "")));
  }
  return table;
}

/**
 * Size the corner brackets of a comparison view outside the nodule's radius.
 * @param {string} which "query" or "neighbor"
 * @param {?number} radiusMm the nodule's radius (null: a small nodule's)
 */
function placeCompareMark(which, radiusMm) {
  const half = (given(radiusMm) ? radiusMm : DEFAULT_MARK_RADIUS_MM) + COMPARE_MARK_MARGIN_MM;
  const share = clamp(2 * half / COMPARE_FOV_MM, [0.05, 0.95]) * 100;
  const mark = $(`compare-${which}-mark`);
  mark.style.width = `${share}%`;
  mark.style.height = `${share}%`;
  mark.dataset.halfMm = half.toFixed(2);
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
  // A point inside an indexed nodule is that nodule: the service names it in query.nodule_id.
  const queryNodule = queryNoduleId(q);
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
  $("compare-query-details").replaceChildren(...detailRows(queryDetail, queryDetail ? queryDetail.size_estimate : result.size_estimate));
  $("compare-neighbor-details").replaceChildren(...detailRows(neighborDetail, neighborDetail.size_estimate));
  placeCompareMark("query", queryMarkRadiusMm(result, queryDetail));
  placeCompareMark("neighbor", neighborDetail.diameter_mm / 2);
  renderWhy(q.levels || [], n.level_similarity, queryDetail ? queryDetail.characteristics : null, neighborDetail.characteristics, q.size_for_search);
  setCompareOffset(0);
}

/**
 * The radius the query view's brackets keep clear around its centre (the point searched): its
 * catalogue nodule's, reaching from the point; else the measured or estimated size.
 * @param {Object} result state.result
 * @param {?Object} detail the query's catalogue nodule
 * @returns {?number} mm
 */
function queryMarkRadiusMm(result, detail) {
  const q = result.query;
  if (detail && q.center_xyz) {
    const off = Math.hypot(...detail.center_xyz.map((v, i) => v - q.center_xyz[i]));
    return detail.diameter_mm / 2 + off;
  }
  const size = result.size_measured || result.size_estimate;
  return size ? size.long_axis_mm / 2 : null;
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
    if (isQuery || isNeighbour) c.setAttribute("data-role", isQuery ? "query" : "neighbour");
    c.addEventListener("mousemove", (e) => {
      const tip = $("map-tip");
      tip.textContent = `#${p.id} · ${fmt(p.diameter_mm)} mm · ${p.label_4class ? `class ${p.label_4class}` : "no label"}`;
      tip.style.left = `${e.clientX + 12}px`;
      tip.style.top = `${e.clientY + 12}px`;
      tip.hidden = false;
    });
    c.addEventListener("mouseleave", () => { $("map-tip").hidden = true; });
    c.addEventListener("click", () => openMapNodule(p.id));
    svg.appendChild(c);
  }
}

/**
 * A map point clicked: its scan opens at its slice, and it becomes the next query.
 * @param {number} id a catalogue nodule
 */
async function openMapNodule(id) {
  const search = searchNodule(id);
  try {
    const nodule = await (await api(`/v1/nodules/${id}`)).json();
    await showScanAt(nodule.series_uid, nodule.center_xyz);
  } catch (e) {
    showSliceNotice(`nodule #${id}: ${e.message}`);
  }
  await search;
}

// ---- start ----------------------------------------------------------------------------------
/**
 * A link from a PACS viewer (the OHIF panel's "Compare"): ``?series_uid=…&center_xyz=x,y,z``
 * (with ``study_uid`` for a PACS study, ``k``) searches that point as the point form would, and
 * ``compare=<id>`` then opens the comparison with that neighbour.
 */
async function openLink() {
  const params = new URLSearchParams(window.location.search);
  const uid = params.get("series_uid");
  const center = (params.get("center_xyz") || "").split(",").map(Number);
  if (!uid || center.length !== 3 || center.some((v) => !Number.isFinite(v))) return;
  const body = {
    series_uid: uid,
    center_xyz: center,
    k: Number(params.get("k")) || 5,
    filters: { labelled_only: false },
    estimate_size: true,
  };
  if (params.get("study_uid")) body.study_uid = params.get("study_uid");
  $("k").value = String(body.k);
  // The point form shows the series at the point too (a PACS series: with its OHIF link).
  showScanAt(uid, center).catch((e) => showSliceNotice(e.message));
  await searchCoordinate(body);
  const wanted = Number(params.get("compare"));
  const neighbour = state.result && state.result.neighbors.find((n) => n.id === wanted);
  if (neighbour) await openCompare(neighbour);
  else if (params.get("compare") && state.result) showSliceNotice(`nodule #${params.get("compare")} is not among this search's neighbours`);
}

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
  document.querySelectorAll("button.wl[data-preset]").forEach((b) => b.addEventListener("click", () => applyPreset(b.dataset.preset)));
  const box = $("slice-box");
  box.addEventListener("mousedown", startWlDrag);
  box.addEventListener("contextmenu", (e) => e.preventDefault());
  window.addEventListener("mousemove", moveWlDrag);
  window.addEventListener("mouseup", endWlDrag);
  $("axial").addEventListener("click", clickOnSlice);
  $("axial").addEventListener("wheel", (e) => {
    // Scroll through slices, one voxel step at a time.
    e.preventDefault();
    stepSlices(Math.sign(e.deltaY));
  }, { passive: false });
  window.addEventListener("resize", drawOverlays);
  document.addEventListener("keydown", keyOnPage);
  $("ruler-toggle").addEventListener("click", () => setRulerMode(!state.ruler.active));
  $("ruler-clear").addEventListener("click", clearRuler);
  $("point-form").addEventListener("submit", searchPoint);
  $("upload-form").addEventListener("submit", searchUpload);
  $("nodule-form").addEventListener("submit", (e) => { e.preventDefault(); searchNodule($("nodule-id").value); });
  $("save-sr").addEventListener("click", saveSr);
  $("compare-close").addEventListener("click", closeCompare);
  $("compare").addEventListener("click", (e) => { if (e.target === $("compare")) closeCompare(); });
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
    await openLink();
    document.body.dataset.ready = "true";
  } catch (e) {
    showResultError(e.message);
  }
}

document.addEventListener("DOMContentLoaded", start);

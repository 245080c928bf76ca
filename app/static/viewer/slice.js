// @ts-check
/**
 * The axial view: the slice at the point's z (loaded single-flight), its window/level (presets
 * from the vocabulary, right- or Shift-drag), the point marker, the ruler, slice keys and the
 * wheel, the typed point checked against the scan, and the OHIF link of a PACS scan's point.
 */

import { api, axialPath } from "./api.js";
import { $, el, image, input, showBlob, svgEl } from "./dom.js";
import { fmt, given } from "./format.js";
import {
  SMALL_NODULE_RADIUS_MM, checkPoint, distanceMm, markRadiusMm, measuredAxes, rulerClick, rulerKinds,
  screenPxPerMm, screenToWorld, worldToScreen,
} from "./geometry.js";
import { SingleFlightLoader } from "./loader.js";
import { refreshResultImages } from "./results.js";
import { state } from "./state.js";
import { clampWindow, presetNamed } from "./vocabulary.js";
import { RULER_PROMPTS, presetWords, windowText } from "./words.js";

// HU per screen pixel of a window/level drag.
const DRAG_WIDTH_PER_PX = 4;
const DRAG_LEVEL_PER_PX = 2;
// Keyboard slice scrolling: Up/Down one slice, Page Up/Down this many.
const PAGE_SLICES = 10;
// The point marker's gap: the radius of the nodule under the point (else a small one's), plus this.
const MARK_MARGIN_PX = 4;
const SLICE_KEYS = /** @type {Object<string, number>} */ ({ ArrowUp: 1, ArrowDown: -1, PageUp: PAGE_SLICES, PageDown: -PAGE_SLICES });

/** @typedef {{url: string, uid: string, z: number, wl: {width: number, level: number}}} SliceWish */

/** @type {SingleFlightLoader<SliceWish>} */
const slices = new SingleFlightLoader({
  fetch: (url) => api.request(url),
  show: showSlice,
  fail: (_wish, e) => showSliceNotice(`slice: ${(e instanceof Error && e.message) || "the image could not be shown"}`),
  busy: (busy) => { $("slice-spinner").hidden = !busy; },
});

/**
 * Ask for the slice at a z in the current window: the latest wish wins.
 * @param {number} z world mm
 */
function requestSlice(z) {
  if (!state.scan) return;
  const wl = { width: state.wl.width, level: state.wl.level };
  slices.want({ url: axialPath(state.scan.series_uid, Number(z), wl), uid: state.scan.series_uid, z: Number(z), wl });
}

/** @returns {?number} the z asked for last (the slice on screen when nothing is pending) */
function wantedZ() {
  return slices.pending ? slices.pending.z : state.sliceZ;
}

/**
 * @param {SliceWish} wish
 * @param {Blob} blob
 * @param {Response} response
 */
async function showSlice(wish, blob, response) {
  if (!state.scan || wish.uid !== state.scan.series_uid) return; // another scan opened meanwhile
  const img = image("axial");
  const pixel = Number(response.headers.get("X-Pixel-MM"));
  await showBlob(img, blob);
  state.sliceZ = wish.z;
  state.pixelMm = pixel;
  // What is on screen, for people and for tests: the slice's world z, pixel and window.
  img.dataset.series = wish.uid;
  img.dataset.z = wish.z.toFixed(2);
  img.dataset.pixelMm = String(pixel);
  img.dataset.window = String(Math.round(wish.wl.width));
  img.dataset.level = String(Math.round(wish.wl.level));
  $("slice-label").textContent = `axial z ${wish.z.toFixed(2)} mm · ${img.naturalWidth}×${img.naturalHeight} px at ${pixel.toFixed(2)} mm`;
  drawOverlays();
}

/** A newly opened scan: nothing of the previous one's slice or ruler stays. */
export function resetSlice() {
  state.sliceZ = null;
  clearRuler();
}

// ---- window / level ---------------------------------------------------------------------------

/**
 * The window presets of the vocabulary as buttons, after each "Window" label marked
 * data-presets (its value prefixes the buttons' test ids: "wl-lung", "compare-wl-lung").
 */
export function showPresets() {
  document.querySelectorAll("[data-presets]").forEach((holder) => {
    if (!(holder instanceof HTMLElement)) return;
    holder.parentElement?.querySelectorAll("button.wl[data-preset]").forEach((b) => b.remove());
    const buttons = state.vocabulary.window_presets.map((preset) => {
      const words = presetWords(preset);
      const button = el("button", {
        type: "button", class: "wl", "data-preset": preset.name,
        "data-testid": `${holder.dataset.presets}-${preset.name}`, title: words.title,
      }, words.label);
      button.addEventListener("click", () => applyPreset(preset.name));
      return button;
    });
    holder.after(...buttons);
  });
  showWl();
}

function showWl() {
  document.querySelectorAll("button.wl[data-preset]").forEach((b) => {
    b.classList.toggle("active", b instanceof HTMLElement && b.dataset.preset === state.wl.preset);
  });
  $("wl-readout").textContent = windowText(state.wl);
}

/**
 * The window of the slice (and of the next images asked for), within the service's bounds.
 * @param {number} width HU
 * @param {number} level HU
 * @param {?string} preset the preset it is, null for a dragged one
 */
export function setWindow(width, level, preset) {
  state.wl = { ...clampWindow(state.vocabulary, width, level), preset };
  showWl();
  if (state.sliceZ !== null) requestSlice(state.sliceZ);
}

/**
 * A window preset for the slice, the result's images and the comparison.
 * @param {string} name a preset of the vocabulary
 */
export function applyPreset(name) {
  const preset = presetNamed(state.vocabulary, name);
  if (!preset) return;
  setWindow(preset.width, preset.level, name);
  refreshResultImages();
}

/** @param {MouseEvent} event */
function startWlDrag(event) {
  // Right button, or Shift with the left one: the plain left click stays "set the point".
  if (!(event.button === 2 || (event.button === 0 && event.shiftKey))) return;
  event.preventDefault();
  state.drag = { x: event.clientX, y: event.clientY, width: state.wl.width, level: state.wl.level, moved: false };
  $("slice-box").classList.add("wl-drag");
}

/** @param {MouseEvent} event */
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

// ---- the point and its marker -----------------------------------------------------------------

/** @returns {?import("./geometry.js").View} the axial image as drawn, null before a slice is */
function view() {
  const img = image("axial");
  if (!state.scan || !state.pixelMm || !img.naturalWidth) return null;
  return {
    origin: state.scan.extent_min_xyz, pixelMm: state.pixelMm,
    naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
    clientWidth: img.clientWidth, clientHeight: img.clientHeight,
  };
}

/** @returns {number[]} the point as the fields hold it */
function fieldPoint() {
  return ["x", "y", "z"].map((id) => Number(input(id).value));
}

function drawOverlays() {
  placeCrosshair();
  drawRuler();
}

function placeCrosshair() {
  const mark = $("crosshair");
  const xyz = fieldPoint();
  const shown = view();
  if (!shown) { mark.hidden = true; return; }
  const at = worldToScreen(shown, xyz[0], xyz[1]);
  const radius = markRadiusMm((state.scan && state.scan.nodules) || [], xyz, SMALL_NODULE_RADIUS_MM);
  const gap = radius * screenPxPerMm(shown) + MARK_MARGIN_PX;
  mark.style.left = `${at.left}px`;
  mark.style.top = `${at.top}px`;
  mark.style.setProperty("--gap", `${gap.toFixed(1)}px`);
  mark.dataset.gapPx = gap.toFixed(1);
  mark.hidden = false;
}

/**
 * Move the point (the fields, the slider, the slice and the marker).
 * @param {number[]} xyz world mm
 */
export function setPoint(xyz) {
  input("x").value = Number(xyz[0]).toFixed(2);
  input("y").value = Number(xyz[1]).toFixed(2);
  input("z").value = Number(xyz[2]).toFixed(2);
  input("z-slider").value = String(xyz[2]);
  checkTypedPoint();
  requestSlice(Number(input("z").value));
  pointMoved();
}

/** The point changed: its marker, and for a PACS series its OHIF link once the point rests. */
function pointMoved() {
  placeCrosshair();
  if (state.ohif.timer !== null) clearTimeout(state.ohif.timer);
  state.ohif.timer = setTimeout(updateOhifLink, 300);
}

/**
 * "Open in OHIF at this slice" for a scan read from the PACS, when the service names an OHIF
 * Viewer over that PACS (GET /v1/scans/{uid}/ohif); hidden otherwise.
 */
async function updateOhifLink() {
  const link = /** @type {HTMLAnchorElement} */ ($("ohif-link"));
  const seq = ++state.ohif.seq;
  const point = checkTypedPoint();
  if (!state.scan || !state.scan.from_pacs || point.some((v) => v === null)) { link.hidden = true; return; }
  try {
    const answer = await api.ohifLink(state.scan.series_uid, /** @type {number[]} */ (point));
    if (seq !== state.ohif.seq) return;
    link.href = answer.url;
    link.hidden = false;
  } catch {
    if (seq === state.ohif.seq) link.hidden = true; // no OHIF configured, or the point is off the slices
  }
}

/** @param {MouseEvent} event */
function clickOnSlice(event) {
  if (state.suppressClick) { state.suppressClick = false; return; }
  const shown = view();
  if (!shown || state.sliceZ === null) return;
  const [x, y] = screenToWorld(shown, event.offsetX, event.offsetY);
  if (state.ruler.active) { addRulerPoint(x, y); return; }
  input("x").value = x.toFixed(2);
  input("y").value = y.toFixed(2);
  // The point's z is the slice on screen, so image and query always agree.
  input("z").value = state.sliceZ.toFixed(2);
  checkTypedPoint();
  pointMoved();
}

/**
 * Move the axial view by whole slices (the wheel, the arrow keys, Page Up/Down).
 * @param {number} count positive: towards the head (higher z)
 */
function stepSlices(count) {
  const slider = input("z-slider");
  // From the slice asked for last (the slider snaps to its steps; a typed z need not).
  const wanted = wantedZ();
  const current = given(wanted) ? wanted : Number(slider.value);
  const next = Math.min(Number(slider.max), Math.max(Number(slider.min), current + count * Number(slider.step)));
  slider.value = String(next);
  input("z").value = next.toFixed(2);
  checkTypedPoint();
  requestSlice(next);
}

/**
 * Up/Down: one slice; Page Up/Down: PAGE_SLICES. Only while the focus is on the slice, its
 * toolbar or nowhere in particular: fields and lists keep their own keys.
 * @param {KeyboardEvent} event
 */
export function keyOnSlice(event) {
  const count = SLICE_KEYS[event.key];
  if (!count || !state.scan || !$("compare").hidden || $("point-form").hidden) return;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  const onSlice = target === document.body
    || (target instanceof Node && $("slice-box").contains(target))
    || (target instanceof Element && Boolean(target.closest(".wl-bar")));
  if (!onSlice) return;
  event.preventDefault();
  stepSlices(count);
}

// ---- the ruler --------------------------------------------------------------------------------

/** @param {boolean} active */
function setRulerMode(active) {
  state.ruler.active = active;
  $("ruler-toggle").setAttribute("aria-pressed", String(active));
  $("slice-box").classList.toggle("ruler-mode", active);
}

export function clearRuler() {
  state.ruler.points = [];
  state.ruler.z = null;
  drawRuler();
}

/**
 * @param {number} x world mm
 * @param {number} y world mm
 */
function addRulerPoint(x, y) {
  if (state.sliceZ === null) return;
  const next = rulerClick(state.ruler, [x, y], state.sliceZ);
  state.ruler.points = next.points;
  state.ruler.z = next.z;
  drawRuler();
}

function drawRuler() {
  const layer = $("ruler-layer");
  layer.replaceChildren();
  const { points, z } = state.ruler;
  /** @type {HTMLButtonElement} */ ($("ruler-clear")).disabled = !points.length;
  showRulerReadout();
  const shown = view();
  if (!points.length || !shown || state.sliceZ === null || z === null || Math.abs(z - state.sliceZ) > 1e-6) return;
  const screen = points.map(([x, y]) => worldToScreen(shown, x, y));
  const [first, second] = rulerKinds(points);
  drawRulerAxis(layer, screen.slice(0, 2), points.slice(0, 2), first);
  if (points.length > 2) drawRulerAxis(layer, screen.slice(2, 4), points.slice(2, 4), second);
}

/**
 * One axis of the ruler: its end marks, and the line with its length once both ends are set.
 * @param {Element} layer
 * @param {{left: number, top: number}[]} ends on screen
 * @param {number[][]} world the same ends in world mm
 * @param {string} kind "long" or "short"
 */
function drawRulerAxis(layer, ends, world, kind) {
  for (const end of ends) layer.append(svgEl("circle", { cx: end.left, cy: end.top, r: 2.5, class: kind }));
  if (ends.length < 2) return;
  const [a, b] = ends;
  layer.append(svgEl("line", { x1: a.left, y1: a.top, x2: b.left, y2: b.top, class: kind, "data-testid": `ruler-${kind}` }));
  // The length beyond the second end, along the line, so that two crossing axes' labels part.
  const length = Math.hypot(b.left - a.left, b.top - a.top) || 1;
  const ux = (b.left - a.left) / length, uy = (b.top - a.top) / length;
  layer.append(svgEl("text", {
    x: b.left + ux * 10, y: b.top + 4 + uy * 14,
    "text-anchor": Math.abs(ux) < 0.3 ? "middle" : ux > 0 ? "start" : "end",
    class: kind, "data-testid": `ruler-${kind}-label`,
  }, `${fmt(distanceMm(world[0], world[1]))} mm`));
}

function showRulerReadout() {
  const box = $("ruler-readout");
  const p = state.ruler.points;
  box.hidden = !p.length && !state.ruler.active;
  if (box.hidden) return;
  /** @type {(Node|string)[]} */
  const parts = ["Ruler: "];
  const axes = measuredAxes(p);
  if (axes) {
    parts.push(el("span", { class: "long" }, `long axis ${fmt(axes.long_axis_mm)} mm`), " · ",
      el("span", { class: "short" }, `short axis ${fmt(axes.short_axis_mm)} mm`), " · goes with the search");
  } else {
    if (p.length >= 2) parts.push(el("span", { class: "long" }, `long axis ${fmt(distanceMm(p[0], p[1]))} mm`), " · ");
    parts.push(RULER_PROMPTS[p.length]);
  }
  box.replaceChildren(...parts);
}

// ---- the typed point --------------------------------------------------------------------------

/** @param {string} message "" hides the notice */
export function showSliceNotice(message) {
  const box = $("slice-notice");
  box.textContent = message;
  box.hidden = !message;
}

/**
 * The typed point against the scan's extent: each field marked, the problems named under the
 * slice.
 * @returns {(?number)[]} the valid coordinates (null where not)
 */
function checkTypedPoint() {
  const fields = ["x", "y", "z"].map((axis) => input(axis));
  const { values, problems } = checkPoint(fields.map((f) => f.value), state.scan);
  fields.forEach((f, i) => f.classList.toggle("invalid", values[i] === null));
  showSliceNotice(problems.join("; "));
  return values;
}

/** Typing in x, y or z: the slice follows z and the marker x/y, once the typing pauses. */
export function applyTypedPoint() {
  if (state.typing !== null) clearTimeout(state.typing);
  state.typing = null;
  const [, , z] = checkTypedPoint();
  if (z !== null) {
    input("z-slider").value = String(z);
    const pending = wantedZ();
    if (pending === null || Math.abs(pending - z) > 1e-6) requestSlice(z);
  }
  pointMoved();
}

/** Wire the view's own controls (the fields, the slider, the image, the toolbar). */
export function wireSlice() {
  input("z-slider").addEventListener("input", (e) => {
    const value = Number(/** @type {HTMLInputElement} */ (e.target).value);
    input("z").value = value.toFixed(2);
    checkTypedPoint();
    requestSlice(value);
  });
  for (const axis of ["x", "y", "z"]) {
    input(axis).addEventListener("input", () => {
      if (state.typing !== null) clearTimeout(state.typing);
      state.typing = setTimeout(applyTypedPoint, 250);
    });
    input(axis).addEventListener("change", applyTypedPoint);
  }
  const box = $("slice-box");
  box.addEventListener("mousedown", startWlDrag);
  box.addEventListener("contextmenu", (e) => e.preventDefault());
  window.addEventListener("mousemove", moveWlDrag);
  window.addEventListener("mouseup", endWlDrag);
  const img = image("axial");
  img.addEventListener("click", clickOnSlice);
  img.addEventListener("wheel", (e) => {
    // Scroll through slices, one voxel step at a time.
    e.preventDefault();
    stepSlices(Math.sign(e.deltaY));
  }, { passive: false });
  window.addEventListener("resize", drawOverlays);
  $("ruler-toggle").addEventListener("click", () => setRulerMode(!state.ruler.active));
  $("ruler-clear").addEventListener("click", clearRuler);
}

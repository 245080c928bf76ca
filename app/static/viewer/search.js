// @ts-check
/**
 * The three searches (a point in a scan, an uploaded file, an indexed nodule): their requests
 * as the forms describe them, one at a time (a new one aborts the previous, and only the latest
 * answer is drawn), each answer handed to the results.
 */

import { api, nodulePreviewPath, scanPreviewPath } from "./api.js";
import { $, input } from "./dom.js";
import { measuredAxes } from "./geometry.js";
import { renderResult, setBusy, showResultError } from "./results.js";
import { applyTypedPoint } from "./slice.js";
import { state } from "./state.js";

/** @typedef {import("./api.js").CoordinateBody} CoordinateBody */
/** @typedef {import("./api.js").SearchResponse} SearchResponse */

/**
 * @typedef {import("./words.js").SearchHow & {
 *   result: SearchResponse, preview: ?{url: string, windowed: boolean}}} Answer
 */

/**
 * Run one search: the previous one is aborted, the spinner shown, the answer (or the error)
 * drawn unless a newer search started meanwhile.
 * @param {string} label what the spinner says
 * @param {(signal: AbortSignal) => Promise<Answer>} request
 */
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
    showResultError(e instanceof Error ? e.message : String(e));
  } finally {
    if (seq === state.search.seq) {
      state.search.controller = null;
      setBusy(false);
    }
  }
}

/** @returns {number} the point form's k */
function pointK() {
  return Number(input("k").value) || 5;
}

/** @returns {boolean} whether the queried patient's other nodules may answer */
export function includeOwnPatient() {
  return input("include-own-patient").checked;
}

/**
 * The body of a coordinate search, and of the SR of it (POST /v1/reports/sr takes the same).
 * @param {number[]} center world mm
 * @returns {CoordinateBody}
 */
function coordinateBody(center) {
  /** @type {CoordinateBody} */
  const body = {
    series_uid: state.scan ? state.scan.series_uid : /** @type {HTMLSelectElement} */ ($("scan-select")).value,
    center_xyz: center,
    k: pointK(),
    filters: { labelled_only: input("labelled-only").checked },
    estimate_size: true,
    include_own_patient: includeOwnPatient(),
  };
  const axes = measuredAxes(state.ruler.points);
  if (axes) body.measured_axes_mm = axes;
  return body;
}

/** @param {SubmitEvent} event the point form's */
export async function searchPoint(event) {
  event.preventDefault();
  applyTypedPoint();
  const center = ["x", "y", "z"].map((id) => Number(input(id).value));
  await searchCoordinate(coordinateBody(center));
}

/**
 * A coordinate search (the point form's, or a link's) and its result drawn.
 * @param {CoordinateBody} body
 */
export async function searchCoordinate(body) {
  await runSearch("Searching similar nodules…", async (signal) => ({
    result: await api.searchCoordinate(body, signal),
    preview: { url: scanPreviewPath(body.series_uid, body.center_xyz), windowed: true },
    sized: true,
    request: body,
  }));
}

/** @param {SubmitEvent} event the upload form's */
export async function searchUpload(event) {
  event.preventDefault();
  const file = input("upload-file").files?.[0];
  if (!file) { showResultError("choose a file to upload"); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  const center = input("upload-center").value, spacing = input("upload-spacing").value;
  if (center.trim()) form.append("center_xyz", center);
  if (spacing.trim()) form.append("spacing_zyx", spacing);
  form.append("k", input("upload-k").value || "5");
  form.append("preview", "true");
  const mask = input("upload-mask").files?.[0];
  if (mask) form.append("mask", mask, mask.name);
  else form.append("estimate_size", "true");
  await runSearch(`Uploading ${file.name} and searching…`, async (signal) => {
    const result = await api.searchUpload(form, signal);
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
export async function searchNodule(id) {
  const nodule = Number(id);
  const k = pointK();
  const include = includeOwnPatient();
  input("nodule-id").value = String(nodule);
  await runSearch(`Searching nodules similar to #${nodule}…`, async (signal) => {
    let excluded = null;
    if (!include) {
      const detail = await api.nodule(nodule, { signal });
      excluded = detail.patient_id || null;
    }
    const result = await api.similar(nodule, k, excluded, signal);
    return { result, preview: { url: nodulePreviewPath(nodule), windowed: true }, excludedPatient: excluded, included: include };
  });
}

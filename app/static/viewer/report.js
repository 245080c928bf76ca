// @ts-check
/**
 * "Save as DICOM SR + SEG": the shown search as a DICOM Structured Report of the queried study
 * (POST /v1/reports/sr?seg=true, with the search's own body), and the SEG of its mask when one
 * could be grown, downloaded as one file each.
 */

import { api, boundaryOf, splitMultipart } from "./api.js";
import { $ } from "./dom.js";
import { includeOwnPatient } from "./search.js";
import { state } from "./state.js";

/** @typedef {import("./api.js").CoordinateBody} CoordinateBody */

/**
 * The SR's request: the coordinate search as it was sent (its patient choice and ruler
 * measurement included); an indexed nodule's search as a search at its centre.
 * @param {NonNullable<typeof state.result>} result
 * @param {boolean} includeOwn the patient switch now (for a search that sent no body)
 * @returns {?CoordinateBody} null for a query with no series (an upload)
 */
export function srBody(result, includeOwn) {
  if (result.request) return { ...result.request };
  const q = result.query;
  if (!q.series_uid || !q.center_xyz) return null;
  return { series_uid: q.series_uid, center_xyz: q.center_xyz, k: result.neighbors.length || 5, include_own_patient: includeOwn };
}

/**
 * @param {Uint8Array} bytes
 * @param {string} name
 */
function download(bytes, name) {
  const url = URL.createObjectURL(new Blob([/** @type {BlobPart} */ (bytes)], { type: "application/dicom" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function saveSr() {
  const result = state.result;
  const body = result && srBody(result, includeOwnPatient());
  if (!body) return;
  const notice = $("sr-notice");
  notice.textContent = "Writing the DICOM SR…";
  try {
    const response = await api.reportSr(body);
    // multipart/related: the SR, then the SEG when a mask could be grown.
    const boundary = boundaryOf(response.headers.get("Content-Type") || "");
    const data = new Uint8Array(await response.arrayBuffer());
    const parts = boundary ? splitMultipart(data, boundary) : [data];
    parts.forEach((part, i) => download(part, i === 0 ? "nodule-search-sr.dcm" : "nodule-search-seg.dcm"));
    notice.textContent = parts.length > 1 ? "Saved: the SR and the SEG of the estimated mask." : "Saved: the SR (no mask could be grown, so no SEG).";
  } catch (e) {
    notice.textContent = e instanceof Error ? e.message : String(e);
  }
}

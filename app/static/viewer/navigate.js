// @ts-check
/**
 * Arriving somewhere other than by the forms: a link from a PACS viewer (the OHIF panel's
 * "Compare"), `/?series_uid=…&center_xyz=x,y,z[&study_uid=…][&k=…][&compare=<id>]`, searches
 * that point as the point form would and opens the comparison with that neighbour; a map point
 * opens its nodule's scan at its slice and makes it the next query.
 */

import { api } from "./api.js";
import { input } from "./dom.js";
import { openCompare } from "./compare.js";
import { showScanAt } from "./scans.js";
import { searchCoordinate, searchNodule } from "./search.js";
import { showSliceNotice } from "./slice.js";
import { state } from "./state.js";

/**
 * @typedef {Object} Link
 * @property {import("./api.js").CoordinateBody} body  the search the link asks for
 * @property {?string} compare  the neighbour to open side by side, as the link names it
 */

/**
 * A page address's link, or null when it names no series at a valid point.
 * @param {string} search the address's query string ("?series_uid=…")
 * @returns {?Link}
 */
export function parseLink(search) {
  const params = new URLSearchParams(search);
  const uid = params.get("series_uid");
  const center = (params.get("center_xyz") || "").split(",").map(Number);
  if (!uid || center.length !== 3 || center.some((v) => !Number.isFinite(v))) return null;
  /** @type {import("./api.js").CoordinateBody} */
  const body = {
    series_uid: uid,
    center_xyz: center,
    k: Number(params.get("k")) || 5,
    filters: { labelled_only: false },
    estimate_size: true,
  };
  const study = params.get("study_uid");
  if (study) body.study_uid = study;
  return { body, compare: params.get("compare") };
}

/** The page's own address as a link: the series shown at the point, searched, compared. */
export async function openLink() {
  const link = parseLink(window.location.search);
  if (!link) return;
  const { body } = link;
  input("k").value = String(body.k);
  // The point form shows the series at the point too (a PACS series: with its OHIF link).
  showScanAt(body.series_uid, body.center_xyz).catch((e) => showSliceNotice(e instanceof Error ? e.message : String(e)));
  await searchCoordinate(body);
  if (!link.compare || !state.result) return;
  const wanted = Number(link.compare);
  const neighbour = state.result.neighbors.find((n) => n.id === wanted);
  if (neighbour) await openCompare(neighbour);
  else showSliceNotice(`nodule #${link.compare} is not among this search's neighbours`);
}

/**
 * A map point clicked: its scan opens at its slice, and it becomes the next query.
 * @param {number} id a catalogue nodule
 */
export async function openMapNodule(id) {
  const search = searchNodule(id);
  try {
    const nodule = await api.nodule(id);
    await showScanAt(nodule.series_uid, nodule.center_xyz);
  } catch (e) {
    showSliceNotice(`nodule #${id}: ${e instanceof Error ? e.message : e}`);
  }
  await search;
}

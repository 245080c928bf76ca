// @ts-check
/**
 * The page's one mutable state: what is open, shown and asked for. Every module reads and
 * writes it here; nothing else is kept in globals. Nothing in it touches the DOM.
 */

import { given } from "./format.js";
import { NO_VOCABULARY } from "./vocabulary.js";

/** @typedef {import("./api.js").Scan} Scan */
/** @typedef {import("./api.js").ScanSummary} ScanSummary */
/** @typedef {import("./api.js").SearchResponse} SearchResponse */

/**
 * @typedef {Object} Shown  a search's answer as drawn, with what it needs to be redrawn
 * @property {?{url: string, windowed: boolean}} preview  the query's slices (windowed: a PNG
 *   endpoint that takes the window; else the upload's own patch)
 * @property {?import("./api.js").CoordinateBody} request  the coordinate search's body (its SR)
 */

/**
 * @typedef {Object} Drag  a window/level drag under way
 * @property {number} x  where it started, screen px
 * @property {number} y
 * @property {number} width  the window it started from, HU
 * @property {number} level
 * @property {boolean} moved  past the few pixels a click may wander
 */

export const state = {
  /** The service's domain terms (GET /v1/vocabulary), once fetched. */
  vocabulary: NO_VOCABULARY,
  /** @type {?import("./api.js").IndexInfo} */
  index: null,
  /** @type {?Scan} the scan shown */
  scan: null,
  /** The catalogue's scans by series UID (GET /v1/scans: patient, nodules, dicom). */
  scans: /** @type {Map<string, ScanSummary>} */ (new Map()),
  /** World mm per pixel of the axial slice shown (its X-Pixel-MM); null before one is. */
  pixelMm: /** @type {?number} */ (null),
  /** The world z of the axial slice shown; null before one is. */
  sliceZ: /** @type {?number} */ (null),
  /** The display window of every image: the slice, the results' thumbnails, the comparison. */
  wl: { width: 0, level: 0, preset: /** @type {?string} */ (null) },
  /** @type {?Drag} */
  drag: null,
  /** The click that ends a Shift-drag does not set the point. */
  suppressClick: false,
  /** @type {?ReturnType<typeof setTimeout>} the pause after typing in x, y or z */
  typing: null,
  /** Ruler: up to four clicks on one axial slice, world [x, y] mm; the first two one axis. */
  ruler: { active: false, points: /** @type {import("./geometry.js").XY[]} */ ([]), z: /** @type {?number} */ (null) },
  /** The OHIF link of a PACS scan's point: the latest wish, fetched once the point rests. */
  ohif: { timer: /** @type {?ReturnType<typeof setTimeout>} */ (null), seq: 0 },
  /** Searches: a new one aborts the previous; only the latest one's answer is drawn. */
  search: { seq: 0, controller: /** @type {?AbortController} */ (null) },
  /** @type {?(SearchResponse & Shown)} the answer shown */
  result: null,
  /** The map: every catalogue nodule, and the query and its neighbours to ring. */
  map: /** @type {import("./api.js").MapPoint[]} */ ([]),
  highlight: { query: /** @type {?number} */ (null), neighbours: /** @type {number[]} */ ([]) },
};

/**
 * Whether a series is stored as DICOM, so that an SR can be made of a search in it.
 * @param {?string|undefined} uid
 * @returns {boolean}
 */
export function isDicomSeries(uid) {
  if (!uid) return false;
  if (state.scan && state.scan.series_uid === uid && given(state.scan.dicom)) return state.scan.dicom === true;
  const summary = state.scans.get(uid);
  return Boolean(summary && summary.dicom === true);
}

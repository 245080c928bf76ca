// @ts-check
/**
 * World millimetres and screen pixels: the axial view's mapping, the point marker's clearance,
 * the ruler's axes, a typed point against the scan, the comparison's shared offset. World
 * coordinates are mm in the ITK/LPS frame; the axial PNG is world-aligned (x grows to the
 * patient's left, y to the back), so a pixel is the scan's extent plus its index times the pixel
 * size. Pure functions, unit-tested in the browser.
 */

import { clamp, fmt, given } from "./format.js";

/** The radius a marker keeps clear where no nodule's is known: a small nodule's. */
export const SMALL_NODULE_RADIUS_MM = 3;

/**
 * @typedef {Object} View  the axial image as drawn
 * @property {number[]} origin  world x, y (mm) of the first pixel's centre
 * @property {number} pixelMm  world mm per image pixel
 * @property {number} naturalWidth
 * @property {number} naturalHeight
 * @property {number} clientWidth
 * @property {number} clientHeight
 */

/**
 * Screen pixels (CSS px, relative to the image) of a world point.
 * @param {View} view
 * @param {number} x world mm
 * @param {number} y world mm
 * @returns {{left: number, top: number}}
 */
export function worldToScreen(view, x, y) {
  const col = (x - view.origin[0]) / view.pixelMm;
  const row = (y - view.origin[1]) / view.pixelMm;
  return {
    left: (col + 0.5) * view.clientWidth / view.naturalWidth,
    top: (row + 0.5) * view.clientHeight / view.naturalHeight,
  };
}

/**
 * The world x, y (mm) of a point on the image (CSS px from its corner, as a MouseEvent's offset).
 * @param {View} view
 * @param {number} offsetX
 * @param {number} offsetY
 * @returns {[number, number]}
 */
export function screenToWorld(view, offsetX, offsetY) {
  const col = offsetX * view.naturalWidth / view.clientWidth - 0.5;
  const row = offsetY * view.naturalHeight / view.clientHeight - 0.5;
  return [view.origin[0] + col * view.pixelMm, view.origin[1] + row * view.pixelMm];
}

/**
 * @param {View} view
 * @returns {number} screen pixels per world mm
 */
export function screenPxPerMm(view) {
  return view.clientWidth / view.naturalWidth / view.pixelMm;
}

/**
 * The radius (mm) the point marker keeps clear: the largest indexed nodule the point lies in,
 * else a small nodule's.
 * @param {{center_xyz: number[], diameter_mm: number}[]} nodules
 * @param {number[]} xyz world mm
 * @param {number} fallbackMm
 * @returns {number}
 */
export function markRadiusMm(nodules, xyz, fallbackMm) {
  let radius = fallbackMm;
  for (const n of nodules) {
    const r = n.diameter_mm / 2;
    if (Math.hypot(xyz[0] - n.center_xyz[0], xyz[1] - n.center_xyz[1], xyz[2] - n.center_xyz[2]) <= r) radius = Math.max(radius, r);
  }
  return radius;
}

// ---- the ruler --------------------------------------------------------------------------------

/** @typedef {[number, number]} XY  world x, y mm */

/**
 * @typedef {Object} Ruler  up to four clicks on one axial slice: the first two one axis
 * @property {XY[]} points
 * @property {?number} z  the slice they were drawn on
 */

/**
 * @param {number[]} a world [x, y] mm
 * @param {number[]} b world [x, y] mm
 * @returns {number} mm
 */
export function distanceMm(a, b) {
  return Math.hypot(b[0] - a[0], b[1] - a[1]);
}

/**
 * A ruler click: the first two ends give one axis, the next two the other; a fifth click, or one
 * on another slice, starts a new measurement.
 * @param {Ruler} ruler
 * @param {XY} point
 * @param {number} sliceZ the slice clicked on
 * @returns {Ruler} the ruler after the click
 */
export function rulerClick(ruler, point, sliceZ) {
  const again = ruler.points.length >= 4 || (ruler.z !== null && Math.abs(ruler.z - sliceZ) > 1e-6);
  const points = again ? [] : ruler.points;
  return { points: [...points, point], z: points.length ? ruler.z : sliceZ };
}

/**
 * The ruler's two axes as the API takes them (short <= long, to 0.01 mm), or null until both
 * are drawn.
 * @param {XY[]} points
 * @returns {?{long_axis_mm: number, short_axis_mm: number}}
 */
export function measuredAxes(points) {
  if (points.length < 4) return null;
  const first = distanceMm(points[0], points[1]), second = distanceMm(points[2], points[3]);
  /** @param {number} v */
  const round = (v) => Math.round(v * 100) / 100;
  return { long_axis_mm: round(Math.max(first, second)), short_axis_mm: round(Math.min(first, second)) };
}

/**
 * Which of the two drawn axes is the long one: the longer, whichever was drawn first.
 * @param {XY[]} points
 * @returns {["long", "short"]|["short", "long"]} the kind of the first and of the second axis
 */
export function rulerKinds(points) {
  if (points.length < 4 || distanceMm(points[0], points[1]) >= distanceMm(points[2], points[3])) return ["long", "short"];
  return ["short", "long"];
}

// ---- a typed point ----------------------------------------------------------------------------

/**
 * The typed x, y, z against the scan's extent: the valid coordinates (null where not) and what
 * is wrong with the others, in words.
 * @param {string[]} texts x, y, z as typed
 * @param {?{extent_min_xyz: number[], extent_max_xyz: number[]}} scan
 * @returns {{values: (?number)[], problems: string[]}}
 */
export function checkPoint(texts, scan) {
  /** @type {string[]} */
  const problems = [];
  const values = ["x", "y", "z"].map((axis, i) => {
    const text = texts[i].trim();
    const value = Number(text);
    let ok = text !== "" && Number.isFinite(value);
    if (ok && scan) {
      const low = scan.extent_min_xyz[i], high = scan.extent_max_xyz[i];
      const tolerance = 1e-3;
      ok = value >= low - tolerance && value <= high + tolerance;
      if (!ok) problems.push(`${axis} ${fmt(value, 2)} mm is outside this scan (${axis} from ${fmt(low)} to ${fmt(high)} mm)`);
    } else if (!ok) {
      problems.push(`${axis} must be a number (mm)`);
    }
    return ok ? value : null;
  });
  return { values, problems };
}

// ---- the comparison ---------------------------------------------------------------------------

/**
 * The shared offset's step: the coarser of the two slice spacings, so each step shows a new slice
 * in both views.
 * @param {(?number)[]} spacingsMm
 * @returns {number} mm (1 when none is known)
 */
export function compareStep(spacingsMm) {
  return Math.max(0, ...spacingsMm.map((s) => (given(s) ? s : 0))) || 1;
}

/**
 * How far the offset may go: whole steps within the reach.
 * @param {number} step mm
 * @param {number} reachMm
 * @returns {number} mm
 */
export function compareReach(step, reachMm) {
  return Math.floor(reachMm / step) * step;
}

/**
 * An offset snapped to whole steps and held within the reach.
 * @param {number} offset mm
 * @param {number} step mm
 * @param {number} reachMm
 * @returns {number} mm
 */
export function snapOffset(offset, step, reachMm) {
  const reach = compareReach(step, reachMm);
  return clamp(Math.round(offset / step) * step, [-reach, reach]);
}

/**
 * The radius the query view's brackets keep clear around its centre (the point searched): its
 * catalogue nodule's, reaching from the point; else the measured or estimated size.
 * @param {{query: {center_xyz?: ?number[]}, size_measured?: ?{long_axis_mm: number},
 *   size_estimate?: ?{long_axis_mm: number}}} result
 * @param {?{center_xyz: number[], diameter_mm: number}} detail the query's catalogue nodule
 * @returns {?number} mm
 */
export function queryMarkRadiusMm(result, detail) {
  const centre = result.query.center_xyz;
  if (detail && centre) {
    const off = Math.hypot(...detail.center_xyz.map((v, i) => v - centre[i]));
    return detail.diameter_mm / 2 + off;
  }
  const size = result.size_measured || result.size_estimate;
  return size ? size.long_axis_mm / 2 : null;
}

/**
 * The share of a zoomed view the brackets' square takes: the radius (or a small nodule's) plus
 * a margin, on both sides, held between 5% and 95% of the view.
 * @param {?number} radiusMm
 * @param {number} fallbackMm
 * @param {number} marginMm
 * @param {number} fovMm
 * @returns {{share: number, halfMm: number}} share 0-1; halfMm the square's half side
 */
export function bracketShare(radiusMm, fallbackMm, marginMm, fovMm) {
  const halfMm = (given(radiusMm) ? radiusMm : fallbackMm) + marginMm;
  return { share: clamp(2 * halfMm / fovMm, [0.05, 0.95]), halfMm };
}

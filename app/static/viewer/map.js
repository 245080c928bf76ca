// @ts-check
/**
 * The catalogue map (a 2-D embedding of every nodule), coloured by malignancy, with the query
 * and its neighbours ringed; a click on a point runs the page's pick action (open that nodule).
 */

import { api } from "./api.js";
import { $, svgEl } from "./dom.js";
import { fmt } from "./format.js";
import { state } from "./state.js";
import { labelColour } from "./words.js";

/** @typedef {import("./api.js").MapPoint} MapPoint */

// The SVG's viewBox is 400 x 400; points keep this margin from its edges.
const MAP_SIZE = 400;
const MAP_MARGIN = 15;

/** @type {(id: number) => void} what a click on a point does (set by the page) */
let pick = () => {};

/** @param {(id: number) => void} action */
export function onMapPick(action) {
  pick = action;
}

/** The catalogue's map, fetched and drawn. */
export async function loadMap() {
  state.map = (await api.map()).points;
  drawMap();
}

/**
 * The screen position of map coordinates: the points' extent fills the view, y upwards.
 * @param {{x: number, y: number}[]} points
 * @returns {(p: {x: number, y: number}) => [number, number]}
 */
export function mapScale(points) {
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = MAP_SIZE - 2 * MAP_MARGIN;
  return (p) => [
    MAP_MARGIN + (p.x - x0) / ((x1 - x0) || 1) * span,
    MAP_SIZE - MAP_MARGIN - (p.y - y0) / ((y1 - y0) || 1) * span,
  ];
}

export function drawMap() {
  const svg = $("map");
  svg.replaceChildren();
  const points = state.map;
  if (!points.length) {
    svg.append(svgEl("text", { x: 20, y: 200 }, "This catalogue version has no map."));
    return;
  }
  const at = mapScale(points);
  const neighbours = new Set(state.highlight.neighbours);
  /** @param {MapPoint} p */
  const ringed = (p) => Number(neighbours.has(p.id) || p.id === state.highlight.query);
  // The ringed points last, so that no other point covers them.
  const ordered = [...points].sort((a, b) => ringed(a) - ringed(b));
  const tip = $("map-tip");
  for (const p of ordered) {
    const isQuery = p.id === state.highlight.query, isNeighbour = neighbours.has(p.id);
    const [cx, cy] = at(p);
    const c = svgEl("circle", {
      cx: cx.toFixed(1), cy: cy.toFixed(1),
      r: isQuery ? "8" : isNeighbour ? "6" : "4",
      fill: labelColour(p.label_4class),
      stroke: isQuery ? "#111" : isNeighbour ? "#16a34a" : "#fff",
      "stroke-width": isQuery || isNeighbour ? "2.5" : "0.8",
      "data-testid": "map-point", "data-id": String(p.id),
    });
    if (isQuery || isNeighbour) c.setAttribute("data-role", isQuery ? "query" : "neighbour");
    c.addEventListener("mousemove", (e) => {
      tip.textContent = `#${p.id} · ${fmt(p.diameter_mm)} mm · ${p.label_4class ? `class ${p.label_4class}` : "no label"}`;
      tip.style.left = `${/** @type {MouseEvent} */ (e).clientX + 12}px`;
      tip.style.top = `${/** @type {MouseEvent} */ (e).clientY + 12}px`;
      tip.hidden = false;
    });
    c.addEventListener("mouseleave", () => { tip.hidden = true; });
    c.addEventListener("click", () => pick(p.id));
    svg.append(c);
  }
}

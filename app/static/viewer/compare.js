// @ts-check
/**
 * The side-by-side comparison of the query and one neighbour: two zoomed axial views in the same
 * window, each at its own nodule's centre plus one shared z offset, so scrolling either (or the
 * slider) moves both in step; corner brackets outside each nodule's radius; under each, what is
 * known of it; and "why similar": each level's similarity and both nodules' readers' ratings.
 */

import { api, zoomPath } from "./api.js";
import { $, bar, el, image, showBlob } from "./dom.js";
import { clamp, fmt, given } from "./format.js";
import {
  SMALL_NODULE_RADIUS_MM, bracketShare, compareReach, compareStep, queryMarkRadiusMm, snapOffset,
} from "./geometry.js";
import { SingleFlightLoader } from "./loader.js";
import { state } from "./state.js";
import { labelText, levelWords, queryNoduleId, ratingText, scaleText, sizeText, textureLine } from "./words.js";

/** @typedef {import("./api.js").Neighbor} Neighbor */
/** @typedef {import("./api.js").NoduleDetail} NoduleDetail */
/** @typedef {"query"|"neighbor"} Side */

// Each view shows this much of its scan around its nodule's centre.
const COMPARE_FOV_MM = 64;
// How far from the centres the shared offset may go.
const COMPARE_REACH_MM = 30;
// The brackets around each nodule stand this far outside its radius.
const COMPARE_MARK_MARGIN_MM = 2;

const compare = {
  /** @type {?Neighbor} the neighbour compared */
  neighbor: null,
  /** @type {Partial<Record<Side, {uid: string, center: number[]}>>} the views that scroll */
  sides: {},
  offset: 0,
  step: 1,
};

/** @typedef {{url: string, offset: number, width: number}} PaneWish */

/**
 * @param {Side} which
 * @returns {SingleFlightLoader<PaneWish>} one request in flight per view; the latest wish wins
 */
function paneLoader(which) {
  /** @param {PaneWish} wish */
  const shown = (wish) => {
    // What is on screen, for people and for tests.
    const img = image(`compare-${which}-img`);
    img.dataset.offset = wish.offset.toFixed(1);
    img.dataset.window = String(Math.round(wish.width));
  };
  return new SingleFlightLoader({
    fetch: (url) => api.request(url),
    show: async (wish, blob) => {
      await showBlob(image(`compare-${which}-img`), blob);
      $(`compare-${which}-note`).hidden = true;
      shown(wish);
    },
    fail: (wish, e) => {
      const note = $(`compare-${which}-note`);
      note.textContent = `Δz ${fmt(wish.offset)} mm: ${e instanceof Error ? e.message : e}`;
      note.hidden = false;
      shown(wish);
    },
  });
}

const panes = { query: paneLoader("query"), neighbor: paneLoader("neighbor") };

/** Both views at the shared offset, in the current window. */
export function drawComparePanes() {
  $("compare-offset").textContent = `Δz ${compare.offset >= 0 ? "+" : ""}${fmt(compare.offset)} mm from each centre`;
  for (const which of /** @type {Side[]} */ (["query", "neighbor"])) {
    const side = compare.sides[which];
    if (!side) continue;
    const [x, y, z] = side.center;
    const url = zoomPath(side.uid, [x, y, z + compare.offset], COMPARE_FOV_MM, state.wl);
    panes[which].want({ url, offset: compare.offset, width: state.wl.width });
  }
}

/** @param {number} offset mm from each centre */
function setCompareOffset(offset) {
  compare.offset = snapOffset(offset, compare.step, COMPARE_REACH_MM);
  /** @type {HTMLInputElement} */ ($("compare-slider")).value = String(compare.offset);
  drawComparePanes();
}

/**
 * Size the corner brackets of a view outside the nodule's radius.
 * @param {Side} which
 * @param {?number} radiusMm the nodule's radius (null: a small nodule's)
 */
function placeCompareMark(which, radiusMm) {
  const { share, halfMm } = bracketShare(radiusMm, SMALL_NODULE_RADIUS_MM, COMPARE_MARK_MARGIN_MM, COMPARE_FOV_MM);
  const mark = $(`compare-${which}-mark`);
  mark.style.width = `${share * 100}%`;
  mark.style.height = `${share * 100}%`;
  mark.dataset.halfMm = halfMm.toFixed(2);
}

/**
 * @param {string} uid
 * @returns {Promise<?import("./api.js").Scan>} null for a series outside the catalogue (an
 *   upload's, a PACS study's)
 */
async function scanInfo(uid) {
  try {
    return await api.scan(uid);
  } catch {
    return null;
  }
}

/**
 * What is known of one side of the comparison, under its view.
 * @param {?NoduleDetail} detail the catalogue nodule (null: a point or an upload, no ratings)
 * @param {?import("./api.js").Size|undefined} size its size estimate
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
    if (given(texture)) rows.push(el("div", {}, textureLine(state.vocabulary, texture, detail.texture_type)));
  } else {
    rows.push(el("div", {}, "the query: no readers' ratings (not a catalogue nodule)"));
  }
  rows.push(size ? el("div", {}, `estimate: ${sizeText(size)}`) : el("div", { class: "note" }, "no size estimate at this centre"));
  return rows;
}

/**
 * "Why similar": the similarity of each level, named in a reader's words (the technical name as
 * its tooltip), and the readers' median ratings of both nodules with their meaning.
 * @param {string[]} levels the answer's query.levels
 * @param {?number[]|undefined} similarities the neighbour's level_similarity
 * @param {?Object<string, number>} queryChars
 * @param {?Object<string, number>} neighborChars
 * @param {?import("./api.js").QueryInfo["size_for_search"]} sizeForSearch
 */
function renderWhy(levels, similarities, queryChars, neighborChars, sizeForSearch) {
  const nLevels = levels.filter((name) => /^level \d+/.test(name)).length;
  const cells = [];
  if (sizeForSearch) {
    // Which size the size, density, shape and learned blocks were read at: an estimate is said
    // to be one, and without a size the image features alone searched.
    const at = given(sizeForSearch.diameter_mm) ? `${fmt(sizeForSearch.diameter_mm, 1)} mm, ` : "";
    cells.push(el("div", { class: "note", "data-testid": "why-size" }, `searched at ${at}${sizeForSearch.title}`));
  }
  (similarities || []).forEach((value, i) => {
    const technical = levels[i] || `part ${i}`;
    cells.push(el("span", { class: "level-name", "data-testid": "why-level", title: technical }, levelWords(technical, nLevels)),
      bar(clamp(value, [0, 1])), el("span", {}, fmt(value, 3)));
  });
  if (!cells.length) cells.push(el("span", {}, "No per-level similarity in this answer."));
  if (neighborChars) cells.push(characteristicsTable(queryChars, neighborChars));
  $("why-similar").replaceChildren(...cells);
}

/**
 * The readers' median ratings of the query (when it has them) and the neighbour, on the
 * vocabulary's LIDC scales.
 * @param {?Object<string, number>} queryChars
 * @param {Object<string, number>} neighborChars
 * @returns {HTMLElement}
 */
function characteristicsTable(queryChars, neighborChars) {
  const vocabulary = state.vocabulary;
  const note = queryChars ? "" : " (the query has no readers' ratings: only the neighbour's)";
  const table = el("table", {},
    el("caption", {}, `Readers' median ratings on the LIDC scales${note}`),
    el("tr", {}, el("th"), el("th", {}, "query"), el("th", {}, "neighbour"), el("th")));
  for (const { name, title } of vocabulary.characteristics) {
    const q = queryChars ? queryChars[name] : undefined, n = neighborChars[name];
    if (n === undefined && q === undefined) continue;
    const shared = q !== undefined && n !== undefined && Math.round(q) === Math.round(n);
    /**
     * @param {number|undefined} v
     * @param {string} side
     */
    const value = (v, side) => el("td", { class: side }, v === undefined ? "–" : ratingText(vocabulary, name, v));
    table.append(el("tr", { class: shared ? "shared" : "", "data-testid": "why-characteristic", "data-name": name },
      el("td", { title: `LIDC scale: ${scaleText(vocabulary, name)}` }, title), value(q, "query"), value(n, "neighbor"), el("td", {}, shared ? "shared" : "")));
  }
  return table;
}

/**
 * Open the comparison of the shown answer's query with one of its neighbours.
 * @param {Neighbor} n
 */
export async function openCompare(n) {
  const result = state.result;
  if (!result) return;
  const q = result.query;
  compare.neighbor = n;
  compare.sides = { neighbor: { uid: n.series_uid, center: n.center_xyz } };
  // A point inside an indexed nodule is that nodule: the service names it in query.nodule_id.
  const queryNodule = queryNoduleId(q);
  if (q.series_uid && q.center_xyz) compare.sides.query = { uid: q.series_uid, center: q.center_xyz };
  $("compare").hidden = false;
  $("compare-title").textContent = `Query and neighbour #${n.id} side by side · similarity ${fmt(n.similarity, 3)}${n.weak_match ? " (weak match)" : ""}`;
  $("compare-query-caption").textContent = queryNodule !== null ? `Query: nodule #${queryNodule}` : q.series_uid ? "Query: the point searched" : "Query: the uploaded volume";
  $("compare-neighbor-caption").textContent = `Neighbour #${n.id}`;
  const queryImg = image("compare-query-img");
  const queryNote = $("compare-query-note");
  queryNote.hidden = true;
  if (!compare.sides.query) {
    // An upload has no stored slices: its own patch preview, which does not scroll.
    queryImg.removeAttribute("src");
    if (result.preview) queryImg.src = result.preview.url;
    queryNote.textContent = "An uploaded volume is not stored: its patch is shown, and only the neighbour scrolls.";
    queryNote.hidden = false;
  }
  const querySide = compare.sides.query;
  const [queryScan, neighborScan, queryDetail, neighborDetail] = await Promise.all([
    querySide ? scanInfo(querySide.uid) : null,
    scanInfo(n.series_uid),
    queryNodule !== null ? api.nodule(queryNodule, { estimateSize: true }) : null,
    api.nodule(n.id, { estimateSize: true }),
  ]);
  if (compare.neighbor !== n) return; // another comparison was opened meanwhile
  compare.step = compareStep([queryScan && queryScan.spacing_xyz[2], neighborScan && neighborScan.spacing_xyz[2]]);
  const slider = /** @type {HTMLInputElement} */ ($("compare-slider"));
  const reach = compareReach(compare.step, COMPARE_REACH_MM);
  slider.min = String(-reach);
  slider.max = String(reach);
  slider.step = String(compare.step);
  $("compare-query-details").replaceChildren(...detailRows(queryDetail, queryDetail ? queryDetail.size_estimate : result.size_estimate));
  $("compare-neighbor-details").replaceChildren(...detailRows(neighborDetail, neighborDetail.size_estimate));
  placeCompareMark("query", queryMarkRadiusMm(result, queryDetail));
  placeCompareMark("neighbor", neighborDetail.diameter_mm / 2);
  renderWhy(q.levels || [], n.level_similarity, queryDetail ? queryDetail.characteristics : null, neighborDetail.characteristics, q.size_for_search);
  setCompareOffset(0);
}

/** @returns {?Neighbor} the neighbour that was compared */
export function closeCompare() {
  const was = compare.neighbor;
  $("compare").hidden = true;
  compare.neighbor = null;
  return was;
}

/** Wire the dialog's own controls (the neighbour search is wired by the page). */
export function wireCompare() {
  $("compare-close").addEventListener("click", closeCompare);
  $("compare").addEventListener("click", (e) => { if (e.target === $("compare")) closeCompare(); });
  $("compare-slider").addEventListener("input", (e) => setCompareOffset(Number(/** @type {HTMLInputElement} */ (e.target).value)));
  for (const which of ["query", "neighbor"]) {
    image(`compare-${which}-img`).addEventListener("wheel", (e) => {
      e.preventDefault();
      setCompareOffset(compare.offset + Math.sign(e.deltaY) * compare.step);
    }, { passive: false });
  }
}

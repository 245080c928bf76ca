// @ts-check
/**
 * A search's answer on the page: the query line and its slices, which patient was left out,
 * the measured and estimated size, the no-close-match notice, the vote, the neighbours' cards
 * (a click opens the comparison), the map's rings; or the error that replaces all of it.
 */

import { api, nodulePreviewPath, windowed } from "./api.js";
import { closeCompare, drawComparePanes, openCompare } from "./compare.js";
import { $, bar, el, image, showBlob } from "./dom.js";
import { fmt } from "./format.js";
import { drawMap } from "./map.js";
import { isDicomSeries, state } from "./state.js";
import {
  LABEL_COLOURS, labelText, matchRule, patientScope, queryNoduleId, queryText, sizeText, voteShare,
} from "./words.js";

/** @typedef {import("./api.js").SearchResponse} SearchResponse */
/** @typedef {import("./api.js").Size} Size */
/** @typedef {import("./words.js").SearchHow} SearchHow */

/**
 * An image in a placeholder box that shows a spinner until it has loaded. Fetched through the
 * API client (not img.src) so that a deployment's access token goes with it; the newest image
 * asked for wins.
 * @param {HTMLElement} box
 * @param {HTMLImageElement} img
 * @param {string} url
 */
async function loadThumb(box, img, url) {
  box.classList.add("loading");
  box.classList.remove("failed");
  img.dataset.wanted = url;
  try {
    const blob = await api.blob(url);
    if (img.dataset.wanted !== url) return; // a newer image was asked for meanwhile
    await showBlob(img, blob);
    box.classList.remove("loading");
  } catch {
    if (img.dataset.wanted !== url) return;
    box.classList.remove("loading");
    box.classList.add("failed");
  }
}

/** The window changed: the query's slices, the neighbours' and the comparison follow it. */
export function refreshResultImages() {
  const result = state.result;
  if (!result) return;
  if (!$("compare").hidden) drawComparePanes();
  if (result.preview && result.preview.windowed) loadThumb($("query-preview-box"), image("query-preview"), windowed(result.preview.url, state.wl));
  document.querySelectorAll("#neighbors .thumb").forEach((box) => {
    const img = box.querySelector("img");
    if (box instanceof HTMLElement && img) loadThumb(box, img, windowed(nodulePreviewPath(Number(img.dataset.nodule)), state.wl));
  });
}

/**
 * "No close match in the catalogue" when the best neighbour is below the catalogue's threshold;
 * a note when the catalogue version has no threshold at all.
 * @param {import("./api.js").QueryInfo} query
 * @param {import("./api.js").Neighbor[]} neighbours
 */
function renderMatchNotice(query, neighbours) {
  const box = $("match-notice");
  const threshold = state.index && state.index.match_threshold;
  box.className = "notice";
  if (query.close_match === false) {
    box.replaceChildren(el("b", {}, "No close match in the catalogue."),
      ` The most similar nodule has similarity ${fmt(query.best_similarity, 3)}, below this catalogue's match threshold ${fmt(query.match_threshold, 3)} (${matchRule(threshold ? threshold.percentile : null)}). The vote is withheld: these neighbours are not like the query.`);
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

/** @returns {HTMLElement} */
function withheldTag() {
  return el("span", { class: "withheld-tag", "data-testid": "vote-withheld" }, "Vote withheld: no close match");
}

/**
 * The labelled neighbours' vote: the similarity-weighted malignant share, the majority, the
 * four classes; greyed and marked when withheld.
 * @param {import("./api.js").Vote} vote
 */
function renderVote(vote) {
  const box = $("vote");
  box.classList.toggle("withheld", Boolean(vote.withheld));
  if (!vote.n_labelled) {
    if (vote.withheld) box.replaceChildren(withheldTag(), el("div", {}, "No labelled neighbour."));
    else box.replaceChildren("No labelled neighbour: no vote.");
    return;
  }
  const p = voteShare(vote);
  const majority = vote.binary === 1 ? "malignant (ratings 4–5)" : "benign (ratings 1–2)";
  const dist = el("div", { class: "dist" });
  for (const r of ["1", "2", "4", "5"]) {
    const share = vote.four_class[r] || 0;
    dist.append(el("span", {}, r), bar(share, LABEL_COLOURS[r]), el("span", {}, `${Math.round(share * 100)}%`));
  }
  box.replaceChildren(
    ...(vote.withheld ? [withheldTag(), el("div", {}, "For reference only, from neighbours that are not close to the query:")] : []),
    el("div", { "data-testid": "vote-share" }, "Similarity-weighted malignant share: ", el("b", {}, `${fmt(p * 100, 0)}%`),
      ` of ${vote.n_labelled} labelled neighbours`),
    bar(p, null, { title: `malignant share ${fmt(p, 2)}` }),
    el("div", {}, `${vote.withheld ? "Majority (withheld)" : "Majority"}: `, el("b", {}, majority)),
    dist,
    el("div", { class: "disclaimer" }, "Decision support from similar cases, not a diagnosis."));
}

/**
 * One card per neighbour: its slices with similarity and label, its facts; a click compares it
 * side by side with the query.
 * @param {import("./api.js").Neighbor[]} neighbors
 */
function renderNeighbours(neighbors) {
  const box = $("neighbors");
  box.replaceChildren();
  for (const n of neighbors) {
    const l = n.labels;
    const label = labelText(l);
    const img = /** @type {HTMLImageElement} */ (el("img", {
      alt: `nodule ${n.id}: axial, coronal and sagittal slices`, loading: "lazy", "data-nodule": String(n.id),
    }));
    const labelWord = el("span", { class: "lab" }, label.text);
    labelWord.style.color = label.colour;
    const thumb = el("div", { class: "thumb loading" }, img,
      el("span", { class: "thumb-caption", "data-testid": "thumb-caption" }, `#${n.id} · sim ${fmt(n.similarity, 3)} · `, labelWord));
    const weak = n.weak_match
      ? el("span", { class: "weak-tag", "data-testid": "weak-match", title: "below this catalogue's calibrated match threshold" }, "weak match")
      : null;
    const ratings = l ? l.ratings.join(", ") : "no reads";
    const mean = l && l.mean !== null ? ` (mean ${fmt(l.mean, 2)})` : "";
    const details = el("div", { class: "details" },
      el("b", {}, `#${n.id}`), " · similarity ", el("b", {}, fmt(n.similarity, 3)), weak, el("br"),
      `${fmt(n.diameter_mm)} mm · patient ${n.patient_id || "?"}`, el("br"),
      `readers' malignancy: ${ratings}${mean}`, el("br"),
      label.text);
    const card = el("div", { class: "card", "data-testid": "neighbor-card", "data-id": String(n.id), title: "compare side by side with the query" }, thumb, details);
    loadThumb(thumb, img, windowed(nodulePreviewPath(n.id), state.wl));
    card.addEventListener("click", () => openCompare(n));
    box.append(card);
  }
}

/**
 * "Size (estimate by METHOD)" under the query, or why there is none.
 * @param {?Size|undefined} size
 * @param {boolean} asked whether the search asked for one
 */
function renderSizeEstimate(size, asked) {
  const box = $("size-estimate");
  if (size) {
    // The method in the heading: a radiologist weighs a network's mask and region growing differently.
    const replaced = size.superseded ? "replaced by your measurement below for size and Lung-RADS; " : "";
    box.replaceChildren(el("b", {}, `Size (estimate by ${size.estimated_by})`), `: ${sizeText(size)}`,
      el("div", { class: "note" }, `${replaced}${size.method}; ${size.note}`));
  } else {
    box.replaceChildren(el("b", {}, "No size estimate"), ": ",
      el("span", { class: "note" }, "no nodule could be parted from its surroundings at this point (the estimate refuses rather than guesses)."));
  }
  box.hidden = !size && !asked;
}

/**
 * "Measured (ruler)" under the query: the user's own long and short axis, with the Lung-RADS
 * size category the service gives them.
 * @param {?Size} size the answer's size_measured
 */
function renderSizeMeasured(size) {
  const box = $("size-measured");
  box.hidden = !size;
  if (!size) { box.replaceChildren(); return; }
  const note = [size.method, size.note].filter(Boolean).join("; ");
  box.replaceChildren(el("b", {}, "Measured (ruler)"), `: ${sizeText(size)}`, ...(note ? [el("div", { class: "note" }, note)] : []));
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
 * Draw a search's answer.
 * @param {SearchResponse} result
 * @param {?{url: string, windowed: boolean}} preview the query's slices
 * @param {SearchHow} [how]
 */
export function renderResult(result, preview, how = {}) {
  state.result = { ...result, preview, request: how.request || null };
  $("error").hidden = true;
  $("results").hidden = false;
  const q = result.query;
  $("query-info").textContent = queryText(q);
  const previewBox = $("query-preview-box");
  if (preview) {
    previewBox.hidden = false;
    loadThumb(previewBox, image("query-preview"), preview.windowed ? windowed(preview.url, state.wl) : preview.url);
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

/**
 * An error replaces the result area: nothing of an earlier, unrelated result stays on screen.
 * @param {string} message
 */
export function showResultError(message) {
  state.result = null;
  $("results").hidden = true;
  $("neighbors").replaceChildren();
  $("vote").replaceChildren("—");
  for (const id of ["match-notice", "size-estimate", "size-measured", "patient-scope", "query-preview-box"]) $(id).hidden = true;
  closeCompare();
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  state.highlight = { query: null, neighbours: [] };
  drawMap();
}

/**
 * While a search runs: a spinner over the dimmed previous result, the search buttons disabled.
 * @param {boolean} busy
 * @param {string} [label]
 */
export function setBusy(busy, label) {
  $("loading").hidden = !busy;
  $("loading-text").textContent = label || "Searching…";
  // The previous result stays in place, dimmed and out of reach, until the new one replaces it.
  $("results").classList.toggle("stale", busy);
  $("result-panel").setAttribute("aria-busy", String(busy));
  document.querySelectorAll("button.search").forEach((b) => { if (b instanceof HTMLButtonElement) b.disabled = busy; });
  if (busy) $("error").hidden = true;
}

// @ts-check
/**
 * The viewer page's entry: fetch the vocabulary and the catalogue's facts, wire the controls,
 * open the first scan (or the page's link), and mark the page ready (body[data-ready]).
 * World coordinates are mm in the ITK/LPS frame throughout.
 */

import { api } from "./viewer/api.js";
import { closeCompare, wireCompare } from "./viewer/compare.js";
import { $, selectTab } from "./viewer/dom.js";
import { fmt } from "./viewer/format.js";
import { loadMap, onMapPick } from "./viewer/map.js";
import { openLink, openMapNodule } from "./viewer/navigate.js";
import { saveSr } from "./viewer/report.js";
import { showResultError } from "./viewer/results.js";
import { loadScans, openScan } from "./viewer/scans.js";
import { searchNodule, searchPoint, searchUpload } from "./viewer/search.js";
import { keyOnSlice, setWindow, showPresets, showSliceNotice, wireSlice } from "./viewer/slice.js";
import { state } from "./viewer/state.js";
import { openingPreset } from "./viewer/vocabulary.js";

/** @param {KeyboardEvent} event */
function keyOnPage(event) {
  if (event.key === "Escape" && !$("compare").hidden) { closeCompare(); return; }
  keyOnSlice(event);
}

function wire() {
  document.querySelectorAll(".tabs button").forEach((b) => {
    if (b instanceof HTMLElement) b.addEventListener("click", () => selectTab(b.dataset.tab || "point"));
  });
  $("scan-select").addEventListener("change", (e) => {
    openScan(/** @type {HTMLSelectElement} */ (e.target).value).catch((err) => showSliceNotice(err.message));
  });
  wireSlice();
  document.addEventListener("keydown", keyOnPage);
  $("point-form").addEventListener("submit", (e) => searchPoint(/** @type {SubmitEvent} */ (e)));
  $("upload-form").addEventListener("submit", (e) => searchUpload(/** @type {SubmitEvent} */ (e)));
  $("nodule-form").addEventListener("submit", (e) => {
    e.preventDefault();
    searchNodule(/** @type {HTMLInputElement} */ ($("nodule-id")).value);
  });
  $("save-sr").addEventListener("click", saveSr);
  wireCompare();
  $("compare-similar").addEventListener("click", () => {
    const n = closeCompare();
    if (n) searchNodule(n.id);
  });
  onMapPick(openMapNodule);
}

async function start() {
  wire();
  try {
    const [vocabulary, info] = await Promise.all([api.vocabulary(), api.index()]);
    state.vocabulary = vocabulary;
    state.index = info;
    const opening = openingPreset(vocabulary);
    if (opening) setWindow(opening.width, opening.level, opening.name);
    showPresets();
    const threshold = info.match_threshold
      ? ` · match threshold ${fmt(info.match_threshold.value, 3)}`
      : " · no match threshold";
    $("index-info").textContent = `catalogue ${info.version} · ${info.n_nodules} nodules in ${info.n_scans} scans · ${info.n_labelled} labelled${threshold}`;
    await Promise.all([loadScans(), loadMap()]);
    await openLink();
    document.body.dataset.ready = "true";
  } catch (e) {
    showResultError(e instanceof Error ? e.message : String(e));
  }
}

// A module runs once the document is parsed: every element it wires is there.
start();

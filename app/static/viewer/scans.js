// @ts-check
/**
 * The scan list and the open scan: its format tag, its indexed nodules as chips, its slider's
 * range; opening a series (from the list, a link or the map) at a point.
 */

import { api } from "./api.js";
import { $, el, input, selectTab } from "./dom.js";
import { fmt } from "./format.js";
import { resetSlice, setPoint } from "./slice.js";
import { state } from "./state.js";
import { linkedOptionText, scanOptionText } from "./words.js";

/** The catalogue's scans in the list; the first one opens. */
export async function loadScans() {
  const list = await api.scans();
  const select = $("scan-select");
  select.replaceChildren();
  state.scans = new Map(list.scans.map((scan) => [scan.series_uid, scan]));
  for (const scan of list.scans) {
    select.append(el("option", { value: scan.series_uid, "data-dicom": String(Boolean(scan.dicom)) }, scanOptionText(scan)));
  }
  if (list.scans.length) await openScan(list.scans[0].series_uid);
}

function showScanFormat() {
  const tag = $("scan-format");
  const dicom = Boolean(state.scan && state.scan.dicom === true);
  tag.textContent = dicom ? "DICOM" : "image file";
  tag.className = `format-tag ${dicom ? "dicom" : "image"}`;
  tag.title = dicom
    ? "stored as DICOM: a search in it can be saved as a DICOM SR + SEG"
    : "stored as an image file: searches work, but no DICOM SR can be made of them";
  tag.hidden = !state.scan;
}

/**
 * Open a series at a point (by default its first indexed nodule, else its middle).
 * @param {string} uid
 * @param {number[]} [point] world mm
 */
export async function openScan(uid, point) {
  const scan = await api.scan(uid);
  state.scan = scan;
  resetSlice();
  const select = /** @type {HTMLSelectElement} */ ($("scan-select"));
  if (!Array.from(select.options).some((o) => o.value === uid)) {
    // A series from a link (a PACS study), not one of the catalogue's scans.
    select.append(el("option", { value: uid, "data-dicom": String(Boolean(scan.dicom)) }, linkedOptionText(uid)));
  }
  select.value = uid;
  showScanFormat();
  const slider = input("z-slider");
  slider.min = String(scan.extent_min_xyz[2]);
  slider.max = String(scan.extent_max_xyz[2]);
  slider.step = String(scan.spacing_xyz[2]);
  const chips = $("scan-nodules");
  chips.replaceChildren(scan.nodules.length ? "Indexed nodules: " : "No indexed nodules in this scan.");
  for (const n of scan.nodules) {
    const chip = el("button", { type: "button" }, `#${n.id} · ${fmt(n.diameter_mm)} mm`);
    chip.addEventListener("click", () => setPoint(n.center_xyz));
    chips.append(chip);
  }
  const middle = [0, 1, 2].map((i) => (scan.extent_min_xyz[i] + scan.extent_max_xyz[i]) / 2);
  setPoint(point || (scan.nodules.length ? scan.nodules[0].center_xyz : middle));
}

/**
 * Show a series at a point: the scan already open moves there, another one is opened.
 * @param {string} uid
 * @param {number[]} xyz world mm
 */
export async function showScanAt(uid, xyz) {
  selectTab("point");
  if (state.scan && state.scan.series_uid === uid) setPoint(xyz);
  else await openScan(uid, xyz);
}

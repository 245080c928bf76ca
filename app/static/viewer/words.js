// @ts-check
/**
 * What the page says, in a reader's words: labels and their colours, the search vector's levels,
 * ratings with their meaning on the served LIDC scales, sizes, the query line. Presentation only
 * (the domain terms come from the vocabulary); pure functions, unit-tested in the browser.
 */

import { fmt, given, uidTail } from "./format.js";
import { characteristicNamed } from "./vocabulary.js";

/** @typedef {import("./api.js").Vocabulary} Vocabulary */
/** @typedef {import("./api.js").Labels} Labels */
/** @typedef {import("./api.js").Size} Size */
/** @typedef {import("./api.js").QueryInfo} QueryInfo */

/** The map's and the vote's colour of each LIDC malignancy class (blue benign, red malignant). */
export const LABEL_COLOURS = /** @type {Object<string, string>} */ ({ 1: "#2c7bb6", 2: "#74add1", 4: "#f46d43", 5: "#d7191c" });
export const NO_LABEL_COLOUR = "#9ca3af";

/**
 * @param {?number|undefined} labelClass label_4class
 * @returns {string}
 */
export function labelColour(labelClass) {
  return (given(labelClass) && LABEL_COLOURS[labelClass]) || NO_LABEL_COLOUR;
}

/**
 * A nodule's label in words and its colour: "malignant (5)", "benign (2)" or "no label".
 * @param {?Labels|undefined} labels
 * @returns {{text: string, colour: string}}
 */
export function labelText(labels) {
  if (!labels || !given(labels.label_binary)) return { text: "no label", colour: NO_LABEL_COLOUR };
  const word = labels.label_binary ? "malignant" : "benign";
  return { text: `${word} (${labels.label_4class})`, colour: labelColour(labels.label_4class) };
}

// The encoder's levels, fine to coarse, in a reader's words (their technical names stay as a
// tooltip): the finest sees edges and texture, the coarsest the nodule with its surroundings.
export const LEVEL_WORDS = ["fine detail: edges and texture", "local shape", "overall shape and size", "surroundings"];
// The search vector's blocks (a model with a search space, issue 29), in a reader's words.
export const BLOCK_WORDS = /** @type {Object<string, string>} */ ({
  features: "image features (the network's)",
  size: "size",
  density: "density, calcium included",
  shape: "shape and margin",
  learned: "learned from readers' ratings",
});

/**
 * A level of the search vector in a reader's words.
 * @param {string} name the API's name ("level 0 (full resolution)", "size profile (…)", "shape")
 * @param {number} nLevels how many encoder levels the model has
 * @returns {string}
 */
export function levelWords(name, nLevels) {
  if (Object.hasOwn(BLOCK_WORDS, name)) return BLOCK_WORDS[name];
  if (name.startsWith("size profile")) return "density from the centre outwards (size)";
  if (name === "bottleneck") return "overall appearance";
  const match = /^level (\d+)/.exec(name);
  if (!match) return name;
  const last = LEVEL_WORDS.length - 1;
  // Levels spread over the words: a model with more or fewer levels keeps fine and coarse apart.
  const slot = nLevels > 1 ? Math.round(Number(match[1]) * last / (nLevels - 1)) : last;
  return LEVEL_WORDS[Math.min(last, Math.max(0, slot))];
}

/**
 * The meaning of a readers' median on its LIDC scale ("absent", "between ovoid and round").
 * @param {Vocabulary} vocabulary
 * @param {string} name a characteristic ("calcification")
 * @param {?number|undefined} value
 * @returns {string} "" for a name or value off the scale
 */
export function ratingMeaning(vocabulary, name, value) {
  const characteristic = characteristicNamed(vocabulary, name);
  if (!characteristic || !given(value)) return "";
  const scale = characteristic.scale;
  // A median of two readers may fall between two values: name both.
  const low = Math.floor(value + 1e-6), high = Math.ceil(value - 1e-6);
  if (low < 1 || high > scale.length) return "";
  return low === high ? scale[low - 1] : `between ${scale[low - 1]} and ${scale[high - 1]}`;
}

/**
 * A median rating with its meaning: "6 (absent)", "3.5 (between fairly subtle and …)".
 * @param {Vocabulary} vocabulary
 * @param {string} name
 * @param {number} value
 * @returns {string}
 */
export function ratingText(vocabulary, name, value) {
  const number = Number.isInteger(value) ? String(value) : fmt(value, 1);
  const meaning = ratingMeaning(vocabulary, name, value);
  return meaning ? `${number} (${meaning})` : number;
}

/**
 * The whole scale of a characteristic, for a tooltip: "1 popcorn, 2 laminated, …".
 * @param {Vocabulary} vocabulary
 * @param {string} name
 * @returns {string}
 */
export function scaleText(vocabulary, name) {
  const characteristic = characteristicNamed(vocabulary, name);
  return (characteristic ? characteristic.scale : []).map((word, i) => `${i + 1} ${word}`).join(", ");
}

/**
 * The readers' texture with its LIDC meaning, and the nodule type the service reads from it
 * when that says more ("3 (part solid/mixed): part-solid"; "5 (solid)" needs no more).
 * @param {Vocabulary} vocabulary
 * @param {number} texture the readers' median
 * @param {?string|undefined} type the nodule's texture_type
 * @returns {string}
 */
export function textureLine(vocabulary, texture, type) {
  const text = `readers' texture ${ratingText(vocabulary, "texture", texture)}`;
  if (!type || ratingMeaning(vocabulary, "texture", texture).startsWith(type)) return text;
  return `${text}: ${type}`;
}

/**
 * A size as text: mean, axes, volume (estimates only), type and Lung-RADS size category.
 * @param {Size} size
 * @returns {string}
 */
export function sizeText(size) {
  const type = size.nodule_type ? size.nodule_type : size.type_assumed ? "taken as solid (no type estimated)" : "type not estimated";
  const category = size.lung_rads ? ` · Lung-RADS ${size.lung_rads} (size category)` : "";
  const volume = given(size.volume_mm3) ? ` · volume ${fmt(size.volume_mm3, 0)} mm³` : "";
  return `mean diameter ${fmt(size.mean_diameter_mm)} mm (long ${fmt(size.long_axis_mm)} × short ${fmt(size.short_axis_mm)} mm)${volume} · ${type}${category}`;
}

/**
 * The catalogue nodule that stands for the query: the indexed nodule searched, or the one a
 * point query lies in (the service names it in query.nodule_id; it is never a neighbour).
 * @param {QueryInfo} query
 * @returns {?number}
 */
export function queryNoduleId(query) {
  return given(query.nodule_id) ? query.nodule_id : null;
}

/**
 * The query line: where it was taken and how close its best match is.
 * @param {QueryInfo} q
 * @returns {string}
 */
export function queryText(q) {
  const series = q.series_uid ? `series ${uidTail(q.series_uid)}` : "uploaded volume";
  const where = given(q.nodule_id) ? `indexed nodule #${q.nodule_id} · ${series}` : series;
  const centre = q.center_xyz ? q.center_xyz.map((v) => fmt(v, 1)).join(", ") : "?";
  const match = given(q.best_similarity)
    ? ` · best similarity ${fmt(q.best_similarity, 3)}${given(q.match_threshold) ? ` (threshold ${fmt(q.match_threshold, 3)})` : ""}`
    : "";
  return `${where} at (${centre}) mm · catalogue ${q.index_version}${match}`;
}

/**
 * @typedef {Object} SearchHow  what the viewer asked for, beyond the answer
 * @property {boolean} [sized]  a size estimate was asked for
 * @property {?import("./api.js").CoordinateBody} [request]  the coordinate search's body
 * @property {?string} [excludedPatient]  the patient an indexed nodule's search left out
 * @property {boolean} [included]  whether it included them
 */

/**
 * Which patient's nodules were left out of the neighbours: the answer says so for a point search
 * (query.excluded_patient_id, query.own_patient_included); an indexed nodule's search names the
 * patient it asked to leave out.
 * @param {QueryInfo} query
 * @param {SearchHow} how
 * @returns {?{included: boolean, patient: ?string}} null when nothing is known
 */
export function patientScope(query, how) {
  if (given(query.excluded_patient_id)) return { included: false, patient: query.excluded_patient_id };
  if (query.own_patient_included === true || how.included === true) return { included: true, patient: null };
  if (how.excludedPatient) return { included: false, patient: how.excludedPatient };
  return null;
}

/**
 * The scan list's text of a scan: patient, series, nodules, and a DICOM tag where an SR can be
 * made of it (only a series stored as DICOM has the study an SR belongs to).
 * @param {import("./api.js").ScanSummary} scan
 * @returns {string}
 */
export function scanOptionText(scan) {
  const tag = scan.dicom ? " · DICOM" : "";
  return `${scan.patient_id || "?"} · ${uidTail(scan.series_uid)} (${scan.n_nodules} nodules)${tag}`;
}

/**
 * The scan list's text of a series opened from a link (a PACS study's, not the catalogue's).
 * @param {string} uid
 * @returns {string}
 */
export function linkedOptionText(uid) {
  return `series ${uidTail(uid)} (linked)`;
}

/**
 * A window preset's button: "Lung", its tooltip "W 1500 / L -600".
 * @param {{name: string, width: number, level: number}} preset
 * @returns {{label: string, title: string}}
 */
export function presetWords(preset) {
  return { label: preset.name.charAt(0).toUpperCase() + preset.name.slice(1), title: windowText(preset) };
}

/**
 * @param {{width: number, level: number}} wl
 * @returns {string} "W 350 / L 50"
 */
export function windowText(wl) {
  return `W ${Math.round(wl.width)} / L ${Math.round(wl.level)}`;
}

/**
 * How the catalogue's match threshold was chosen, in words.
 * @param {?number} percentile
 * @returns {string}
 */
export function matchRule(percentile) {
  return given(percentile)
    ? `the ${fmt(percentile, 0)}th percentile of how similar this catalogue's nodules are to their nearest nodule of another patient`
    : "calibrated on this catalogue's own nodules";
}

/**
 * The vote's malignant share; malignant_probability is its deprecated name (one more release).
 * @param {import("./api.js").Vote} vote
 * @returns {number}
 */
export function voteShare(vote) {
  return Number(given(vote.malignant_share) ? vote.malignant_share : vote.malignant_probability);
}

/** What the ruler asks for next, by the number of ends clicked so far. */
export const RULER_PROMPTS = ["click one end of the long axis", "click its other end", "click one end of the short axis", "click its other end"];

// @ts-check
/**
 * The service's domain terms (GET /v1/vocabulary): display windows and their bounds, the LIDC
 * characteristics' scales. Fetched once at start; the viewer writes none of them itself. Pure
 * functions of a vocabulary, unit-tested in the browser.
 */

import { clamp } from "./format.js";

/** @typedef {import("./api.js").Vocabulary} Vocabulary */
/** @typedef {Vocabulary["window_presets"][number]} WindowPreset */
/** @typedef {Vocabulary["characteristics"][number]} Characteristic */

/** Before the vocabulary has arrived: no presets, no scales, any window. */
export const NO_VOCABULARY = /** @type {Vocabulary} */ ({
  window_presets: [],
  window_width_range: [-Infinity, Infinity],
  window_level_range: [-Infinity, Infinity],
  characteristics: [],
  texture_types: [],
});

/** The preset the page opens in (a chest CT is read for nodules in the lung window). */
export const DEFAULT_PRESET = "lung";

/**
 * @param {Vocabulary} vocabulary
 * @param {?string} name
 * @returns {?WindowPreset}
 */
export function presetNamed(vocabulary, name) {
  return vocabulary.window_presets.find((p) => p.name === name) || null;
}

/**
 * The window the page opens in: the default preset, else the vocabulary's first.
 * @param {Vocabulary} vocabulary
 * @returns {?WindowPreset}
 */
export function openingPreset(vocabulary) {
  return presetNamed(vocabulary, DEFAULT_PRESET) || vocabulary.window_presets[0] || null;
}

/**
 * A window held inside the bounds the service takes (it answers 422 beyond them).
 * @param {Vocabulary} vocabulary
 * @param {number} width HU
 * @param {number} level HU
 * @returns {{width: number, level: number}}
 */
export function clampWindow(vocabulary, width, level) {
  return { width: clamp(width, vocabulary.window_width_range), level: clamp(level, vocabulary.window_level_range) };
}

/**
 * @param {Vocabulary} vocabulary
 * @param {string} name as in a nodule's characteristics ("internalStructure")
 * @returns {?Characteristic}
 */
export function characteristicNamed(vocabulary, name) {
  return vocabulary.characteristics.find((c) => c.name === name) || null;
}

// @ts-check
/** Numbers and small values as the page shows them; pure functions, unit-tested in the browser. */

/**
 * A number to fixed digits, or an en dash when there is none.
 * @param {?number|undefined} value
 * @param {number} [digits]
 * @returns {string}
 */
export function fmt(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

/**
 * @param {number} value
 * @param {readonly [number, number]} range low, high
 * @returns {number} the value, held inside the range
 */
export function clamp(value, [low, high]) {
  return Math.min(high, Math.max(low, value));
}

/**
 * @template T
 * @param {T} value
 * @returns {value is NonNullable<T>} whether the value is neither null nor undefined
 */
export function given(value) {
  return value !== null && value !== undefined;
}

/**
 * The end of a UID, enough to tell series apart in a list ("…1.2.840.113").
 * @param {string} uid
 * @returns {string}
 */
export function uidTail(uid) {
  return `…${uid.slice(-12)}`;
}

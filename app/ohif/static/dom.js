// @ts-check
/** DOM building without markup strings: text is always text. */

/**
 * An element with attributes and children (strings become text nodes, never markup).
 * @param {string} tag
 * @param {Object<string, string>} [attrs]
 * @param {...(Node|string|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/**
 * A number to fixed digits, or an en dash when missing.
 * @param {?number|undefined} value
 * @param {number} [digits]
 * @returns {string}
 */
export function fmt(value, digits = 1) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

// @ts-check
/**
 * DOM building without markup strings (text is always text), the page's elements by id, and
 * blobs shown in images. Nothing here runs when the module is imported.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

/** @typedef {Node|string|null|undefined|false} Child  null, undefined and false are left out */

/**
 * An element with attributes and children (strings become text nodes, never markup).
 * @param {string} tag
 * @param {Object<string, string>} [attrs]
 * @param {...Child} children
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
 * An SVG element (circle, line, text) with attributes, and its text when given.
 * @param {string} tag
 * @param {Object<string, string|number>} attrs
 * @param {string} [text]
 * @returns {SVGElement}
 */
export function svgEl(tag, attrs, text) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text) node.textContent = text;
  return node;
}

/**
 * A horizontal bar filled to a share (0-1), in a colour when given (else the stylesheet's).
 * Styled through the CSSOM, not a style attribute, so a strict style-src would not stop it.
 * @param {number} share
 * @param {?string} [colour]
 * @param {Object<string, string>} [attrs] of the outer bar
 * @returns {HTMLElement}
 */
export function bar(share, colour = null, attrs = {}) {
  const fill = el("div");
  fill.style.width = `${share * 100}%`;
  if (colour) fill.style.background = colour;
  return el("div", { ...attrs, class: "bar" }, fill);
}

/**
 * The page's element with this id; an Error names it when the page lacks it.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/**
 * The page's element with this id, of a kind (an input, an image, the map's SVG).
 * @template {Element} T
 * @param {string} id
 * @param {{new (): T, prototype: T}} kind
 * @returns {T}
 */
export function $as(id, kind) {
  const node = $(id);
  if (!(node instanceof kind)) throw new Error(`#${id} is not a ${kind.name}`);
  return node;
}

/**
 * @param {string} id
 * @returns {HTMLInputElement}
 */
export function input(id) {
  return $as(id, HTMLInputElement);
}

/**
 * @param {string} id
 * @returns {HTMLImageElement}
 */
export function image(id) {
  return $as(id, HTMLImageElement);
}

/**
 * Show a blob in an image once it has decoded; the image's previous object URL is revoked.
 * @param {HTMLImageElement} img
 * @param {Blob} blob
 * @returns {Promise<void>}
 */
export async function showBlob(img, blob) {
  const url = URL.createObjectURL(blob);
  try {
    await new Promise((resolve, reject) => {
      img.onload = () => resolve(undefined);
      img.onerror = () => reject(new Error("the image could not be shown"));
      img.src = url;
    });
  } catch (e) {
    URL.revokeObjectURL(url);
    throw e;
  }
  if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
  img.dataset.objectUrl = url;
}

/**
 * The query panel's tab: its button marked, its form shown, the others hidden.
 * @param {string} name "point", "upload" or "nodule"
 */
export function selectTab(name) {
  document.querySelectorAll(".tabs button").forEach((b) => {
    b.classList.toggle("active", b instanceof HTMLElement && b.dataset.tab === name);
  });
  document.querySelectorAll("form[data-pane]").forEach((f) => {
    if (f instanceof HTMLElement) f.hidden = f.dataset.pane !== name;
  });
}

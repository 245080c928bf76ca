// @ts-check
/**
 * The "Similar nodules" panel: pick a point in the active viewport, search, read the
 * neighbours and the vote, save the search as an SR (+ SEG) in the PACS, compare a neighbour
 * in the service's own viewer. Plain DOM: OHIF's React renders only the host element
 * (extension.js), and the panel keeps its state across OHIF's re-renders.
 */

import { Api, compareUrl } from "./api.js";
import { el, fmt } from "./dom.js";
import { pickPoint } from "./viewport.js";
import { neighbourWords, sizeWords, voteWords } from "./words.js";

/**
 * @typedef {Object} PanelContext
 * @property {any} services  OHIF's servicesManager.services
 * @property {string} apiRoot  "" : the API is forwarded on this origin
 * @property {string} viewerPath  the service's viewer (comparison view) on this origin
 */

const K_CHOICES = ["5", "10", "20"];

export class SimilarNodulesPanel {
  /** @param {PanelContext} context */
  constructor(context) {
    this.context = context;
    this.api = new Api(context.apiRoot, () => window.prompt("The nodule-search service needs an access token (ask its operator):"), sessionStorage);
    /** @type {?import("./api.js").CoordinateQuery} */
    this.query = null;
    /** @type {any} */
    this.result = null;
    /** @type {?{cancel: () => void}} */
    this.picking = null;
    /** @type {string[]} */
    this.objectUrls = [];
    this.kSelect = /** @type {HTMLSelectElement} */ (el("select", { "data-testid": "ns-k", "aria-label": "neighbours" },
      ...K_CHOICES.map((k) => el("option", { value: k }, k))));
    this.pickButton = /** @type {HTMLButtonElement} */ (el("button", { type: "button", class: "ns-button ns-primary", "data-testid": "ns-pick" }, "Pick a point"));
    this.saveButton = /** @type {HTMLButtonElement} */ (el("button", { type: "button", class: "ns-button", "data-testid": "ns-save", disabled: "" }, "Save SR + SEG to PACS"));
    this.status = el("p", { class: "ns-status", "data-testid": "ns-status", role: "status" }, "Pick a point on a nodule in the active viewport, and the catalogue's most similar nodules are listed here.");
    this.error = el("p", { class: "ns-error", "data-testid": "ns-error", role: "alert", hidden: "" });
    this.pointLine = el("p", { class: "ns-point", "data-testid": "ns-point", hidden: "" });
    this.vote = el("div", { class: "ns-vote", "data-testid": "ns-vote", hidden: "" });
    this.size = el("p", { class: "ns-size", "data-testid": "ns-size", hidden: "" });
    this.saved = el("p", { class: "ns-saved", "data-testid": "ns-saved", role: "status", hidden: "" });
    this.list = el("ol", { class: "ns-neighbours", "data-testid": "ns-neighbours" });
    this.root = el("section", { class: "ns-panel", "data-testid": "nodule-search-panel" },
      el("h2", {}, "Similar nodules"),
      el("p", { class: "ns-note" }, "Decision support from similar cases in the catalogue, not a diagnosis."),
      el("div", { class: "ns-row" }, this.pickButton, el("label", {}, "k ", this.kSelect)),
      this.status, this.error, this.pointLine, this.vote, this.size,
      el("div", { class: "ns-row" }, this.saveButton), this.saved, this.list);
    this.pickButton.addEventListener("click", () => this.pick());
    this.saveButton.addEventListener("click", () => this.save());
  }

  /** @param {string} message */
  showError(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = "";
  }

  /** Wait for a click in the active viewport, then search there. */
  async pick() {
    if (this.picking) {
      this.picking.cancel();
      return;
    }
    this.clearError();
    const picking = pickPoint(this.context.services);
    this.picking = picking;
    this.pickButton.textContent = "Cancel picking";
    this.status.textContent = "Click the nodule in the active viewport (Esc cancels).";
    let picked;
    try {
      picked = await picking.point;
    } catch (e) {
      this.status.textContent = "Pick a point on a nodule in the active viewport.";
      if (!(e instanceof Error && e.message === "picking cancelled")) this.showError(String(e instanceof Error ? e.message : e));
      return;
    } finally {
      this.picking = null;
      this.pickButton.textContent = "Pick a point";
    }
    this.query = {
      series_uid: picked.series.seriesUid,
      study_uid: picked.series.studyUid,
      center_xyz: picked.centerXyz.map((v) => Math.round(v * 100) / 100),
      k: Number(this.kSelect.value),
      estimate_size: true,
    };
    await this.search();
  }

  /** Search at ``this.query`` and show the answer. */
  async search() {
    const query = this.query;
    if (!query) return;
    const [x, y, z] = query.center_xyz;
    this.pointLine.textContent = `Point x ${fmt(x)}, y ${fmt(y)}, z ${fmt(z)} mm (LPS) in series …${query.series_uid.slice(-8)}`;
    this.pointLine.dataset.centerXyz = query.center_xyz.join(",");
    this.pointLine.hidden = false;
    this.status.textContent = "Searching similar nodules…";
    this.saveButton.disabled = true;
    this.saved.hidden = true;
    try {
      const result = await this.api.search(query);
      if (this.query !== query) return; // another point was picked meanwhile
      this.result = result;
      this.render(result);
      this.status.textContent = `${result.neighbors.length} similar nodules in catalogue ${result.query.index_version}.`;
      this.saveButton.disabled = false;
    } catch (e) {
      this.result = null;
      this.render(null);
      this.status.textContent = "The search failed.";
      this.showError(String(e instanceof Error ? e.message : e));
    }
  }

  /** @param {any} result  SearchResponse, or null to clear */
  render(result) {
    for (const url of this.objectUrls) URL.revokeObjectURL(url);
    this.objectUrls = [];
    this.list.replaceChildren();
    this.vote.hidden = this.size.hidden = !result;
    if (!result) return;
    const vote = voteWords(result);
    this.vote.replaceChildren(el("strong", {}, vote.title), el("span", {}, vote.detail));
    this.vote.classList.toggle("ns-withheld", vote.withheld);
    this.vote.dataset.withheld = String(vote.withheld);
    this.size.textContent = sizeWords(result);
    for (const n of result.neighbors) this.list.append(this.neighbourItem(n));
  }

  /**
   * @param {any} n  Neighbor
   * @returns {HTMLElement}
   */
  neighbourItem(n) {
    const thumb = /** @type {HTMLImageElement} */ (el("img", { class: "ns-thumb", alt: `catalogue nodule ${n.id}: axial, coronal and sagittal slices` }));
    this.api.previewUrl(n.id).then((url) => {
      this.objectUrls.push(url);
      thumb.src = url;
    }).catch((e) => { thumb.alt = `no preview (${e.message})`; });
    const compare = el("button", { type: "button", class: "ns-button ns-small", "data-testid": "ns-compare" }, "Compare");
    compare.addEventListener("click", () => this.compare(n.id));
    const tags = [];
    if (n.weak_match) tags.push(el("span", { class: "ns-tag ns-weak", "data-testid": "ns-weak" }, "weak match"));
    if (n.labels && n.labels.label_binary !== null && n.labels.label_binary !== undefined) {
      tags.push(el("span", { class: `ns-tag ${n.labels.label_binary ? "ns-malignant" : "ns-benign"}` }, n.labels.label_binary ? "malignant" : "benign"));
    }
    return el("li", { class: "ns-neighbour", "data-testid": "ns-neighbour", "data-nodule": String(n.id) },
      thumb,
      el("div", { class: "ns-facts" },
        el("div", {}, el("strong", {}, `#${n.id}`), " ", ...tags),
        el("div", {}, neighbourWords(n)),
        compare));
  }

  /** @param {number} id */
  compare(id) {
    if (!this.query) return;
    // window.open (not a link): the new tab keeps this tab's session (the access token).
    const opened = window.open(compareUrl(this.context.viewerPath, this.query, id), "_blank");
    if (!opened) this.showError("the browser blocked the comparison's new tab: allow pop-ups for this viewer");
  }

  /** Store the search as an SR (and the mask as a SEG when one can be made) in the PACS. */
  async save() {
    if (!this.query) return;
    this.clearError();
    this.saveButton.disabled = true;
    this.saved.hidden = false;
    this.saved.textContent = "Saving to the PACS…";
    try {
      const stored = await this.api.storeReport(this.query);
      // OHIF lists a study's series as it found them when the study was opened.
      const reopen = " Open the study again to see the new series in the study browser.";
      this.saved.textContent = (stored.objects >= 2
        ? "Saved the SR and the SEG of the estimated mask in the PACS."
        : "Saved the SR in the PACS. No mask could be made at the point, so no SEG was stored.") + reopen;
      this.saved.dataset.objects = String(stored.objects);
    } catch (e) {
      this.saved.hidden = true;
      this.showError(`Not saved: ${e instanceof Error ? e.message : e}`);
    } finally {
      this.saveButton.disabled = false;
    }
  }
}

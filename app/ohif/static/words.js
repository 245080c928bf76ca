// @ts-check
/**
 * The search's answer in a reader's words: the vote (or why it is withheld), the size
 * estimate (always marked as an estimate), each neighbour's line. Pure functions of the
 * service's SearchResponse, unit-tested in the browser.
 */

import { fmt } from "./dom.js";

/**
 * The vote in words: never more than the service says (a withheld vote gives no verdict).
 * @param {any} result  SearchResponse
 * @returns {{title: string, detail: string, withheld: boolean}}
 */
export function voteWords(result) {
  const { vote, query } = result;
  if (vote.withheld) {
    return {
      title: "Vote withheld: no close match in the catalogue",
      detail: `The best similarity ${fmt(query.best_similarity, 3)} is below the close-match threshold ${fmt(query.match_threshold, 3)}; the neighbours are listed for reference only.`,
      withheld: true,
    };
  }
  if (!vote.n_labelled || vote.binary === null || vote.binary === undefined) {
    return { title: "No vote", detail: "None of the neighbours has a benign or malignant label.", withheld: false };
  }
  const verdict = vote.binary === 1 ? "malignant" : "benign";
  const noThreshold = query.match_threshold === null || query.match_threshold === undefined
    ? " This catalogue version records no close-match threshold." : "";
  return {
    title: `Similar cases vote ${verdict}`,
    detail: `Similarity-weighted malignant share ${fmt(vote.malignant_share, 2)} of ${vote.n_labelled} labelled neighbours: a share of similar cases, not a probability of malignancy.${noThreshold}`,
    withheld: false,
  };
}

/**
 * The queried nodule's size: the estimate (marked as such, with its method) or none.
 * @param {any} result
 * @returns {string}
 */
export function sizeWords(result) {
  const size = result.size_estimate;
  if (!size) return "Size: no nodule was found at the point, so no estimate.";
  const type = size.nodule_type ? ` · ${size.nodule_type} (estimate)` : "";
  const category = size.lung_rads ? ` · Lung-RADS ${size.lung_rads} by size and type (estimate)` : "";
  return `Size estimate (${size.estimated_by}): ${fmt(size.mean_diameter_mm)} mm mean diameter, ${fmt(size.long_axis_mm)} × ${fmt(size.short_axis_mm)} mm${type}${category}. An estimate from the image, not a measurement.`;
}

/**
 * One neighbour's facts on one line.
 * @param {any} n  Neighbor
 * @returns {string}
 */
export function neighbourWords(n) {
  const labels = n.labels;
  const ratings = labels && labels.ratings.length
    ? `ratings ${labels.ratings.join(", ")} (mean ${fmt(labels.mean)})` : "no ratings";
  return `similarity ${fmt(n.similarity, 3)} · ${ratings} · ${fmt(n.diameter_mm)} mm`;
}

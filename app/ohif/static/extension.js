// @ts-check
/**
 * The nodule-search OHIF extension, loaded at run time: OHIF import()s every URL listed in
 * window.config.extensions (app/ohif/config.py) and registers its default export. No bundler
 * and no build of OHIF: the panel is plain DOM (panel.js) mounted into one host element.
 *
 * OHIF renders a panel's ``component`` with its own React, which it does not hand to runtime
 * extensions. The component therefore returns the element record React 18 renders (what
 * ``createElement("div", {ref})`` makes: the pinned OHIF 3.13.2 ships React 18.3.1); its ref
 * callback mounts the panel's DOM when React attaches the host and leaves it when React
 * detaches it. Moving the pin past React 18 means checking this record (docs/ohif.md).
 */

import { SimilarNodulesPanel } from "./panel.js";
import { shownInstance, worldToClient } from "./viewport.js";

const REACT_ELEMENT = Symbol.for("react.element");
const STYLESHEET = new URL("./panel.css", import.meta.url).href;

/** @type {?SimilarNodulesPanel} */
let panel = null;
/** @type {?import("./panel.js").PanelContext} */
let context = null;

/**
 * React 18's record of ``<div ref={ref} className=… />``.
 * @param {(node: ?HTMLElement) => void} ref
 * @returns {object}
 */
function hostElement(ref) {
  return {
    $$typeof: REACT_ELEMENT,
    type: "div",
    key: null,
    ref,
    props: { className: "ns-host", "data-testid": "nodule-search-host" },
    _owner: null,
  };
}

function addStylesheet() {
  if (document.querySelector(`link[href="${STYLESHEET}"]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = STYLESHEET;
  document.head.append(link);
}

/**
 * Mounts the one panel (made on first use, kept across OHIF's re-renders) into React's host.
 * Module-level, so React sees the same ref on every render and calls it only on attach and
 * detach.
 * @param {?HTMLElement} host
 */
function mount(host) {
  if (!host) return; // detached: the panel's DOM goes with the host, its state stays here
  if (!context) throw new Error("the nodule-search extension was not registered");
  addStylesheet();
  panel = panel || new SimilarNodulesPanel(context);
  host.append(panel.root);
}

function SimilarNodules() {
  return hostElement(mount);
}

/**
 * For tests and scripts: where a world point is on screen, and which image is shown.
 * Not used by OHIF.
 */
export const inspect = {
  /** @param {number[]} worldXyz */
  worldToClient: (worldXyz) => (context ? worldToClient(context.services, worldXyz) : null),
  shownInstance: () => (context ? shownInstance(context.services) : null),
  /** Segmentations OHIF has loaded (a SEG opened adds one). */
  segmentationCount: () => (context ? context.services.segmentationService.getSegmentations().length : 0),
};

export default {
  id: "nodule-search",

  /** @param {{servicesManager: any, appConfig: any}} params */
  preRegistration({ servicesManager, appConfig }) {
    const settings = (appConfig && appConfig.noduleSearch) || {};
    context = {
      services: servicesManager.services,
      apiRoot: settings.apiRoot || "",
      viewerPath: settings.viewerPath || "/nodule-search/viewer",
    };
  },

  getPanelModule() {
    return [{
      name: "similarNodules",
      iconName: "tab-patient-info", // a person: the similar cases are other patients'
      iconLabel: "Similar",
      label: "Similar nodules",
      component: SimilarNodules,
    }];
  },
};

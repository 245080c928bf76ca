// @ts-check
/**
 * What the panel needs from OHIF's viewports: which series the active one shows, a point
 * picked in it as world coordinates, and where a world point lies on the screen.
 *
 * Cornerstone's world frame is DICOM's patient coordinate system (LPS, millimetres): the same
 * frame as the service's center_xyz, so a picked point goes to the API unconverted.
 */

/**
 * @typedef {Object} DisplayedSeries
 * @property {string} studyUid
 * @property {string} seriesUid
 * @property {string} modality
 */

/**
 * @typedef {Object} PickedPoint
 * @property {number[]} centerXyz  world mm (LPS)
 * @property {DisplayedSeries} series  the series the point was picked in
 */

/**
 * The active viewport's cornerstone viewport and its id, or null when none shows an image.
 * @param {any} services  OHIF's servicesManager.services
 * @returns {?{id: string, viewport: any}}
 */
export function activeViewport(services) {
  let id, viewport;
  try {
    id = services.viewportGridService.getActiveViewportId();
    viewport = id ? services.cornerstoneViewportService.getCornerstoneViewport(id) : null;
  } catch {
    // Before OHIF's viewer route has mounted, its grid service has no state: nothing is shown.
    return null;
  }
  return viewport ? { id, viewport } : null;
}

/**
 * The series a viewport shows (its first display set).
 * @param {any} services
 * @param {string} viewportId
 * @returns {?DisplayedSeries}
 */
export function displayedSeries(services, viewportId) {
  const uids = services.viewportGridService.getDisplaySetsUIDsForViewport(viewportId) || [];
  const displaySet = uids.length ? services.displaySetService.getDisplaySetByUID(uids[0]) : null;
  if (!displaySet || !displaySet.SeriesInstanceUID) return null;
  return {
    studyUid: displaySet.StudyInstanceUID,
    seriesUid: displaySet.SeriesInstanceUID,
    modality: displaySet.Modality || "",
  };
}

/**
 * A point of the viewport's canvas (CSS pixels from its top left) in world mm.
 * @param {any} viewport
 * @param {number} clientX
 * @param {number} clientY
 * @returns {number[]}
 */
export function clientToWorld(viewport, clientX, clientY) {
  const rect = viewport.canvas.getBoundingClientRect();
  return Array.from(viewport.canvasToWorld([clientX - rect.left, clientY - rect.top]));
}

/**
 * Where a world point is drawn in the active viewport, in the page's client pixels (the
 * tests click there; null when no viewport shows an image).
 * @param {any} services
 * @param {number[]} worldXyz
 * @returns {?number[]}
 */
export function worldToClient(services, worldXyz) {
  const active = activeViewport(services);
  if (!active) return null;
  const rect = active.viewport.canvas.getBoundingClientRect();
  const [x, y] = active.viewport.worldToCanvas(worldXyz);
  return [rect.left + x, rect.top + y];
}

/**
 * The SOP instance UID of the image the active viewport shows (null: none).
 * @param {any} services
 * @returns {?string}
 */
export function shownInstance(services) {
  const active = activeViewport(services);
  const imageId = active && active.viewport.getCurrentImageId ? active.viewport.getCurrentImageId() : null;
  if (!imageId) return null;
  const match = /\/instances\/([0-9.]+)/.exec(imageId);
  return match ? match[1] : null;
}

/**
 * The next click in the active viewport, as a point of the series it shows. Escape, or
 * ``cancel()``, rejects it.
 * @param {any} services
 * @returns {{point: Promise<PickedPoint>, cancel: () => void}}
 */
export function pickPoint(services) {
  /** @type {() => void} */
  let cancel = () => {};
  const point = new Promise((resolve, reject) => {
    const active = activeViewport(services);
    if (!active) {
      reject(new Error("no viewport shows an image: open a CT series first"));
      return;
    }
    const series = displayedSeries(services, active.id);
    if (!series) {
      reject(new Error("the active viewport shows no DICOM series"));
      return;
    }
    const element = active.viewport.element;
    /** @param {MouseEvent} event */
    const onClick = (event) => {
      finish();
      resolve({ centerXyz: clientToWorld(active.viewport, event.clientX, event.clientY), series });
    };
    /** @param {KeyboardEvent} event */
    const onKey = (event) => {
      if (event.key === "Escape") cancel();
    };
    const finish = () => {
      element.removeEventListener("click", onClick, true);
      window.removeEventListener("keydown", onKey, true);
      element.style.cursor = "";
    };
    cancel = () => {
      finish();
      reject(new Error("picking cancelled"));
    };
    element.addEventListener("click", onClick, true);
    window.addEventListener("keydown", onKey, true);
    element.style.cursor = "crosshair";
  });
  return { point, cancel: () => cancel() };
}

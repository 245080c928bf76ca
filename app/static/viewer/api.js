// @ts-check
/**
 * The nodule-search API as the viewer calls it: every URL it requests, the access token, and
 * failures as the service words them. A deployment with NODULE_ACCESS_TOKEN answers 401 with
 * "WWW-Authenticate: Bearer": the token is asked for once and kept for this tab only (the key
 * the OHIF panel uses too); every failed answer is problem details (RFC 9457), whose detail
 * becomes the Error's message as "STATUS: detail".
 */

export const TOKEN_KEY = "nodule-search-access-token";

/** @typedef {[number, number, number]} XYZ  world mm, ITK/LPS frame */

/**
 * @typedef {Object} NoduleOut
 * @property {number} id
 * @property {string} series_uid
 * @property {?string} patient_id
 * @property {XYZ} center_xyz
 * @property {number} diameter_mm
 * @property {?Labels} labels
 */

/**
 * @typedef {Object} Labels  the readers' malignancy ratings and the label made of them
 * @property {number[]} ratings
 * @property {?number} mean
 * @property {?number} label_binary
 * @property {?number} label_4class
 */

/**
 * @typedef {Object} ScanSummary  one entry of GET /v1/scans
 * @property {string} series_uid
 * @property {?string} patient_id
 * @property {number} n_nodules
 * @property {boolean} [dicom]
 */

/**
 * @typedef {Object} Scan  GET /v1/scans/{uid}
 * @property {string} series_uid
 * @property {?string} patient_id
 * @property {XYZ} extent_min_xyz
 * @property {XYZ} extent_max_xyz
 * @property {XYZ} spacing_xyz
 * @property {NoduleOut[]} nodules
 * @property {boolean} [dicom]
 * @property {boolean} [from_pacs]
 */

/**
 * @typedef {Object} Size  a query's size_estimate or size_measured, a nodule's size_estimate
 * @property {number} mean_diameter_mm
 * @property {number} long_axis_mm
 * @property {number} short_axis_mm
 * @property {?number} [volume_mm3]
 * @property {?string} [nodule_type]
 * @property {boolean} [type_assumed]
 * @property {?string} [lung_rads]
 * @property {string} method
 * @property {string} [estimated_by]
 * @property {boolean} [superseded]
 * @property {string} note
 */

/**
 * @typedef {NoduleOut & {
 *   characteristics: ?Object<string, number>,
 *   size_estimate: ?Size,
 *   texture_type?: ?("ground-glass"|"part-solid"|"solid"),
 * }} NoduleDetail  GET /v1/nodules/{id}
 */

/**
 * @typedef {NoduleOut & {similarity: number, weak_match?: ?boolean,
 *   level_similarity?: ?number[]}} Neighbor
 */

/**
 * @typedef {Object} Vote
 * @property {?number} [malignant_share]
 * @property {?number} [malignant_probability]  the share's deprecated name
 * @property {?number} binary
 * @property {Object<string, number>} four_class
 * @property {number} n_labelled
 * @property {boolean} withheld
 */

/**
 * @typedef {Object} QueryInfo
 * @property {?XYZ} [center_xyz]
 * @property {?string} [series_uid]
 * @property {?number} [nodule_id]
 * @property {?string} [excluded_patient_id]
 * @property {boolean} [own_patient_included]
 * @property {string} index_version
 * @property {string[]} [levels]
 * @property {?{diameter_mm: ?number, source: string, title: string}} [size_for_search]
 * @property {?number} [best_similarity]
 * @property {?number} [match_threshold]
 * @property {?boolean} [close_match]
 * @property {?string} [preview_png_base64]
 */

/**
 * @typedef {Object} SearchResponse
 * @property {QueryInfo} query
 * @property {Neighbor[]} neighbors
 * @property {Vote} vote
 * @property {?Size} [size_estimate]
 * @property {?Size} [size_measured]
 */

/**
 * @typedef {Object} IndexInfo  GET /v1/index
 * @property {string} version
 * @property {number} n_nodules
 * @property {number} n_scans
 * @property {number} n_labelled
 * @property {?{value: number, percentile: number}} match_threshold
 */

/**
 * @typedef {Object} MapPoint
 * @property {number} id
 * @property {number} x
 * @property {number} y
 * @property {number} diameter_mm
 * @property {?number} [label_4class]
 */

/**
 * @typedef {Object} Vocabulary  GET /v1/vocabulary: the domain terms the viewer shows
 * @property {{name: string, width: number, level: number}[]} window_presets
 * @property {[number, number]} window_width_range  HU
 * @property {[number, number]} window_level_range  HU
 * @property {{name: string, title: string, scale: string[]}[]} characteristics
 * @property {{texture: number, type: string}[]} texture_types
 */

/**
 * @typedef {Object} CoordinateBody  POST /v1/search/coordinate (and the SR of it)
 * @property {string} series_uid
 * @property {string} [study_uid]
 * @property {number[]} center_xyz
 * @property {number} k
 * @property {{labelled_only: boolean}} [filters]
 * @property {boolean} [estimate_size]
 * @property {boolean} [include_own_patient]
 * @property {{long_axis_mm: number, short_axis_mm: number}} [measured_axes_mm]
 */

/** @typedef {{width: number, level: number}} Window  a display window, HU */

// ---- every URL the viewer requests ----------------------------------------------------------

export const INDEX_PATH = "/v1/index";
export const VOCABULARY_PATH = "/v1/vocabulary";
export const SCANS_PATH = "/v1/scans?limit=1000";
export const MAP_PATH = "/v1/map";
export const SEARCH_COORDINATE_PATH = "/v1/search/coordinate";
export const SEARCH_UPLOAD_PATH = "/v1/search/upload";
export const REPORT_SR_PATH = "/v1/reports/sr?seg=true";

/**
 * The window as the three PNG endpoints take it (whole HU).
 * @param {Window} wl
 * @returns {string}
 */
export function windowQuery(wl) {
  return `window=${Math.round(wl.width)}&level=${Math.round(wl.level)}`;
}

/**
 * A PNG's URL in a window.
 * @param {string} path
 * @param {Window} wl
 * @returns {string}
 */
export function windowed(path, wl) {
  return `${path}${path.includes("?") ? "&" : "?"}${windowQuery(wl)}`;
}

/**
 * @param {string} uid
 * @returns {string}
 */
export function scanPath(uid) {
  return `/v1/scans/${encodeURIComponent(uid)}`;
}

/**
 * One world-aligned axial slice.
 * @param {string} uid
 * @param {number} z world mm
 * @param {Window} wl
 * @returns {string}
 */
export function axialPath(uid, z, wl) {
  return `${scanPath(uid)}/axial.png?z=${z}&${windowQuery(wl)}`;
}

/**
 * A zoomed axial view around a point.
 * @param {string} uid
 * @param {number[]} center world mm
 * @param {number} fovMm
 * @param {Window} wl
 * @returns {string}
 */
export function zoomPath(uid, center, fovMm, wl) {
  return `${scanPath(uid)}/zoom.png?center_xyz=${center.join(",")}&fov_mm=${fovMm}&${windowQuery(wl)}`;
}

/**
 * A point's axial, coronal and sagittal slices (before its window: see windowed).
 * @param {string} uid
 * @param {number[]} center world mm
 * @returns {string}
 */
export function scanPreviewPath(uid, center) {
  return `${scanPath(uid)}/preview.png?center_xyz=${center.join(",")}`;
}

/**
 * The series in the OHIF Viewer at the axial image through a point.
 * @param {string} uid
 * @param {number[]} point world mm
 * @returns {string}
 */
export function ohifPath(uid, point) {
  return `${scanPath(uid)}/ohif?center_xyz=${point.join(",")}`;
}

/**
 * @param {number} id
 * @param {boolean} [estimateSize] with its size estimate (slower: a mask is grown)
 * @returns {string}
 */
export function nodulePath(id, estimateSize = false) {
  return `/v1/nodules/${id}${estimateSize ? "?estimate_size=true" : ""}`;
}

/**
 * A catalogue nodule's slices (before its window: see windowed).
 * @param {number} id
 * @returns {string}
 */
export function nodulePreviewPath(id) {
  return `/v1/nodules/${id}/preview.png`;
}

/**
 * The nodules most similar to a catalogue nodule.
 * @param {number} id
 * @param {number} k
 * @param {?string} excludePatient a patient whose nodules are left out
 * @returns {string}
 */
export function similarPath(id, k, excludePatient) {
  const params = new URLSearchParams({ k: String(k) });
  if (excludePatient) params.set("exclude_patient_id", excludePatient);
  return `/v1/nodules/${id}/similar?${params}`;
}

// ---- answers ----------------------------------------------------------------------------------

/** A failed call: the message is "STATUS: what the service said"; status 0: no answer. */
export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * A failed answer in words: its problem detail (RFC 9457), else its title, else the status line.
 * @param {Response} response
 * @returns {Promise<string>}
 */
export async function describeFailure(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return `${response.status}: ${body.detail}`;
    if (body && typeof body.title === "string") return `${response.status}: ${body.title}`;
  } catch {
    // not JSON: the status line says it
  }
  return `${response.status}: ${response.statusText || "request failed"}`;
}

/**
 * @param {unknown} error
 * @returns {boolean} whether a fetch was aborted (a newer search replaced it)
 */
export function isAbort(error) {
  return error instanceof Error && error.name === "AbortError";
}

/**
 * The boundary of a multipart answer's Content-Type, or null.
 * @param {string} contentType
 * @returns {?string}
 */
export function boundaryOf(contentType) {
  const match = /boundary="?([^";]+)"?/i.exec(contentType);
  return match ? match[1] : null;
}

/**
 * The bodies of a multipart/related answer (RFC 2387): parts are
 * "--boundary\r\nheaders\r\n\r\nbody\r\n", and the bodies are binary, so bytes are searched.
 * @param {Uint8Array} data
 * @param {string} boundary
 * @returns {Uint8Array[]}
 */
export function splitMultipart(data, boundary) {
  const marker = new TextEncoder().encode(`--${boundary}`);
  const blank = new TextEncoder().encode("\r\n\r\n");
  /**
   * @param {number} from
   * @param {Uint8Array} needle
   * @returns {number}
   */
  const find = (from, needle) => {
    outer: for (let i = from; i <= data.length - needle.length; i += 1) {
      for (let j = 0; j < needle.length; j += 1) if (data[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  };
  const parts = [];
  let at = find(0, marker);
  while (at >= 0) {
    const next = find(at + marker.length, marker);
    if (next < 0) break;
    const start = find(at, blank) + blank.length;
    parts.push(data.slice(start, next - 2));
    at = next;
  }
  return parts;
}

// ---- the client -------------------------------------------------------------------------------

export class Api {
  /**
   * @param {Object} how
   * @param {() => ?string} how.askToken  asks the user for the token (null: cancelled)
   * @param {Pick<Storage, "getItem"|"setItem">} how.storage  where the token is kept
   * @param {(input: string, init: RequestInit) => Promise<Response>} [how.fetch]  the network
   */
  constructor({ askToken, storage, fetch: send = (input, init) => fetch(input, init) }) {
    this.askToken = askToken;
    this.storage = storage;
    this.send = send;
  }

  /**
   * One call; a 401 that asks for a bearer token asks the user once and tries again. Rejects
   * with an ApiError, or the AbortError of an aborted call as it is.
   * @param {string} path
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async request(path, init = {}) {
    let response;
    for (let attempt = 0; ; attempt += 1) {
      const headers = new Headers(init.headers || {});
      const token = this.storage.getItem(TOKEN_KEY);
      if (token) headers.set("Authorization", `Bearer ${token}`);
      try {
        response = await this.send(path, { ...init, headers });
      } catch (e) {
        if (isAbort(e)) throw e;
        throw new ApiError(`the service cannot be reached (${e instanceof Error ? e.message : e})`, 0);
      }
      const wantsToken = response.status === 401 && (response.headers.get("WWW-Authenticate") || "").startsWith("Bearer");
      if (!wantsToken || attempt > 0) break;
      const typed = this.askToken();
      if (!typed) break;
      this.storage.setItem(TOKEN_KEY, typed.trim());
    }
    if (!response.ok) throw new ApiError(await describeFailure(response), response.status);
    return response;
  }

  /**
   * @param {string} path
   * @param {RequestInit} [init]
   * @returns {Promise<any>} the answer's JSON
   */
  async json(path, init) {
    return (await this.request(path, init)).json();
  }

  /** @returns {Promise<IndexInfo>} */
  index() {
    return this.json(INDEX_PATH);
  }

  /** @returns {Promise<Vocabulary>} */
  vocabulary() {
    return this.json(VOCABULARY_PATH);
  }

  /** @returns {Promise<{scans: ScanSummary[]}>} */
  scans() {
    return this.json(SCANS_PATH);
  }

  /**
   * @param {string} uid
   * @returns {Promise<Scan>}
   */
  scan(uid) {
    return this.json(scanPath(uid));
  }

  /** @returns {Promise<{points: MapPoint[]}>} */
  map() {
    return this.json(MAP_PATH);
  }

  /**
   * @param {number} id
   * @param {{estimateSize?: boolean, signal?: AbortSignal}} [how]
   * @returns {Promise<NoduleDetail>}
   */
  nodule(id, { estimateSize = false, signal } = {}) {
    return this.json(nodulePath(id, estimateSize), signal ? { signal } : undefined);
  }

  /**
   * @param {number} id
   * @param {number} k
   * @param {?string} excludePatient
   * @param {AbortSignal} [signal]
   * @returns {Promise<SearchResponse>}
   */
  similar(id, k, excludePatient, signal) {
    return this.json(similarPath(id, k, excludePatient), { signal });
  }

  /**
   * @param {CoordinateBody} body
   * @param {AbortSignal} [signal]
   * @returns {Promise<SearchResponse>}
   */
  searchCoordinate(body, signal) {
    return this.json(SEARCH_COORDINATE_PATH, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
  }

  /**
   * @param {FormData} form
   * @param {AbortSignal} [signal]
   * @returns {Promise<SearchResponse>}
   */
  searchUpload(form, signal) {
    return this.json(SEARCH_UPLOAD_PATH, { method: "POST", body: form, signal });
  }

  /**
   * The OHIF Viewer's address of a series at a point.
   * @param {string} uid
   * @param {number[]} point
   * @returns {Promise<{url: string}>}
   */
  ohifLink(uid, point) {
    return this.json(ohifPath(uid, point));
  }

  /**
   * The search as a DICOM SR, with the SEG of its mask when one can be grown (multipart).
   * @param {CoordinateBody} body
   * @returns {Promise<Response>}
   */
  reportSr(body) {
    return this.request(REPORT_SR_PATH, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  }

  /**
   * An image (a PNG endpoint), fetched with the token rather than by an img's src.
   * @param {string} path
   * @returns {Promise<Blob>}
   */
  async blob(path) {
    return (await this.request(path)).blob();
  }
}

/** The viewer's client: the token is asked for in a prompt and kept in sessionStorage. */
export const api = new Api({
  askToken: () => window.prompt("This service needs an access token (ask its operator):"),
  storage: {
    getItem: (key) => sessionStorage.getItem(key),
    setItem: (key, value) => sessionStorage.setItem(key, value),
  },
});

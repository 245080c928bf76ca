// @ts-check
/**
 * The nodule-search API as the panel calls it. The OHIF server forwards /v1 to the service, so
 * every call is same-origin; the access token (when the service wants one) is asked for once
 * and kept for this tab, under the key the service's own viewer uses; every failure becomes an
 * Error whose message is the service's problem detail.
 */

export const TOKEN_KEY = "nodule-search-access-token";

/**
 * @typedef {Object} CoordinateQuery  the body of POST /v1/search/coordinate (and of the SR)
 * @property {string} series_uid
 * @property {string} [study_uid]
 * @property {number[]} center_xyz  world mm, DICOM patient (LPS) frame
 * @property {number} k
 * @property {boolean} estimate_size
 */

/**
 * @typedef {Object} StoredReport
 * @property {number} objects  DICOM objects stored: 2 with the SEG, 1 when no mask could be made
 * @property {?string} location  the SR's WADO-RS address in the PACS
 */

/** A failed call: the message is what the service said, the status its HTTP status (0: none). */
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
 * The problem detail of a failed answer (RFC 9457), or its status in words.
 * @param {Response} response
 * @returns {Promise<string>}
 */
export async function describeFailure(response) {
  let detail = "";
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") detail = body.detail;
  } catch {
    // not JSON: the status says it
  }
  return detail ? `${detail} (HTTP ${response.status})` : `the service answered HTTP ${response.status}`;
}

/**
 * The parts of a multipart/related answer (RFC 2387), counted by their delimiters.
 * @param {string} contentType  with its boundary parameter
 * @param {Uint8Array} body
 * @returns {number}
 */
export function multipartCount(contentType, body) {
  const match = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!match) return 0;
  const delimiter = new TextEncoder().encode(`--${match[1]}\r\n`);
  let count = 0;
  outer: for (let i = 0; i + delimiter.length <= body.length; i += 1) {
    for (let j = 0; j < delimiter.length; j += 1) {
      if (body[i + j] !== delimiter[j]) continue outer;
    }
    count += 1;
    i += delimiter.length - 1;
  }
  return count;
}

/**
 * The service's own viewer at a searched point, opening the comparison with one neighbour.
 * @param {string} viewerPath
 * @param {CoordinateQuery} query
 * @param {number} neighbourId
 * @returns {string}
 */
export function compareUrl(viewerPath, query, neighbourId) {
  const params = new URLSearchParams({
    series_uid: query.series_uid,
    center_xyz: query.center_xyz.map((v) => v.toFixed(2)).join(","),
    k: String(query.k),
    compare: String(neighbourId),
  });
  if (query.study_uid) params.set("study_uid", query.study_uid);
  return `${viewerPath}?${params}`;
}

export class Api {
  /**
   * @param {string} root  the API's origin and prefix ("" for same-origin)
   * @param {() => ?string} askToken  asks the user for the access token (null: cancelled)
   * @param {Storage} storage  where the token is kept (sessionStorage: this tab only)
   */
  constructor(root, askToken, storage) {
    this.root = root;
    this.askToken = askToken;
    this.storage = storage;
  }

  /**
   * One call; a 401 that asks for a bearer token asks the user once and tries again.
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
        response = await fetch(`${this.root}${path}`, { ...init, headers });
      } catch (e) {
        throw new ApiError(`the nodule-search service cannot be reached (${e instanceof Error ? e.message : e})`, 0);
      }
      const wantsToken = response.status === 401 && (response.headers.get("WWW-Authenticate") || "").startsWith("Bearer");
      if (!wantsToken || attempt > 0) break;
      const given = this.askToken();
      if (!given) break;
      this.storage.setItem(TOKEN_KEY, given.trim());
    }
    if (!response.ok) throw new ApiError(await describeFailure(response), response.status);
    return response;
  }

  /**
   * The similar nodules of a point.
   * @param {CoordinateQuery} query
   * @returns {Promise<any>} the SearchResponse
   */
  async search(query) {
    const response = await this.request("/v1/search/coordinate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(query),
    });
    return response.json();
  }

  /**
   * The search as a DICOM SR, with the estimated mask as a SEG when one can be made, stored in
   * the PACS the series came from.
   * @param {CoordinateQuery} query
   * @returns {Promise<StoredReport>}
   */
  async storeReport(query) {
    const response = await this.request("/v1/reports/sr?store=true&seg=true", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(query),
    });
    const body = new Uint8Array(await response.arrayBuffer());
    return {
      objects: multipartCount(response.headers.get("Content-Type") || "", body),
      location: response.headers.get("Location"),
    };
  }

  /**
   * A catalogue nodule's preview as an object URL (fetched with the token; revoke when done).
   * @param {number} id
   * @returns {Promise<string>}
   */
  async previewUrl(id) {
    const response = await this.request(`/v1/nodules/${id}/preview.png`);
    return URL.createObjectURL(await response.blob());
  }
}

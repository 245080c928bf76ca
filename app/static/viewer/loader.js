// @ts-check
/**
 * The one image loader for views that follow a moving wish (the axial slice while typing,
 * scrolling or dragging the window; each comparison view while scrolling): at most one request in
 * flight, and when it ends only the latest wish made meanwhile is fetched, so a burst of wheel
 * steps costs two requests, not twenty, and the view never shows an older wish after a newer.
 */

/**
 * @template {{url: string}} W
 * @typedef {Object} LoaderParts
 * @property {(url: string) => Promise<Response>} fetch  the request (with the token)
 * @property {(wish: W, blob: Blob, response: Response) => (void|Promise<void>)} show  draw it
 * @property {(wish: W, error: unknown) => void} fail  say why this wish could not be shown
 * @property {(busy: boolean) => void} [busy]  a request is (no longer) in flight
 */

/** @template {{url: string}} W */
export class SingleFlightLoader {
  /** @param {LoaderParts<W>} parts */
  constructor(parts) {
    this.parts = parts;
    /** @type {?W} the latest wish not yet asked for */
    this.pending = null;
    this.inFlight = false;
    /** @type {?Promise<void>} */
    this.running = null;
  }

  /**
   * Ask for a wish: fetched now when nothing is in flight, else once the request in flight ends
   * (unless a newer wish replaces it first).
   * @param {W} wish
   */
  want(wish) {
    this.pending = wish;
    if (!this.inFlight) this.running = this.pump();
  }

  /** @returns {Promise<void>} settled once nothing is in flight or pending */
  async idle() {
    while (this.running) await this.running;
  }

  async pump() {
    this.inFlight = true;
    if (this.parts.busy) this.parts.busy(true);
    try {
      while (this.pending) {
        const wish = this.pending;
        this.pending = null;
        try {
          const response = await this.parts.fetch(wish.url);
          await this.parts.show(wish, await response.blob(), response);
        } catch (e) {
          this.parts.fail(wish, e);
        }
      }
    } finally {
      this.inFlight = false;
      this.running = null;
      if (this.parts.busy) this.parts.busy(false);
    }
  }
}

// MobileSAM browser demo: durable share links. A link names its image by content id; the
// server writes uploads to its store a little after the upload's reply (to keep the first
// mask fast), so the page hands out a link only once the server confirmed that the image is
// on disk (POST /msam/store/<id>: 200 once written and fsynced). A link copied a moment
// before the server crashes then still opens, on this server or another replica sharing the
// store. StoredImages owns the ids confirmed so far.

/** Ids of images the server said are stored; `ensure(id)` asks it (once per id, concurrent calls share). */
export class StoredImages {
  #stored = new Set();
  #asking = new Map();
  #fetch;

  /** `fetchFn`: window.fetch (a stand-in in tests). */
  constructor(fetchFn = (...a) => globalThis.fetch(...a)) {
    this.#fetch = fetchFn;
  }

  /** Note an image info from the server: `stored: true` means its file is already on disk. */
  note(info) {
    if (info && info.stored === true && info.image_id) this.#stored.add(info.image_id);
  }

  has(imageId) {
    return this.#stored.has(imageId);
  }

  /** Resolves once the server confirmed that `imageId` is stored; rejects with a message to show. */
  ensure(imageId) {
    if (this.#stored.has(imageId)) return Promise.resolve();
    let asking = this.#asking.get(imageId);
    if (!asking) {
      asking = this.#ask(imageId).finally(() => this.#asking.delete(imageId));
      this.#asking.set(imageId, asking);
    }
    return asking;
  }

  async #ask(imageId) {
    let res;
    try {
      res = await this.#fetch(`/msam/store/${encodeURIComponent(imageId)}`, { method: "POST", cache: "no-store" });
    } catch (e) {
      throw new Error("No link: the server could not be reached to store the image. Try again.");
    }
    if (res.status === 404) throw new Error("No link: this image is no longer on the server; upload it again.");
    if (!res.ok) {
      const detail = (await res.text().catch(() => "")).trim();
      throw new Error("No link: " + (detail || `the server could not store the image (HTTP ${res.status}).`));
    }
    this.#stored.add(imageId);
  }
}

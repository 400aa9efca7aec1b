// The interactive image view: draws the image, mask overlays and prompts on a
// high-DPI canvas fitted to the available width, and turns pointer input into
// prompts in original-image pixels. Several instances may share a page (compare mode).

import { normBox, q } from "./prompts.js";

const DRAG_PX = 5; // CSS pixels of movement that turn a press into a box drag
// CSS pixels: the short side of an extreme panorama stays big enough to click (the canvas then
// scrolls sideways), and no side exceeds what a canvas may have
const MIN_SIDE = 48;
const MAX_SIDE = 16384;

export class SegCanvas {
  /**
   * @param {HTMLElement} parent element to fill
   * @param {{onPoint?: Function, onBox?: Function, onHover?: Function, onDrag?: Function,
   *          maxHeightFraction?: number}} handlers
   *   onPoint({x, y, label, select}) (select: Alt was held, to pick an object rather than add a point), onBox({x0, y0, x1, y1}), onHover({x, y} | null),
   *   onDrag({x0, y0, x1, y1} | null) while a box is being dragged.
   */
  constructor(parent, handlers = {}) {
    this.handlers = handlers;
    this.maxHeightFraction = handlers.maxHeightFraction ?? 0.72;
    this.wrap = document.createElement("div");
    this.wrap.className = "msam-canvas-wrap";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "msam-canvas";
    this.canvas.tabIndex = 0;
    this.wrap.appendChild(this.canvas);
    parent.appendChild(this.wrap);
    this.ctx = this.canvas.getContext("2d");

    this.image = null; // HTMLImageElement / ImageBitmap
    this.width = 0; // original image size
    this.height = 0;
    this.overlays = []; // [{source: canvas, opacity?: number}] covering the whole image
    this.points = [];
    this.box = null;
    this.dragBox = null;
    this.hover = null;
    this.placeholder = "";
    this.hoverEnabled = true; // track the pointer for hover previews
    this.cssW = 0;
    this.cssH = 0;
    this._press = null;
    this._raf = 0;

    this._bind();
    this._ro = new ResizeObserver(() => this._resize());
    this._ro.observe(this.wrap);
    this._resize();
  }

  destroy() {
    this._ro.disconnect();
    cancelAnimationFrame(this._raf);
    this.wrap.remove();
  }

  /** Show an image (null to clear) of original size width x height. */
  setImage(image, width, height) {
    this.image = image;
    this.width = image ? width : 0;
    this.height = image ? height : 0;
    this.points = [];
    this.box = null;
    this.dragBox = null;
    this.hover = null;
    this._press = null;
    this.overlays = [];
    this._resize();
  }

  setHoverEnabled(on) {
    this.hoverEnabled = !!on;
    if (!on) this._setHover(null);
  }

  setPlaceholder(text) {
    this.placeholder = text || "";
    this.redraw();
  }

  /** Mask overlays: [{source: CanvasImageSource covering the image}]. */
  setOverlays(overlays) {
    this.overlays = overlays || [];
    this.redraw();
  }

  setPrompts(points, box) {
    this.points = points || [];
    this.box = box || null;
    this.redraw();
  }

  /**
   * Show another view's pointer here (compare mode: the cursor and the box being dragged on one
   * canvas are drawn on the other too). Calls no handler.
   */
  mirror(hover, dragBox) {
    if (this._press) return; // this canvas is the one being used
    const h = hover || null, d = dragBox || null;
    if (h === this.hover && d === this.dragBox) return;
    this.hover = h;
    this.dragBox = d;
    this.redraw();
  }

  // ---- geometry ----

  _resize() {
    const availW = Math.max(1, this.wrap.clientWidth || this.wrap.getBoundingClientRect().width || 640);
    let w = availW;
    let h;
    if (this.width && this.height) {
      h = (w * this.height) / this.width;
      const maxH = Math.max(200, (window.innerHeight || 800) * this.maxHeightFraction);
      if (h > maxH) {
        h = maxH;
        w = (h * this.width) / this.height;
      }
      if (h < MIN_SIDE) [w, h] = [(MIN_SIDE * this.width) / this.height, MIN_SIDE];
      if (w < MIN_SIDE) [w, h] = [MIN_SIDE, (MIN_SIDE * this.height) / this.width];
      const over = Math.max(w, h) / MAX_SIDE;
      if (over > 1) [w, h] = [w / over, h / over];
    } else {
      h = Math.min(360, Math.max(160, w * 0.5));
    }
    w = Math.max(1, Math.floor(w));
    h = Math.max(1, Math.floor(h));
    const dpr = window.devicePixelRatio || 1;
    if (w !== this.cssW || h !== this.cssH || this.canvas.width !== Math.round(w * dpr)) {
      this.cssW = w;
      this.cssH = h;
      this.canvas.style.width = w + "px";
      this.canvas.style.height = h + "px";
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    this.redraw();
  }

  /** CSS pixels of the canvas -> original-image pixels (unclamped). */
  toImage(clientX, clientY) {
    const r = this.canvas.getBoundingClientRect();
    return {
      x: ((clientX - r.left) / r.width) * this.width,
      y: ((clientY - r.top) / r.height) * this.height,
    };
  }

  _inside(p) {
    return p.x >= 0 && p.y >= 0 && p.x <= this.width && p.y <= this.height;
  }

  _clamp(p) {
    return { x: Math.min(Math.max(p.x, 0), this.width), y: Math.min(Math.max(p.y, 0), this.height) };
  }

  // ---- input ----

  _bind() {
    const c = this.canvas;
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("pointerdown", (e) => {
      if (!this.width || (e.button !== 0 && e.button !== 2)) return;
      e.preventDefault();
      c.focus({ preventScroll: true });
      try { c.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
      this._press = {
        id: e.pointerId, cx: e.clientX, cy: e.clientY,
        start: this.toImage(e.clientX, e.clientY),
        bg: e.button === 2 || e.shiftKey, alt: e.altKey, dragging: false,
      };
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.width) return;
      const p = this.toImage(e.clientX, e.clientY);
      const press = this._press;
      if (press && press.id === e.pointerId) {
        if (!press.dragging && Math.hypot(e.clientX - press.cx, e.clientY - press.cy) >= DRAG_PX) {
          press.dragging = true;
          this._setHover(null);
        }
        if (press.dragging) {
          const b = this._boxFrom(press.start, p);
          this.dragBox = b;
          this.redraw();
          this.handlers.onDrag?.(b);
        }
        return;
      }
      if (e.pointerType === "touch" || !this.hoverEnabled) return;
      this._setHover(this._inside(p) ? { x: q(p.x), y: q(p.y) } : null);
    });
    const finish = (e, cancelled) => {
      const press = this._press;
      if (!press || press.id !== e.pointerId) return;
      this._press = null;
      try { c.releasePointerCapture(e.pointerId); } catch { /* not captured */ }
      if (press.dragging) {
        const b = this._boxFrom(press.start, this.toImage(e.clientX, e.clientY));
        this.dragBox = null;
        this.redraw();
        this.handlers.onDrag?.(null);
        if (!cancelled && b.x1 > b.x0 && b.y1 > b.y0) this.handlers.onBox?.(b);
        return;
      }
      if (cancelled) return;
      const p = press.start;
      if (!this._inside(p)) return;
      this._setHover(null); // no preview of a second point here until the pointer moves
      this.handlers.onPoint?.({ x: q(p.x), y: q(p.y), label: press.bg ? 0 : 1, select: press.alt });
    };
    c.addEventListener("pointerup", (e) => finish(e, false));
    c.addEventListener("pointercancel", (e) => finish(e, true));
    c.addEventListener("pointerleave", () => {
      if (!this._press) this._setHover(null);
    });
  }

  _boxFrom(a, b) {
    const ca = this._clamp(a);
    const cb = this._clamp(b);
    return normBox(ca.x, ca.y, cb.x, cb.y, this.width, this.height);
  }

  _setHover(p) {
    const old = this.hover;
    if ((old && p && old.x === p.x && old.y === p.y) || (!old && !p)) return;
    this.hover = p;
    this.redraw();
    this.handlers.onHover?.(p);
  }

  // ---- drawing ----

  redraw() {
    if (this._raf) return;
    this._raf = requestAnimationFrame(() => {
      this._raf = 0;
      this.draw();
    });
  }

  draw() {
    const ctx = this.ctx;
    const dpr = this.canvas.width / Math.max(1, this.cssW);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = this.cssW, H = this.cssH;
    if (!this.image) {
      ctx.fillStyle = "rgba(127,127,127,0.12)";
      ctx.fillRect(0, 0, W, H);
      if (this.placeholder) {
        ctx.fillStyle = "rgba(127,127,127,0.9)";
        ctx.font = "15px system-ui, sans-serif";
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(this.placeholder, W / 2, H / 2);
      }
      return;
    }
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.image, 0, 0, W, H);
    for (const ov of this.overlays) {
      if (!ov || !ov.source) continue;
      ctx.globalAlpha = ov.opacity ?? 1;
      ctx.drawImage(ov.source, 0, 0, W, H);
      ctx.globalAlpha = 1;
    }
    const sx = W / this.width, sy = H / this.height;
    const drawBox = (b, dashed) => {
      ctx.save();
      ctx.lineWidth = 2;
      ctx.strokeStyle = dashed ? "rgba(255,255,255,0.95)" : "rgba(60,200,255,1)";
      if (dashed) ctx.setLineDash([6, 4]);
      ctx.strokeRect(b.x0 * sx, b.y0 * sy, (b.x1 - b.x0) * sx, (b.y1 - b.y0) * sy);
      ctx.restore();
    };
    if (this.box) drawBox(this.box, false);
    if (this.dragBox) drawBox(this.dragBox, true);
    const dot = (p, fill, r) => {
      ctx.beginPath();
      ctx.arc(p.x * sx, p.y * sy, r, 0, 2 * Math.PI);
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "white";
      ctx.stroke();
    };
    for (const p of this.points) dot(p, p.label === 1 ? "#1fbf4a" : "#e5302b", 5.5);
    if (this.hover && !this._press) dot(this.hover, "rgba(31,191,74,0.55)", 4);
  }
}

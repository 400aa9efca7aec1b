// MobileSAM browser demo: the notice shown when the page is not cross-origin isolated. Inside
// another site's <iframe> (a Hugging Face Space is shown in one on its Hub page) the page gets
// no COOP/COEP isolation, so onnxruntime-web cannot use threads and each decode takes about
// twice as long. The page still works; the notice says so and links to the full page (a new
// tab of the same URL, isolated by the server's headers).

/** {text, linkText, href} of the notice for window `win`, or null when the page is isolated (or
 * when isolation is unknown: not a browser). */
export function isolationNotice(win = globalThis) {
  if (!win || win.crossOriginIsolated !== false || !win.location) return null;
  const framed = (() => {
    try { return win.self !== win.top; } catch { return true; } // a cross-origin parent: access denied
  })();
  return {
    text: (framed ? "This demo is shown inside another page, which" : "This page")
      + " is not cross-origin isolated, so the mask decoder runs on one thread (about twice as slow).",
    linkText: "Open the full page ↗",
    href: win.location.href,
  };
}

// MobileSAM browser demo: the upload control shown before Gradio's page has loaded.
//
// The server writes this script, inline, right after the early control's markup at the top of the
// page's <body> (mobilesam_app/server.py, page_body). On a first visit over a phone connection
// Gradio's own upload box appears seconds after the page opens; this control is there with the
// HTML. A photo chosen (or dropped) here goes to window.msam.choosePhoto (web/main.js: the resized
// upload, web/upload.js), queued until main.js has run; the photo then follows into the upload box
// once that exists, so share links and downloads work as usual. Once the upload box is there, the
// early control goes (web/upload.js, retireEarlyControl).
//
// A classic script (not a module): it must run before any module has been fetched.
(() => {
  const box = document.getElementById("msam-early");
  if (!box) return;
  const input = box.querySelector("input[type=file]");
  const note = box.querySelector(".msam-early-note");

  function take(files) {
    if (!files || files.length === 0) return;
    const file = files[0];
    if (note) note.textContent = `Sending ${file.name}… the page is still loading.`;
    box.classList.add("msam-early-taken");
    const msam = window.msam || (window.msam = { _queue: [] });
    if (typeof msam.choosePhoto === "function") msam.choosePhoto(file);
    else (msam._queue || (msam._queue = [])).push(["choosePhoto", [file]]);
  }

  input.addEventListener("change", () => take(input.files));
  box.addEventListener("dragover", (e) => e.preventDefault());
  box.addEventListener("drop", (e) => {
    e.preventDefault();
    take(e.dataTransfer && e.dataTransfer.files);
  });
})();

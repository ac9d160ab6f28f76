// Wide tables scroll inside their own box. Where one is wider than its box (a phone,
// mostly), the box is marked so that a hint above it says so: a phone shows no
// scrollbar until the table is touched. Layout only: nothing here reads the numbers.
(() => {
  const BOXES = ".table-scroll, #part-table, .prose :not(.table-scroll) > table:not(.breakdown)";

  function mark() {
    for (const box of document.querySelectorAll(BOXES)) {
      if (box.scrollWidth > box.clientWidth + 1) box.dataset.overflow = "true";
      else delete box.dataset.overflow;
    }
  }

  let queued = false;
  function later() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      mark();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    mark();
    window.addEventListener("resize", later);
    // Results are painted after load (the calculator, the tools): mark them as they come.
    new MutationObserver(later).observe(document.body, { childList: true, subtree: true });
  });
})();

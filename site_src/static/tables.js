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

  // Whether DOM changes can change what overflows: inside a table's box, or adding one.
  // Others (the engine's progress line while Python starts, a verdict) are left alone,
  // since each mark reads the layout, which then has to be worked out at once.
  function touchesTables(records) {
    return records.some(
      (record) =>
        record.target.closest?.(BOXES) ||
        [...record.addedNodes].some(
          (node) => node.nodeType === Node.ELEMENT_NODE && (node.matches(BOXES) || node.querySelector(BOXES)),
        ),
    );
  }

  document.addEventListener("DOMContentLoaded", () => {
    mark();
    window.addEventListener("resize", later);
    // Results are painted after load (the calculator, the tools): mark them as they come.
    new MutationObserver((records) => {
      if (touchesTables(records)) later();
    }).observe(document.body, { childList: true, subtree: true });
  });
})();

// Light or dark: the system's choice until the reader picks one with the header button,
// which is then remembered. Loaded in <head> so the page never flashes the other theme.
(() => {
  const KEY = "nnmem-theme";
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");
  let stored = null;
  try {
    stored = localStorage.getItem(KEY);
  } catch {
    // storage blocked: follow the system only
  }
  const current = () => root.dataset.theme || (system.matches ? "dark" : "light");
  if (stored === "dark" || stored === "light") root.dataset.theme = stored;

  function label(button) {
    const dark = current() === "dark";
    button.setAttribute("aria-pressed", String(dark));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false;
    label(button);
    button.addEventListener("click", () => {
      root.dataset.theme = current() === "dark" ? "light" : "dark";
      try {
        localStorage.setItem(KEY, root.dataset.theme);
      } catch {
        // the choice lasts for this page only
      }
      label(button);
    });
    system.addEventListener("change", () => label(button));
  });
})();

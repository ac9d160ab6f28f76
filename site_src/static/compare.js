// The calculator's Compare: up to three pinned scenarios side by side. It keeps the pinned
// scenarios (each in its compact form, as nnmem returned it) and paints the table nnmem
// builds; every figure in it, every difference and the link's packed state come from
// nnmem.web.compare, in Python. The calculator (calculator.js) owns the form and the URL.
const MAX = 3;

// `ask(fields, page)` sends a request to nnmem and resolves with its reply (null before
// the engine has loaded); `current()` is the form's fields; `units()` the unit control's
// value; `setLink(packed)` writes the comparison into the URL's fragment ("" removes it);
// `announce(text)` says beside the Add button what was pinned, out of sight of the table.
export function startCompare({ ask, current, units, setLink, announce }) {
  const box = document.getElementById("compare");
  const table = document.getElementById("compare-table");
  const status = document.getElementById("compare-status");
  const cue = document.getElementById("compare-cue");
  let pinned = [];
  let turn = 0;

  const say = (text) => {
    status.textContent = text;
  };

  // Sideways scrolling, where the columns are wider than the screen: said, not guessed.
  function showCue() {
    cue.hidden = table.scrollWidth <= table.clientWidth + 1;
  }

  async function send(fields, done, beside = false) {
    const mine = ++turn;
    const reply = await ask({ ...fields, units: units() }, "compare");
    if (mine !== turn) return; // a newer comparison is on its way
    if (!reply) {
      say("The comparison is worked out as soon as the engine has loaded.");
      return;
    }
    if (!reply.ok) {
      const problems = (reply.errors || []).map((e) => e.message).join(" ");
      say(problems || `The comparison hit an internal error (${reply.fatal}).`);
      return;
    }
    pinned = reply.states;
    table.innerHTML = reply.html.compare || "";
    box.dataset.count = String(pinned.length);
    setLink(reply.link);
    const text = reply.note || done(pinned.length);
    say(text);
    if (beside) announce(`${text} The table is under the result, in Compare scenarios.`);
    showCue();
  }

  function add() {
    if (pinned.length >= MAX) {
      say(`Compare holds ${MAX} scenarios: remove one before adding another.`);
      announce(`Compare holds ${MAX} scenarios: remove one in Compare scenarios before adding another.`);
      return;
    }
    const fields = current();
    if (!fields) {
      say("Fix the highlighted field first: a scenario with a problem cannot be compared.");
      announce("Fix the highlighted field first: a scenario with a problem cannot be compared.");
      return;
    }
    send(
      { scenarios: [...pinned, fields] },
      (n) => `Added as scenario ${"ABC"[n - 1]}${n < MAX ? ": change the form and add another to compare them." : "."}`,
      true,
    );
  }

  function remove(index) {
    const name = "ABC"[index];
    const left = pinned.filter((_, i) => i !== index);
    if (!left.length) {
      turn += 1;
      pinned = [];
      table.innerHTML = "";
      box.dataset.count = "0";
      setLink("");
      say(`Removed scenario ${name}: nothing is pinned.`);
      showCue();
      box.querySelector("button[data-ready]").focus();
      return;
    }
    // The button pressed is gone with its column: the keyboard goes on from the table.
    send({ scenarios: left }, () => `Removed scenario ${name}.`).then(() => table.focus());
  }

  box.addEventListener("click", (event) => {
    const ready = event.target.closest("button[data-ready]");
    if (ready) {
      const fields = current();
      if (!fields) {
        say("Fix the highlighted field first: the ready comparisons start from the form's scenario.");
        return;
      }
      const label = ready.textContent.trim();
      send({ scenarios: [fields], ready: ready.dataset.ready }, () => `Compared: ${label}, built from the scenario on the form.`);
      return;
    }
    const gone = event.target.closest("button[data-remove]");
    if (gone) remove(Number(gone.dataset.remove));
  });
  document.getElementById("compare-add").addEventListener("click", add);
  window.addEventListener("resize", showCue);

  return {
    // A shared link names a comparison: said until the engine has loaded to work it out.
    awaitLink() {
      say("The link's comparison will be worked out as soon as the engine has loaded.");
    },
    // A shared link's comparison, packed as nnmem wrote it.
    fromLink(packed) {
      send({ link: packed }, (n) => `The link's comparison of ${n} scenarios.`);
    },
    // The units changed: the same scenarios in the new unit.
    refresh() {
      if (pinned.length) send({ scenarios: pinned }, () => "");
    },
    canAdd: () => pinned.length < MAX,
  };
}

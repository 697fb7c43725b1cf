// Datasets page: the export's video picker. Typing filters the list of videos (ticked ones stay
// visible) and the count says how many are ticked; without this script the full list still works.
// The format chosen last in this browser is kept (localStorage, per project page): the page reloads
// itself while a job runs, and the server only knows the format of the last export started.

const FORMAT_KEY = `masklet.export-format:${location.pathname}`;

function rememberFormat(): void {
  const select = document.querySelector<HTMLSelectElement>("#export select[name=format]");
  if (!select) return;
  let stored: string | null = null;
  try { stored = window.localStorage.getItem(FORMAT_KEY); } catch { /* storage off: the server's choice stays */ }
  if (stored && [...select.options].some((option) => option.value === stored)) select.value = stored;
  select.addEventListener("change", () => {
    try { window.localStorage.setItem(FORMAT_KEY, select.value); } catch { /* storage off */ }
  });
  select.form?.addEventListener("submit", () => {
    try { window.localStorage.setItem(FORMAT_KEY, select.value); } catch { /* storage off */ }
  });
}

function main(): void {
  const search = document.getElementById("video-search") as HTMLInputElement | null;
  const options = document.getElementById("video-options");
  const count = document.getElementById("video-count");
  if (!search || !options || !count) return;
  const boxes = [...options.querySelectorAll<HTMLLabelElement>(".video-option")];
  const update = (): void => {
    const wanted = search.value.trim().toLowerCase();
    let shown = 0;
    for (const box of boxes) {
      const ticked = box.querySelector("input")?.checked ?? false;
      const visible = ticked || !wanted || (box.dataset.name ?? "").includes(wanted);
      box.hidden = !visible;
      if (visible) shown += 1;
    }
    const ticked = boxes.filter((box) => box.querySelector("input")?.checked).length;
    count.textContent = ticked ? `${ticked} ticked (only these are exported) · ${shown} shown`
      : `None ticked: every video · ${shown} shown`;
  };
  search.addEventListener("input", update);
  options.addEventListener("change", update);
  // Enter in the search box ticks the only match instead of sending the form.
  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const visible = boxes.filter((box) => !box.hidden && !box.querySelector("input")?.checked);
    if (visible.length === 1) {
      const input = visible[0].querySelector("input");
      if (input) input.checked = true;
      search.value = "";
      update();
    }
  });
  update();
}

rememberFormat();
main();

// The objects panel: one row per masklet (colour, label, status, lock, show/hide, delete) and
// the selected object's details (the reviewer's reason while it is sent back, Submit / Reopen).

import { labelWithIcon } from "../icons";
import type { Masklet } from "../generated/protocol";
import type { Store } from "./store";

export interface PanelActions {
  select(objectId: number): void;
  label(objectId: number, label: string): void;
  colour(objectId: number, colour: string): void;
  visible(objectId: number, visible: boolean): void;
  remove(objectId: number): void;
  submit(objectId: number): void;
  reopen(objectId: number): void;
}

const STATUS_WORDS: Record<string, string> = {
  draft: "Draft", submitted: "Submitted", approved: "Approved", rejected: "Sent back",
  discarded: "Rejected for good",
};

export function objectName(masklet: Masklet): string {
  return `#${masklet.object_id}${masklet.label ? ` ${masklet.label}` : ""}`;
}

export class ObjectsPanel {
  /** "object": by object number; "score": lowest-scored first (objects without a score last). */
  order: "object" | "score" = "object";

  constructor(
    private readonly list: HTMLElement,
    private readonly details: HTMLElement,
    private readonly store: Store,
    private readonly actions: PanelActions,
    private readonly colourOf: (objectId: number) => string,
    private readonly isVisible: (objectId: number) => boolean,
  ) {
    list.addEventListener("click", (event) => {
      const target = event.target as HTMLElement;
      const row = target.closest<HTMLElement>("li.object");
      if (!row) return;
      const id = Number(row.dataset.objectId);
      if (target.closest(".object-delete")) this.actions.remove(id);
      else if (target.closest(".object-visible")) this.actions.visible(id, !this.isVisible(id));
      else if (!target.closest("select, input")) this.actions.select(id);
    });
    list.addEventListener("change", (event) => {
      const target = event.target as HTMLElement;
      const row = target.closest<HTMLElement>("li.object");
      if (!row) return;
      const id = Number(row.dataset.objectId);
      if (target instanceof HTMLSelectElement) this.actions.label(id, target.value);
      if (target instanceof HTMLInputElement && target.type === "color") this.actions.colour(id, target.value);
    });
    details.addEventListener("click", (event) => {
      const target = (event.target as HTMLElement).closest<HTMLElement>("button[data-action]");
      if (!target) return;
      const id = Number(target.dataset.objectId);
      if (target.dataset.action === "submit") this.actions.submit(id);
      if (target.dataset.action === "reopen") this.actions.reopen(id);
    });
  }

  render(selected: number | null, labels: string[]): void {
    const ids = this.ordered();
    const existing = new Map<number, HTMLElement>();
    for (const row of this.list.querySelectorAll<HTMLElement>("li.object")) existing.set(Number(row.dataset.objectId), row);
    for (const [id, row] of existing) if (!this.store.masklets.has(id)) row.remove();
    let previous: HTMLElement | null = null;
    for (const id of ids) {
      const masklet = this.store.masklets.get(id) as Masklet;
      let row = existing.get(id);
      if (!row) row = this.createRow(id);
      this.fillRow(row, masklet, selected === id, labels);
      if (previous) previous.after(row);
      else this.list.prepend(row);
      previous = row;
    }
    this.list.querySelector(".empty")?.toggleAttribute("hidden", ids.length > 0);
    this.renderDetails(selected);
  }

  private ordered(): number[] {
    const ids = this.store.objectIds();
    if (this.order !== "score") return ids;
    const lowest = new Map(ids.map((id) => [id, this.store.lowestQuality(id) ?? Infinity]));
    return ids.sort((a, b) => lowest.get(a)! - lowest.get(b)! || a - b);
  }

  private createRow(id: number): HTMLElement {
    const row = document.createElement("li");
    row.className = "object";
    row.dataset.objectId = String(id);
    row.innerHTML = `
      <input type="color" class="object-colour" title="Colour">
      <span class="object-name"></span>
      <select class="object-label" title="Label"></select>
      <span class="badge object-status"></span>
      <button type="button" class="icon object-visible" title="Show / hide (H)"></button>
      <button type="button" class="icon object-delete" title="Delete object">✕</button>
      <span class="object-lock muted small"></span>`;
    return row;
  }

  private fillRow(row: HTMLElement, masklet: Masklet, selected: boolean, labels: string[]): void {
    const id = masklet.object_id;
    const editable = this.store.editable(id);
    row.classList.toggle("selected", selected);
    row.classList.toggle("hidden-object", !this.isVisible(id));
    row.classList.toggle("read-only", !editable);
    const colour = row.querySelector<HTMLInputElement>(".object-colour") as HTMLInputElement;
    if (colour.value !== this.colourOf(id)) colour.value = this.colourOf(id);
    (row.querySelector(".object-name") as HTMLElement).textContent = `#${id}`;
    const lowest = this.store.lowestQuality(id);
    row.dataset.lowest = lowest === null ? "" : lowest.toFixed(2);
    row.title = lowest === null ? "" : `Lowest frame score ${lowest.toFixed(2)}`;
    const select = row.querySelector<HTMLSelectElement>(".object-label") as HTMLSelectElement;
    const options = labels.includes(masklet.label) || !masklet.label ? labels : [masklet.label, ...labels];
    const wanted = ["", ...options].join("\n");
    if (select.dataset.options !== wanted) {
      select.replaceChildren(...["", ...options].map((label) => {
        const option = document.createElement("option");
        option.value = label;
        option.textContent = label || "(no label)";
        return option;
      }));
      select.dataset.options = wanted;
    }
    select.value = masklet.label;
    select.disabled = !editable;
    const status = row.querySelector(".object-status") as HTMLElement;
    status.className = `badge object-status masklet-${masklet.status}`;
    status.textContent = STATUS_WORDS[masklet.status] ?? masklet.status;
    const visible = row.querySelector(".object-visible") as HTMLElement;
    visible.textContent = this.isVisible(id) ? "◉" : "○";
    visible.setAttribute("aria-pressed", String(this.isVisible(id)));
    const remove = row.querySelector<HTMLButtonElement>(".object-delete") as HTMLButtonElement;
    remove.disabled = !this.store.canEdit || masklet.status !== "draft"
      || Boolean(masklet.lock_holder && !masklet.locked_by_me);
    const lock = row.querySelector(".object-lock") as HTMLElement;
    if (masklet.lock_holder && !masklet.locked_by_me) labelWithIcon(lock, "lock", `being edited by ${masklet.lock_holder}`);
    else lock.textContent = masklet.locked_by_me && masklet.status === "draft" ? "editing" : "";
  }

  private renderDetails(selected: number | null): void {
    const masklet = selected === null ? undefined : this.store.masklets.get(selected);
    this.details.replaceChildren();
    if (!masklet) {
      this.details.innerHTML = `<p class="muted small">Select an object to edit it, or click on the frame to start a new one.</p>`;
      return;
    }
    const id = masklet.object_id;
    const title = document.createElement("h3");
    title.textContent = `Object ${objectName(masklet)}`;
    const facts = document.createElement("p");
    facts.className = "small muted";
    facts.textContent = `${STATUS_WORDS[masklet.status]} · mask on ${this.store.presentCount(id)} of ${this.store.frames.length} frames`;
    this.details.append(title, facts);
    const note = document.createElement("p");
    note.className = "small object-note";
    if (!this.store.canEdit) note.textContent = "Read only: your role in this project cannot edit masks.";
    else if (masklet.lock_holder && !masklet.locked_by_me) note.textContent = `Read only: ${masklet.lock_holder} is editing this object.`;
    else if (masklet.status === "submitted") note.textContent = "Submitted for review: read only until a reviewer decides.";
    else if (masklet.status === "approved") note.textContent = "Approved: read only.";
    if (note.textContent) this.details.append(note);
    const review = this.reviewBox(masklet);
    if (review) this.details.append(review);
    const buttons = document.createElement("div");
    buttons.className = "object-actions";
    if (this.store.canEdit && masklet.status === "draft") {
      buttons.append(this.button("submit", id, "Submit for review", !masklet.locked_by_me, "primary"));
    }
    if (this.store.canEdit && masklet.status === "rejected") {
      // Only the annotator it was sent back to, or a project admin, may take it back (the server says the same).
      const mine = !masklet.assignee || masklet.assignee === this.store.username || this.store.canManage;
      if (mine) buttons.append(this.button("reopen", id, "Reopen", Boolean(masklet.lock_holder && !masklet.locked_by_me), "primary"));
      else {
        const whose = document.createElement("p");
        whose.className = "small object-note";
        whose.textContent = `Sent back to ${masklet.assignee}: only they or a project admin may reopen it.`;
        this.details.append(whose);
      }
    }
    if (buttons.childElementCount) this.details.append(buttons);
  }

  /** The reviewer's verdict the annotator still has to answer: shown while the object is sent back,
   *  still after it is reopened (the work queue reopens it before the page opens) until it is
   *  submitted again; and for an object rejected for good. */
  private reviewBox(masklet: Masklet): HTMLElement | null {
    const review = masklet.review;
    const open = masklet.status === "rejected" || masklet.status === "draft" || masklet.status === "discarded";
    if (!review || review.verdict !== "unsatisfactory" || !open) return null;
    const box = document.createElement("div");
    box.className = "review-box";
    box.dataset.role = "review";
    const who = document.createElement("strong");
    const reviewer = review.reviewer || "a reviewer";
    who.textContent = masklet.status === "discarded" ? `Rejected for good by ${reviewer}: ` : `Sent back by ${reviewer}: `;
    const reason = document.createElement("span");
    reason.className = "review-reason";
    reason.textContent = review.reason_label || review.reason || "no reason given";
    box.append(who, reason);
    if (review.comment) {
      const comment = document.createElement("p");
      comment.className = "review-comment";
      comment.textContent = review.comment;
      box.append(comment);
    }
    if (masklet.status !== "discarded") {
      const next = document.createElement("p");
      next.className = "small review-next";
      next.textContent = masklet.status === "draft" ? "Fix it, then submit it for review again."
        : "Reopen it to fix it.";
      box.append(next);
    }
    return box;
  }

  private button(action: string, id: number, text: string, disabled: boolean, kind: string): HTMLButtonElement {
    const button = document.createElement("button");
    button.type = "button";
    button.className = kind;
    button.dataset.action = action;
    button.dataset.objectId = String(id);
    button.id = `object-${action}`;
    button.textContent = text;
    button.disabled = disabled;
    return button;
  }
}

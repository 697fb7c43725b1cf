// Undo/redo of this page's edits: each entry is one frame of one object going from revision
// `before` to revision `after` (0 = no mask). Undo asks the server to restore `before`, redo to
// restore `after`; the server keeps every revision, so both are exact.

export interface Edit {
  objectId: number;
  frame: number;
  before: number;
  after: number;
}

const LIMIT = 200;

export class History {
  private readonly done: Edit[] = [];
  private readonly undone: Edit[] = [];

  record(edit: Edit): void {
    if (edit.before === edit.after) return;
    this.done.push(edit);
    if (this.done.length > LIMIT) this.done.shift();
    this.undone.length = 0;
  }

  /** Next edit to undo, without removing it (it is removed once the server has restored it). */
  peekUndo(): Edit | undefined {
    return this.done[this.done.length - 1];
  }

  peekRedo(): Edit | undefined {
    return this.undone[this.undone.length - 1];
  }

  markUndone(edit: Edit): void {
    if (this.done[this.done.length - 1] === edit) this.done.pop();
    this.undone.push(edit);
  }

  markRedone(edit: Edit): void {
    if (this.undone[this.undone.length - 1] === edit) this.undone.pop();
    this.done.push(edit);
  }

  /** Forget the edits of a deleted object. */
  dropObject(objectId: number): void {
    for (const list of [this.done, this.undone]) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i].objectId === objectId) list.splice(i, 1);
    }
  }

  /** Edits that undo / redo would step through (published as the canvas's `data-undo` / `data-redo`). */
  get undoDepth(): number {
    return this.done.length;
  }

  get redoDepth(): number {
    return this.undone.length;
  }

  get canUndo(): boolean {
    return this.done.length > 0;
  }

  get canRedo(): boolean {
    return this.undone.length > 0;
  }
}

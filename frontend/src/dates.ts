// Every page: moments are written by the server as <time datetime="…">YYYY-MM-DD HH:MM UTC</time>
// (annotator/templatetags/masklet.py `when`); here they are shown in the reader's own time zone,
// in the same one format. Scripts that draw dates themselves use `formatWhen` from api.ts.

import { formatWhen } from "./api";

function localise(root: ParentNode): void {
  for (const node of root.querySelectorAll<HTMLTimeElement>("time[datetime]")) {
    const shown = formatWhen(node.dateTime);
    if (shown) node.textContent = shown;
  }
}

localise(document);

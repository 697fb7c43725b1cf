// Web Worker entry (bundled as annotate_worker.js): RLE -> overlay bitmaps, see annotate/overlay_worker.ts.

import "./annotate/overlay_worker";

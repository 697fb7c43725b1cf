// Annotation page entry (bundled as annotate.js): see annotate/app.ts.

import { AnnotateApp } from "./annotate/app";

const root = document.getElementById("annotate");
if (root) new AnnotateApp(root);

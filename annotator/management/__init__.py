"""Management commands of the annotator app."""

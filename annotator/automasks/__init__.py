"""Automatic masklets: proposals on one frame, cleaned and deduplicated, propagated, sent to review.

``generate`` holds the algorithm (no Django); ``runs`` starts and runs it as a ``gpu`` task and
stores the results; ``tasks`` is the Celery entry point.
"""

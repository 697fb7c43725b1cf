"""The Celery app. Queues: ``gpu`` (model work), ``cpu`` (ingest, export), ``train`` (fine-tuning).

Services mode: ``celery -A config worker -Q cpu`` (and ``-Q gpu`` per GPU, ``-Q train``) plus
``celery -A config beat``. Embedded mode runs the same tasks on threads in the server process
(see ``engine.dispatch``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("masklet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["annotator.datasets"])  # dataset export/import jobs: annotator.datasets.tasks
app.autodiscover_tasks(["annotator.automasks"])  # auto-masklet generation: annotator.automasks.tasks

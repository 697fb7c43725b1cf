import sys

from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "engine"
    verbose_name = "Data engine"

    def ready(self) -> None:
        # The storage check at start: wrong credentials or a missing bucket stop the web server or worker
        # with one line saying what to fix, instead of a traceback on every request or task.
        from engine import storage  # app modules load once the app registry is ready

        try:
            storage.verify()
        except storage.StorageError as error:
            sys.exit(f"Masklet cannot start: {error}")

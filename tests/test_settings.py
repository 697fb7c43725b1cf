"""Settings modes: each case imports the settings in a fresh interpreter with its own environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
from django.conf import settings
import django
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "embedded": settings.EMBEDDED,
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "debug": settings.DEBUG,
    "secret_key": settings.SECRET_KEY,
    "data_dir": str(settings.DATA_DIR),
}))
"""


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MASKLET_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "engine.settings", "MASKLET_DATA_DIR": str(tmp_path / "var"), **env})
    return subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=clean, capture_output=True, text=True,
                          timeout=60)


def loaded(tmp_path: Path, **env: str) -> dict:
    result = load_settings(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_defaults_use_sqlite_under_the_data_dir_and_in_process_queues(tmp_path):
    config = loaded(tmp_path)
    assert config["engine"] == "django.db.backends.sqlite3"
    assert config["db_name"] == str(tmp_path / "var" / "masklet.sqlite3")
    assert config["embedded"] is True
    assert config["channel_layer"] == "channels.layers.InMemoryChannelLayer"
    assert config["broker"] == "memory://"
    assert config["debug"] is False


def test_services_mode_uses_postgres_and_redis(tmp_path):
    config = loaded(tmp_path, DATABASE_URL="postgres://u:p@db.example:5432/masklet", REDIS_URL="redis://cache:6379/2")
    assert config["engine"] == "django.db.backends.postgresql"
    assert config["db_name"] == "masklet"
    assert config["embedded"] is False
    assert config["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert config["broker"] == "redis://cache:6379/2"


def test_development_secret_key_is_random_and_kept_between_starts(tmp_path):
    first = loaded(tmp_path)["secret_key"]
    assert len(first) >= 50
    assert loaded(tmp_path)["secret_key"] == first
    assert loaded(tmp_path / "elsewhere")["secret_key"] != first


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MASKLET_SECRET_KEY": "k" * 60, "MASKLET_DEBUG": "1"}, "MASKLET_DEBUG on"),
        ({}, "MASKLET_SECRET_KEY is not set"),
        ({"MASKLET_SECRET_KEY": "k" * 60, "MASKLET_ALLOWED_HOSTS": "*"}, "not '*'"),
    ],
    ids=["debug-on", "default-secret-key", "open-hosts"],
)
def test_production_refuses_unsafe_settings(tmp_path, env, message):
    result = load_settings(tmp_path, MASKLET_PRODUCTION="1", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_starts_when_configured_safely(tmp_path):
    config = loaded(tmp_path, MASKLET_PRODUCTION="1", MASKLET_SECRET_KEY="s" * 60,
                    MASKLET_ALLOWED_HOSTS="masklet.example.org")
    assert config["debug"] is False and config["secret_key"] == "s" * 60


def test_non_postgres_database_url_is_refused_with_its_scheme(tmp_path):
    result = load_settings(tmp_path, DATABASE_URL="mysql://root@localhost/masklet")
    assert result.returncode != 0
    assert "DATABASE_URL must be a postgres:// URL, got mysql://" in result.stderr

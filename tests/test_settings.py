"""Settings modes: each case imports the settings in a fresh process with its own environment.

The processes are forked (``tests/zygote.py``) from one interpreter that has loaded only third-party
libraries; each child sets its environment, then imports ``config.settings`` and every project module
for the first time, as ``python -c`` / ``python manage.py`` would. Started one by one, the ~20
interpreters spent most of their time importing those libraries again.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.zygote import Zygote

REPO_ROOT = Path(__file__).resolve().parent.parent

#: What the settings cases' processes are forked from (``tests/zygote.py``): third-party libraries only, none
#: of which reads the environment or the settings when imported (no DJANGO_SETTINGS_MODULE is set there).
LIBRARIES = """
import numpy, cv2
import django, django.db.models, django.urls, django.http, django.test
import django.contrib.admin, django.contrib.staticfiles.handlers, django.core.management
import celery, kombu, twisted.internet.asyncioreactor, autobahn.twisted.websocket, channels.layers
import dj_database_url, csp.constants, axes, yaml, pydantic
"""
_python: Zygote | None = None


def run_python(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    """``python ARGS`` in a fresh process with exactly ``env``, as ``subprocess.run`` would."""
    global _python
    if _python is None:
        _python = Zygote(LIBRARIES, {k: v for k, v in os.environ.items()
                                     if not k.startswith(("MASKLET_", "DATABASE_URL", "REDIS_URL",
                                                          "DJANGO_SETTINGS_MODULE"))})
    return _python.run(args, timeout, env)


@pytest.fixture(scope="module", autouse=True)
def _stop_the_zygote() -> Iterator[None]:
    global _python
    yield
    if _python is not None:
        _python.close()
        _python = None


#: A key as the README makes one (``openssl rand -hex 32``), fixed so failures are reproducible.
STRONG_KEY = "3f9c2b7e8a1d4f6b0c5e9a2d7b3f8c1e4a6d0b9f2c7e5a8d1b4f3c6e9a0d2b7f"

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
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "hsts": settings.SECURE_HSTS_SECONDS,
    "secure_cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "proxy_header": settings.SECURE_PROXY_SSL_HEADER,
    "trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
}))
"""


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MASKLET_", "DATABASE_URL", "REDIS_URL"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", "MASKLET_DATA_DIR": str(tmp_path / "var"), **env})
    return run_python(["-c", PROBE], clean, timeout=60)


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
        ({"MASKLET_SECRET_KEY": STRONG_KEY, "MASKLET_DEBUG": "1"}, "MASKLET_DEBUG on"),
        ({}, "MASKLET_SECRET_KEY is not set"),
        ({"MASKLET_SECRET_KEY": STRONG_KEY, "MASKLET_ALLOWED_HOSTS": "*"}, "not '*'"),
        ({"MASKLET_SECRET_KEY": "abcde"}, "MASKLET_SECRET_KEY is weak (5 characters, 5 different)"),
        ({"MASKLET_SECRET_KEY": "k" * 60}, "MASKLET_SECRET_KEY is weak (60 characters, 1 different)"),
        ({"MASKLET_SECRET_KEY": "django-insecure-" + STRONG_KEY}, "is weak"),
        ({"MASKLET_SECRET_KEY": STRONG_KEY, "MASKLET_TRUSTED_ORIGINS": "masklet.example.org"}, "not 'masklet.example"),
    ],
    ids=["debug-on", "default-secret-key", "open-hosts", "short-key", "one-character-key", "django-insecure-key",
         "origin-without-scheme"],
)
def test_production_refuses_unsafe_settings(tmp_path, env, message):
    result = load_settings(tmp_path, MASKLET_PRODUCTION="1", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_starts_when_configured_safely(tmp_path):
    config = loaded(tmp_path, MASKLET_PRODUCTION="1", MASKLET_SECRET_KEY=STRONG_KEY,
                    MASKLET_ALLOWED_HOSTS="masklet.example.org")
    assert config["debug"] is False and config["secret_key"] == STRONG_KEY
    assert (config["ssl_redirect"], config["hsts"], config["secure_cookies"]) == (True, 31536000, [True, True])
    assert config["proxy_header"] is None and config["trusted_origins"] == []


def test_tls_proxy_settings(tmp_path):
    config = loaded(tmp_path, MASKLET_BEHIND_PROXY="1",
                    MASKLET_TRUSTED_ORIGINS="https://masklet.example.org, https://tools.example.org:8443")
    assert config["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert config["trusted_origins"] == ["https://masklet.example.org", "https://tools.example.org:8443"]
    assert (config["ssl_redirect"], config["hsts"]) == (False, 0)  # outside production


def _compose_environment() -> dict[str, str]:
    """The web service's environment in docker-compose.yml, as compose fills it in for the README's command."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    given = {"MASKLET_SECRET_KEY": secrets.token_hex(32), "MASKLET_ALLOWED_HOSTS": "masklet.example.org",
             "MASKLET_S3_SECRET_KEY": secrets.token_hex(24)}

    def fill(value: str) -> str:
        def one(match: re.Match) -> str:
            name, op, rest = match.group(1), match.group(2), match.group(3)
            if name in given:
                return given[name]
            assert op == ":-", f"docker-compose.yml needs {name} set: {rest}"
            return rest

        return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, str(value))

    return {name: fill(value) for name, value in compose["services"]["web"]["environment"].items()}


def _compose_environment_here(s3_server) -> dict[str, str]:
    """The web service's environment with MinIO's address replaced by the test's S3 server, holding the bucket."""
    env = _compose_environment()
    bucket = env["MASKLET_STORAGE_URL"].removeprefix("s3://").split("/")[0]
    s3_server.client().create_bucket(Bucket=bucket)
    return {**env, "MASKLET_S3_ENDPOINT_URL": s3_server.url}


def test_check_deploy_is_clean_in_the_compose_configuration(tmp_path, s3_server):
    env = _compose_environment_here(s3_server)
    assert env["MASKLET_PRODUCTION"] == "1" and env["MASKLET_BEHIND_PROXY"] == "1"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MASKLET_", "DATABASE_URL", "REDIS_URL"))}
    clean.update(env, MASKLET_DATA_DIR=str(tmp_path / "data"))
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], clean, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


HEALTH_PROBE = """
import django, json, os
django.setup()
from django.test import Client
response = Client().get("/healthz", HTTP_HOST=os.environ["MASKLET_ALLOWED_HOSTS"].split(",")[0])
print(json.dumps([response.status_code, response.content.decode()]))
"""


def test_the_compose_health_check_is_answered_over_plain_http(tmp_path, s3_server):
    """What compose's health check asks (plain HTTP inside the container) gets "ok", not the HTTPS redirect."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    check = compose["services"]["web"]["healthcheck"]["test"][-1]
    assert "'http://127.0.0.1:8000/healthz', headers={'Host': os.environ['MASKLET_ALLOWED_HOSTS']" in check
    env = {k: v for k, v in _compose_environment_here(s3_server).items()
           if k not in ("DATABASE_URL", "REDIS_URL")}  # SQLite here
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MASKLET_", "DATABASE_URL", "REDIS_URL"))}
    clean.update(env, MASKLET_DATA_DIR=str(tmp_path / "data"), DJANGO_SETTINGS_MODULE="config.settings")
    result = run_python(["-c", HEALTH_PROBE], clean, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [200, '{"status": "ok"}']


def test_compose_services_share_no_volume_only_the_bucket_minio_bucket_creates():
    """Issue 17: everything stored is in MinIO; each service's /data is its own cache, so any can move host."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    app = {name: service for name, service in services.items()
           if "MASKLET_STORAGE_URL" in service.get("environment", {})}
    assert set(app) == {"web", "worker-gpu", "worker-cpu", "worker-train", "beat"}
    mounts = [volume.split(":")[0] for service in app.values() for volume in service["volumes"]]
    assert len(mounts) == len(set(mounts)) == len(app), "two services share a volume"
    urls = {service["environment"]["MASKLET_STORAGE_URL"] for service in app.values()}
    bucket = re.search(r"mc mb --ignore-existing masklet/([\w.-]+)", services["minio-bucket"]["entrypoint"]).group(1)
    assert urls == {f"s3://{bucket}/engine"}
    assert all(service["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
               for service in app.values())


def test_the_gpu_host_file_runs_only_gpu_workers_pointed_at_the_first_host():
    main = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    gpu = yaml.safe_load((REPO_ROOT / "docker-compose.gpu.yml").read_text())
    assert set(gpu["services"]) == {"worker-gpu"}
    env = gpu["services"]["worker-gpu"]["environment"]
    for name in ("DATABASE_URL", "REDIS_URL", "MASKLET_S3_ENDPOINT_URL"):
        assert "${MASKLET_MAIN_HOST:?" in env[name], name
    assert env["MASKLET_STORAGE_URL"] == main["services"]["web"]["environment"]["MASKLET_STORAGE_URL"]
    assert gpu["services"]["worker-gpu"]["command"] == main["services"]["worker-gpu"]["command"]
    ports = {service: [p.split(":")[-1] for p in main["services"][service]["ports"]]
             for service in ("postgres", "redis", "minio")}
    assert ports == {"postgres": ["5432"], "redis": ["6379"], "minio": ["9000"]}  # what the GPU host reaches


def test_non_postgres_database_url_is_refused_with_its_scheme(tmp_path):
    result = load_settings(tmp_path, DATABASE_URL="mysql://root@localhost/masklet")
    assert result.returncode != 0
    assert "DATABASE_URL must be a postgres:// URL, got mysql://" in result.stderr

"""Masklet settings: every knob comes from an environment variable with a documented default.

Two ways to run, one code base (see README.md):

- Embedded (default): no ``DATABASE_URL`` -> SQLite under ``var/``; no ``REDIS_URL`` -> Celery
  tasks run on a worker thread pool inside the server process and Channels uses its
  in-memory layer. Nothing to install.
- Services (teams): ``DATABASE_URL=postgres://...`` -> PostgreSQL through psycopg 3;
  ``REDIS_URL=redis://...`` -> Redis is the Celery broker/result store and the Channels layer,
  and separate ``celery worker`` processes consume the ``gpu``, ``cpu`` and ``train`` queues.

Environment variables:

=============================  ==========================================================
``MASKLET_DATA_DIR``           where the SQLite file, media and frames live (``var/``);
                               ``models/`` in it is the only folder checkpoints are
                               registered from by path (``loop.registry``)
``MASKLET_STORAGE_URL``        where originals, frames, dataset files and checkpoints are
                               stored: ``file:///folder`` (default: the data dir) or
                               ``s3://bucket/prefix`` (``engine.storage``)
``MASKLET_S3_ENDPOINT_URL``    the S3-compatible server (MinIO...); empty -> AWS; region and
                               credentials from ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``...
``MASKLET_CACHE_MB``           on-disk cache of stored objects on each machine,
                               ``$MASKLET_DATA_DIR/cache/`` (default 4096 MB, LRU)
``DATABASE_URL``               database; unset -> SQLite ``$MASKLET_DATA_DIR/masklet.sqlite3``
``REDIS_URL``                  broker + channel layer; unset -> embedded mode
``MASKLET_DEBUG``              ``1`` to turn DEBUG on (default off)
``MASKLET_SECRET_KEY``         the secret key; unset -> a random key kept in the data dir
``MASKLET_ALLOWED_HOSTS``      comma-separated host names (default ``127.0.0.1,localhost``)
``MASKLET_PRODUCTION``         ``1`` refuses to start with DEBUG on, no or a weak secret key
                               (under 50 characters) or ``*`` in the allowed hosts; turns on
                               secure cookies, HTTPS redirects and HSTS (README "Production")
``MASKLET_BEHIND_PROXY``       ``1``: a TLS proxy in front sets ``X-Forwarded-Proto`` (trusted
                               for "is this HTTPS") and appends the client to ``X-Forwarded-For``
                               (login throttling counts that address); default off
``MASKLET_TRUSTED_ORIGINS``    comma-separated origins (``https://masklet.example.org``) other
                               than the site's own that may POST and open sockets (CSRF)
``MASKLET_HSTS_SECONDS``       HSTS max-age in production (default 31536000; 0: no HSTS)
``MASKLET_LOGIN_FAILURES``     failed sign-ins per account, and per address, before sign-in is
                               blocked for them (default 10)
``MASKLET_LOGIN_COOLOFF_MIN``  how long that block lasts (default 15 minutes)
``MASKLET_MAX_UPLOAD_MB``      largest accepted video file (default 2048)
``MASKLET_MAX_DURATION_S``     longest accepted video (default 1800 s)
``MASKLET_MAX_PIXELS``         largest accepted frame, width x height (default 3840x2160)
``MASKLET_MAX_JSON_KB``        largest accepted JSON request body (default 1024 KiB)
``MASKLET_API_RATE_TOKEN``     HTTP API requests allowed per token (default ``1200/min``;
                               ``none``: no limit); over it: 429 with ``Retry-After``
``MASKLET_API_RATE_IP``        HTTP API requests allowed per client address (``2400/min``)
``MASKLET_WEBHOOK_BACKOFF_S``  seconds before a webhook delivery is tried again, doubling each try (10)
``MASKLET_WEBHOOK_TICK_S``     how often due webhook retries are looked for (default 5 s)
``MASKLET_WEBHOOK_ALLOW_PRIVATE`` ``1``: webhooks may call loopback and private-network addresses
                               (default: public addresses only)
``MASKLET_EMBEDDED_WORKERS``   worker threads in embedded mode (default 2)
``MASKLET_SEGMENTER``          model for projects without a production model version:
                               ``classical`` (default, OpenCV, no checkpoint) or ``sam2``
``MASKLET_SAM2_CONFIG``        SAM 2 config when ``MASKLET_SEGMENTER=sam2`` (``sam2.1_hiera_t``)
``MASKLET_SAM2_CHECKPOINT``    its checkpoint file; empty -> random weights (tests, demos)
``MASKLET_SAM2_IMAGE_SIZE``    its input side in pixels (default 1024 with an NVIDIA GPU, 512 on CPU)
``MASKLET_DEVICE``             ``cuda`` / ``cpu`` / ``mps``; empty -> the best available
``MASKLET_CHECKPOINT_MIRROR``  base URL of a mirror of Meta's SAM 2 checkpoints for ``fetch_model``
                               (same file names); empty -> Meta's own addresses
``MASKLET_WORKER_SESSIONS``    live annotation sessions one GPU worker keeps (default 4)
``MASKLET_SESSION_IDLE_S``     a worker evicts a session idle this long (default 600 s)
``MASKLET_LOCK_SECONDS``       a masklet stays locked to its editor this long after the
                               last sign of life from the editor's page (default 120 s)
``MASKLET_WORKER_HEARTBEAT_S`` seconds after a GPU worker's last heartbeat that its
                               sessions move to another worker (default 10 s)
=============================  ==========================================================
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("MASKLET_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = env_flag("MASKLET_PRODUCTION")
DEBUG = env_flag("MASKLET_DEBUG")
ALLOWED_HOSTS = env_list("MASKLET_ALLOWED_HOSTS", "127.0.0.1,localhost")


def check_secret_key(key: str) -> None:
    """Production refuses a key an attacker could guess: Django's ``check --deploy`` rule (at least 50
    characters, 5 of them different, not a generated ``django-insecure-`` key)."""
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            f"MASKLET_PRODUCTION is on but MASKLET_SECRET_KEY is weak ({len(key)} characters, {len(set(key))} "
            "different): use at least 50 random characters, e.g. $(openssl rand -hex 32)")


def _secret_key() -> str:
    """The configured key, or (outside production) a random one kept in the data dir."""
    configured = os.environ.get("MASKLET_SECRET_KEY", "")
    if configured:
        if PRODUCTION:
            check_secret_key(configured)
        return configured
    if PRODUCTION:
        raise ImproperlyConfigured("MASKLET_PRODUCTION is on but MASKLET_SECRET_KEY is not set")
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("MASKLET_PRODUCTION is on: refusing to start with MASKLET_DEBUG on")
    if not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("MASKLET_PRODUCTION is on: MASKLET_ALLOWED_HOSTS must name the hosts, not '*'")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the compose health check asks over plain HTTP inside the host
    SECURE_HSTS_SECONDS = int(os.environ.get("MASKLET_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0

# Behind a TLS proxy (README "Production"): trust its X-Forwarded-Proto; other origins allowed to post.
BEHIND_PROXY = env_flag("MASKLET_BEHIND_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
CSRF_TRUSTED_ORIGINS = env_list("MASKLET_TRUSTED_ORIGINS", "")
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"MASKLET_TRUSTED_ORIGINS holds origins like https://host[:port], not {_origin!r}")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "engine",
    "annotator",
    "loop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The text rule for every form and query string, JSON errors under /api/ (engine.input).
    "engine.input.InputMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into engine.security.lockout_response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
# The WebSocket transport takes frames up to twice the protocol's limit (2 MiB,
# ``engine.protocol.MAX_MESSAGE_BYTES``), so an oversize message is answered ``too_large``
# instead of cutting the connection. ``runserver`` reads these; the daphne command line gets them
# from ``python -m engine.serve``.
DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = DAPHNE_WEBSOCKET_MAX_FRAME_SIZE = 4 * 1024 * 1024
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# -- database ---------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got {DATABASE_URL.split(':', 1)[0]}://")
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "masklet.sqlite3",
            # Worker threads and the server share the file: wait for locks instead of failing.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # Tests use a file too (one per test process): Django's default in-memory test database
            # is shared-cache, where a worker thread's write that meets a read fails at once with
            # "table is locked" instead of waiting.
            "TEST": {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- embedded or services mode ------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
EMBEDDED = not REDIS_URL
EMBEDDED_WORKERS = int(os.environ.get("MASKLET_EMBEDDED_WORKERS", "2"))

# Propagation streams hundreds of messages to one socket: room for bursts before "channel full".
CHANNEL_CAPACITY = 1000

if EMBEDDED:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CHANNEL_CAPACITY}}
    }
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    # Worker heartbeats, session ownership and cancel flags live in the cache: in-process here.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py's asyncio default socket_timeout (5 s) equals channels_redis's BZPOPMIN
            # wait (5 s): under load the empty reply arrived after the timeout and the socket's
            # receive failed ("Timeout reading"). Reads get room; a dead connection still fails.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "capacity": CHANNEL_CAPACITY},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Shared by web and worker processes (heartbeats, session ownership, cancel flags).
    # Timeouts: a cache call during a Redis restart fails instead of waiting forever (the socket's
    # watchdog and heartbeats make these calls every second and must go on after the outage).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5}}}

# Queues: ``gpu`` (model work), ``cpu`` (ingest, export), ``train`` (fine-tuning runs).
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With acks_late, Redis hands a message that stays unacked longer than the visibility timeout to
# another worker (kombu's default: 1 h); a training run lasts longer than that. The timeout must
# exceed the longest run, and it also delays the redelivery of a killed worker's messages (runs
# are failed by loop.training's recovery anyway; live-session messages are re-sent by the
# consumer). MASKLET_BROKER_VISIBILITY_S, default 48 h.
BROKER_VISIBILITY_SECONDS = float(os.environ.get("MASKLET_BROKER_VISIBILITY_S", str(48 * 3600)))
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_SECONDS}
# Celery closes the database connection after every task unless told to reuse it: a new Postgres
# connection per live-session message cost ~5 ms of each click. Workers instead follow Django's own
# rules (CONN_MAX_AGE + health checks) through close_old_connections() around each task
# (engine.workers).
CELERY_DB_REUSE_MAX = 1_000_000

# -- models and live annotation sessions ----------------------------------------------------

SEGMENTER = os.environ.get("MASKLET_SEGMENTER", "classical")
if SEGMENTER not in ("classical", "sam2"):
    raise ImproperlyConfigured(f"MASKLET_SEGMENTER must be 'classical' or 'sam2', not {SEGMENTER!r}")
SAM2_CONFIG = os.environ.get("MASKLET_SAM2_CONFIG", "sam2.1_hiera_t")
SAM2_CHECKPOINT = os.environ.get("MASKLET_SAM2_CHECKPOINT", "")
DEVICE = os.environ.get("MASKLET_DEVICE", "")
#: SAM 2's input side where no MASKLET_SAM2_IMAGE_SIZE is set: 1024 (what it was trained at) on a GPU;
#: on CPU 512, measured 8x faster per frame than 1024 for tiny on 2 cores (bench/bench_sam2_cpu_size.py).
SAM2_CPU_IMAGE_SIZE = 512
_gpu_here = DEVICE.startswith("cuda") or (not DEVICE and any(Path("/proc/driver/nvidia/gpus").glob("*")))
SAM2_IMAGE_SIZE = int(os.environ.get("MASKLET_SAM2_IMAGE_SIZE") or (1024 if _gpu_here else SAM2_CPU_IMAGE_SIZE))
WORKER_SESSIONS = int(os.environ.get("MASKLET_WORKER_SESSIONS", "4"))
SESSION_IDLE_SECONDS = float(os.environ.get("MASKLET_SESSION_IDLE_S", "600"))
LOCK_SECONDS = float(os.environ.get("MASKLET_LOCK_SECONDS", "120"))
WORKER_HEARTBEAT_SECONDS = float(os.environ.get("MASKLET_WORKER_HEARTBEAT_S", "10"))

# -- model in the loop: retraining, evaluation, registry (loop.training, loop.tasks) --------
# Defaults of each project's LoopSettings (created on first use; edit them per project in the admin):
# MASKLET_LOOP_ENABLED (1), MASKLET_LOOP_MIN_NEW_MASKLETS (20 newly approved train masklets),
# MASKLET_LOOP_MIN_HOURS (24 h since the last run), MASKLET_LOOP_AUTO_PROMOTE (1),
# MASKLET_LOOP_PROMOTE_MARGIN (0.01 J&F), MASKLET_LOOP_STEPS (200), MASKLET_LOOP_IMAGE_SIZE
# (= MASKLET_SAM2_IMAGE_SIZE), MASKLET_LOOP_LR (5e-6, Meta's fine-tuning rate), MASKLET_LOOP_CLIP_LENGTH (8).
# Engine-wide: MASKLET_LOOP_TICK_S (300, how often beat, or the embedded server, checks; 0: never),
# MASKLET_LOOP_RUN_STALE_S (600, a running
# run without a heartbeat this long is failed), MASKLET_LOOP_HEARTBEAT_S (30), MASKLET_LOOP_PROGRESS_S
# (1, progress writes), MASKLET_LOOP_DDP (1: torchrun + DDP when >1 GPU), MASKLET_LOOP_EVAL_CLICKS (3 per
# prompted frame), MASKLET_LOOP_EVAL_FRAMES (3 prompted frames), MASKLET_LOOP_EVAL_BUDGET (20 clicks to
# reach J&F 0.9), MASKLET_LOOP_EVAL_MAX_FRAMES (0 = every annotated frame of a val video).
LOOP_ENABLED = env_flag("MASKLET_LOOP_ENABLED", True)
LOOP_MIN_NEW_MASKLETS = int(os.environ.get("MASKLET_LOOP_MIN_NEW_MASKLETS", "20"))
LOOP_MIN_HOURS = float(os.environ.get("MASKLET_LOOP_MIN_HOURS", "24"))
LOOP_AUTO_PROMOTE = env_flag("MASKLET_LOOP_AUTO_PROMOTE", True)
LOOP_PROMOTE_MARGIN = float(os.environ.get("MASKLET_LOOP_PROMOTE_MARGIN", "0.01"))
LOOP_TRAIN_STEPS = int(os.environ.get("MASKLET_LOOP_STEPS", "200"))
LOOP_IMAGE_SIZE = int(os.environ.get("MASKLET_LOOP_IMAGE_SIZE", str(SAM2_IMAGE_SIZE)))
LOOP_LR = float(os.environ.get("MASKLET_LOOP_LR", "5e-6"))
LOOP_CLIP_LENGTH = int(os.environ.get("MASKLET_LOOP_CLIP_LENGTH", "8"))
LOOP_TICK_SECONDS = float(os.environ.get("MASKLET_LOOP_TICK_S", "300"))
LOOP_RUN_STALE_S = float(os.environ.get("MASKLET_LOOP_RUN_STALE_S", "600"))
LOOP_HEARTBEAT_S = float(os.environ.get("MASKLET_LOOP_HEARTBEAT_S", "30"))
# The periodic job also retrains a project's quality verifier (loop.verifier) once people made this
# many edits of masks plus approvals since its last training.
VERIFIER_MIN_NEW_EVIDENCE = int(os.environ.get("MASKLET_VERIFIER_MIN_NEW_EVIDENCE", "50"))
LOOP_PROGRESS_EVERY_S = float(os.environ.get("MASKLET_LOOP_PROGRESS_S", "1"))
LOOP_DDP = env_flag("MASKLET_LOOP_DDP", True)
LOOP_EVAL_CLICKS = int(os.environ.get("MASKLET_LOOP_EVAL_CLICKS", "3"))
LOOP_EVAL_PROMPTED_FRAMES = int(os.environ.get("MASKLET_LOOP_EVAL_FRAMES", "3"))
LOOP_EVAL_CLICK_BUDGET = int(os.environ.get("MASKLET_LOOP_EVAL_BUDGET", "20"))
LOOP_EVAL_MAX_FRAMES = int(os.environ.get("MASKLET_LOOP_EVAL_MAX_FRAMES", "0"))
# Heavy jobs (engine.jobs): MASKLET_JOB_MEMORY_MB is the memory budget of one training, auto-masklet
# or checkpoint-loading job (0: half of the machine's memory); a job estimated above it is refused,
# a job that grows above it is stopped. Without CUDA a training run is capped at
# MASKLET_LOOP_CPU_IMAGE_SIZE px and MASKLET_LOOP_CPU_CLIP_LENGTH frames per window.
JOB_MEMORY_MB = int(os.environ.get("MASKLET_JOB_MEMORY_MB", "0"))
#: Whether training runs on a CUDA GPU (the same test as SAM2_IMAGE_SIZE's default; torch is not imported here).
TRAIN_ON_GPU = _gpu_here
LOOP_CPU_IMAGE_SIZE = int(os.environ.get("MASKLET_LOOP_CPU_IMAGE_SIZE", "256"))
LOOP_CPU_CLIP_LENGTH = int(os.environ.get("MASKLET_LOOP_CPU_CLIP_LENGTH", "4"))
MODELS_ROOT = DATA_DIR / "models"
#: A mirror of Meta's checkpoint files (same file names, e.g. an internal server for machines without
#: internet); empty: Meta's own addresses (loop.fetch).
CHECKPOINT_MIRROR = os.environ.get("MASKLET_CHECKPOINT_MIRROR", "")
# What `celery -A config beat` sends (the embedded server sends the same itself, config.startup.start_embedded_beat):
# the model loop's tick, and auto masklets for newly ready videos of opted-in projects (same period).
# Webhooks (annotator.webhooks): the first retry after this many seconds, doubling each time; due retries
# are looked for every WEBHOOK_TICK_S.
WEBHOOK_BACKOFF_S = float(os.environ.get("MASKLET_WEBHOOK_BACKOFF_S", "10"))
WEBHOOK_TICK_S = float(os.environ.get("MASKLET_WEBHOOK_TICK_S", "5"))
WEBHOOK_ALLOW_PRIVATE = os.environ.get("MASKLET_WEBHOOK_ALLOW_PRIVATE") == "1"

CELERY_BEAT_SCHEDULE = {
    "masklet-loop-tick": {"task": "loop.tick", "schedule": LOOP_TICK_SECONDS, "options": {"queue": "cpu"}},
    "masklet-auto-masklets-tick": {"task": "annotator.auto_masklets_tick", "schedule": LOOP_TICK_SECONDS,
                                   "options": {"queue": "cpu"}},
    "masklet-dataset-jobs-tick": {"task": "annotator.recover_dataset_jobs", "schedule": LOOP_TICK_SECONDS,
                                  "options": {"queue": "cpu"}},
    "masklet-ingests-tick": {"task": "annotator.recover_ingests", "schedule": LOOP_TICK_SECONDS,
                             "options": {"queue": "cpu"}},
    "masklet-webhooks-tick": {"task": "annotator.webhooks_tick", "schedule": WEBHOOK_TICK_S,
                              "options": {"queue": "cpu"}},
}

# -- auth -------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["engine.security.ThrottledBackend", "django.contrib.auth.backends.ModelBackend"]
# Login throttling (django-axes, attempts in the database): after MASKLET_LOGIN_FAILURES failures for
# one username, or from one address (engine.security.client_ip), sign-in is refused for them (429)
# for MASKLET_LOGIN_COOLOFF_MIN minutes; a success resets the count. `manage.py axes_reset` lifts it.
AXES_FAILURE_LIMIT = int(os.environ.get("MASKLET_LOGIN_FAILURES", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("MASKLET_LOGIN_COOLOFF_MIN", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "engine.security.client_ip"
AXES_LOCKOUT_CALLABLE = "engine.security.lockout_response"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"
# -- the HTTP API (Django REST framework, annotator.api.framework) -------------------------


def _rate(name: str, default: str) -> str | None:
    value = os.environ.get(name, default).strip()
    return None if value.lower() in ("", "none", "0") else value


API_RATES = {"token": _rate("MASKLET_API_RATE_TOKEN", "1200/min"), "ip": _rate("MASKLET_API_RATE_IP", "2400/min")}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["annotator.api.policies.BearerToken", "annotator.api.policies.Session"],
    # Each view declares its rule (annotator.permissions) and checks it itself, as the pages do.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_THROTTLE_CLASSES": ["annotator.api.policies.TokenThrottle", "annotator.api.policies.AddressThrottle"],
    "DEFAULT_PARSER_CLASSES": ["annotator.api.policies.CheckedJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "annotator.api.framework.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "annotator.api.policies.Pagination",
    "DEFAULT_SCHEMA_CLASS": "annotator.api.framework.Schema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Masklet API",
    "DESCRIPTION": "Projects, videos, masklets, reviews, datasets and models of a Masklet data engine. "
                   "Authenticate with `Authorization: Bearer <token>` (make one on /account/). Every error is "
                   '`{"error": {"code", "message", "field"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN, and no validator badge calling out.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None, "persistAuthorization": False},
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"MaskletStatus": "annotator.models.Masklet.Status"},
}

# Content-Security-Policy (django-csp): scripts, styles, workers and sockets only from this site;
# an inline script needs the request's nonce (<script nonce="{{ request.csp_nonce }}">).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF], "script-src": [SELF, NONCE], "style-src": [SELF], "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF], "worker-src": [SELF], "font-src": [SELF], "object-src": [NONE], "base-uri": [SELF],
        "form-action": [SELF], "frame-ancestors": [NONE],
    },
}

# -- files ------------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "dist"] if (BASE_DIR / "frontend" / "dist").is_dir() else []
MEDIA_URL = "media/"

# -- storage (engine.storage): originals, frames, dataset files and checkpoints ------------
# MASKLET_STORAGE_URL: file:///folder (default: the data dir, i.e. media/ and frames/ in it) or
# s3://bucket/prefix on an S3-compatible server (MASKLET_S3_ENDPOINT_URL for MinIO and the like;
# region and credentials from the usual AWS_* variables). Workers read stored objects through a
# bounded on-disk cache, MASKLET_DATA_DIR/cache/ (MASKLET_CACHE_MB, least recently used out).


def storage_settings(url: str, endpoint: str | None, data_dir: Path) -> dict:
    """The settings ``MASKLET_STORAGE_URL`` implies (tests point a process at another bucket with it)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        root = Path(unquote(parts.path)).resolve()
        return {"STORAGE_URL": url, "STORAGE_ROOT": root, "S3_BUCKET": "", "S3_PREFIX": "", "S3_ENDPOINT_URL": endpoint,
                "MEDIA_ROOT": root / "media", "FRAMES_ROOT": root / "frames",
                "STORAGES": {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                             "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}}
    if parts.scheme != "s3" or not parts.netloc:
        raise ImproperlyConfigured(f"MASKLET_STORAGE_URL={url!r}: use file:///folder or s3://bucket/prefix")
    import botocore.config  # only where the storage is S3

    bucket, prefix = parts.netloc, parts.path.strip("/")
    # Short connect timeout and few retries: a storage server that is down fails a job in seconds, with
    # the reason, instead of a worker hanging for minutes.
    client_config = botocore.config.Config(
        connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"})
    media = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": bucket, "location": "/".join(filter(None, [prefix, "media"])), "endpoint_url": endpoint,
        "file_overwrite": False, "client_config": client_config,
        "region_name": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None}}
    return {"STORAGE_URL": url, "STORAGE_ROOT": None, "S3_BUCKET": bucket, "S3_PREFIX": prefix,
            "S3_ENDPOINT_URL": endpoint, "MEDIA_ROOT": data_dir / "media", "FRAMES_ROOT": data_dir / "frames",
            "STORAGES": {"default": media,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}}


# STORAGE_URL, STORAGE_ROOT (a file:// storage's folder, else None), S3_BUCKET, S3_PREFIX, S3_ENDPOINT_URL,
# MEDIA_ROOT, FRAMES_ROOT, STORAGES
globals().update(storage_settings(os.environ.get("MASKLET_STORAGE_URL", "").strip() or DATA_DIR.as_uri(),
                                  os.environ.get("MASKLET_S3_ENDPOINT_URL", "").strip() or None, DATA_DIR))
CACHE_ROOT = DATA_DIR / "cache"
CACHE_BYTES = int(os.environ.get("MASKLET_CACHE_MB", "4096")) * 1024 * 1024

MAX_UPLOAD_BYTES = int(os.environ.get("MASKLET_MAX_UPLOAD_MB", "2048")) * 1024 * 1024
MAX_VIDEO_DURATION_S = float(os.environ.get("MASKLET_MAX_DURATION_S", "1800"))
MAX_VIDEO_PIXELS = int(os.environ.get("MASKLET_MAX_PIXELS", str(3840 * 2160)))
# Uploads larger than this stream to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
# JSON request bodies (engine.input.json_body): at most this many bytes, nested at most this deep.
MAX_JSON_BYTES = int(os.environ.get("MASKLET_MAX_JSON_KB", "1024")) * 1024
MAX_JSON_DEPTH = 32

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("MASKLET_LOG_LEVEL", "INFO")},
}

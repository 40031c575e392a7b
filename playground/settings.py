"""Settings, all read from the environment (the README's configuration table lists each one).

The embedded default needs no configuration: SQLite in PLAYGROUND_DATA_DIR, the
in-memory channel layer, the in-process simulator, and secrets generated once into
a git-ignored file. With DEBUG off, secrets must be given: startup fails otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
log = logging.getLogger("playground.settings")


def envbool(name: str, default: bool) -> bool:
    """Strict: only True/False (any case) or unset; "yes" is an error, not False."""
    value = os.getenv(name, "")
    if value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ImproperlyConfigured(f"Unexpected value {name}={value!r}, use 'True' or 'False'")


def _envnumber(name: str, default, cast, kind: str):
    value = os.getenv(name, "")
    if value == "":
        return default
    try:
        return cast(value)
    except ValueError:
        raise ImproperlyConfigured(f"Unexpected value {name}={value!r}, expected {kind}") from None


def envint(name: str, default: int) -> int:
    return _envnumber(name, default, int, "an integer")


def envfloat(name: str, default: float) -> float:
    return _envnumber(name, default, float, "a number")


def envlist(name: str, default: list[str]) -> list[str]:
    value = os.getenv(name, "")
    if value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envsecret(name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker secrets)."""
    path = os.getenv(f"{name}_FILE", "")
    if path:
        return Path(path).read_text().strip()
    return os.getenv(name, "")


# --- Core -------------------------------------------------------------------

DEBUG = envbool("DEBUG", True)
DATA_DIR = Path(os.getenv("PLAYGROUND_DATA_DIR", "") or BASE_DIR / "var")
LOCAL_SECRETS_FILE = DATA_DIR / "secrets.json"


def _local_secrets() -> dict[str, str]:
    """Embedded default only: generate missing secrets once into a git-ignored file."""
    try:
        stored = json.loads(LOCAL_SECRETS_FILE.read_text())
    except FileNotFoundError:
        stored = {}
    if not stored.get("SECRET_KEY") or not stored.get("FIELD_ENCRYPTION_KEYS"):
        stored = {
            "SECRET_KEY": stored.get("SECRET_KEY") or secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEYS": stored.get("FIELD_ENCRYPTION_KEYS") or Fernet.generate_key().decode(),
        }
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCAL_SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f)
        log.warning(
            "Generated SECRET_KEY and FIELD_ENCRYPTION_KEYS into %s (embedded default). "
            "Set them in the environment for production.", LOCAL_SECRETS_FILE,
        )
    return stored


SECRET_KEY = envsecret("SECRET_KEY")
_encryption_keys = envsecret("FIELD_ENCRYPTION_KEYS")
if not SECRET_KEY or not _encryption_keys:
    if not DEBUG:
        missing = [n for n, v in (("SECRET_KEY", SECRET_KEY), ("FIELD_ENCRYPTION_KEYS", _encryption_keys)) if not v]
        raise ImproperlyConfigured(
            f"{' and '.join(missing)} must be set when DEBUG is off. Generate an encryption key with: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
    _generated = _local_secrets()
    SECRET_KEY = SECRET_KEY or _generated["SECRET_KEY"]
    _encryption_keys = _encryption_keys or _generated["FIELD_ENCRYPTION_KEYS"]

# Fernet keys for API keys at rest, newest first; independent of SECRET_KEY.
FIELD_ENCRYPTION_KEYS = [k.strip() for k in _encryption_keys.split(",") if k.strip()]
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes)"
        ) from None

# The loopback names stay allowed so the container health check (Host: 127.0.0.1) passes.
ALLOWED_HOSTS = [*envlist("ALLOWED_HOSTS", []), "127.0.0.1", "localhost", "[::1]"]
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # before staticfiles: its runserver is the ASGI one (check daphne.E001)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",
    "channels",
    "django_htmx",
    "template_partials",
    "django_tasks",  # batch runs in the background (chat.batch): the tasks API and its database backend
    "django_tasks_db",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "playground.security.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "playground.errors.BrandedErrorPagesMiddleware",  # 404/500 pages are the branded ones even with DEBUG
]

ROOT_URLCONF = "playground.urls"
ASGI_APPLICATION = "playground.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

# --- Database ---------------------------------------------------------------

DATABASE_URL = os.getenv("DATABASE_URL", "") or f"sqlite:///{DATA_DIR / 'playground.sqlite3'}"
# Persistent connections: the socket consumers' database thread reuses one instead of reconnecting per frame.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("CONN_MAX_AGE", 600), conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # A file, not :memory:, so Daphne live-server tests (another process) see it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
    # WAL: readers never wait for the writer, and commits are cheap (synchronous=NORMAL is safe with WAL).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE", "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer ----------------------------------------------------------

REDIS_URL = os.getenv("REDIS_URL", "")
REDIS_MAX_CONNECTIONS = envint("REDIS_MAX_CONNECTIONS", 50)
if REDIS_MAX_CONNECTIONS < 2:
    raise ImproperlyConfigured(f"Unexpected value REDIS_MAX_CONNECTIONS={REDIS_MAX_CONNECTIONS!r}, expected 2 or more")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's layer with a pool that waits for a free connection instead of failing
            # (redis-py's default pool raised "Too many connections" at 100 streams), and group
            # membership counts, so a run's fragments cross Redis only when someone else watches.
            "BACKEND": "chat.layers.RedisChannelLayer",
            # socket_timeout None, as before redis-py 8 (which made it 5 s). With a timeout set,
            # channels-redis's blocking 5 s BZPOPMIN fails every idle socket's receive
            # (django/channels_redis#422), and redis-py sends through asyncio.wait_for, which on
            # Python 3.11 can swallow a task's cancel: Stop would not stop a run (tests/chat/test_channel_layer.py).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 1000,
                "group_expiry": 3600,
                # Per server process. Each command holds a connection for one round trip (the one
                # blocking receive per process excepted); more commands at once wait their turn.
                "max_connections": REDIS_MAX_CONNECTIONS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Completion runs ------------------------------------------------------------

# Seconds a run goes on after its owner's last socket closed mid-stream (a reload reattaches to it);
# then it is cancelled, the partial answer saved. 0: cancel at once.
RUN_GRACE_SECONDS = envfloat("RUN_GRACE_SECONDS", 20.0)
if not RUN_GRACE_SECONDS >= 0:  # (NaN too)
    raise ImproperlyConfigured(f"Unexpected value RUN_GRACE_SECONDS={RUN_GRACE_SECONDS!r}, expected 0 or more seconds")

# --- Batch runs (chat.batch) ------------------------------------------------------

# Background work through django-tasks; its database backend is the queue (SQLite by default,
# PostgreSQL for N workers: `manage.py batch_worker`, started by `make run`'s launcher).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Rows of one batch run in flight per endpoint at once (the run form's default; 1 to 64).
BATCH_CONCURRENCY = envint("BATCH_CONCURRENCY", 4)
# Tasks each run is split into: one per worker process you run, so a run spreads over all of them.
BATCH_TASKS_PER_RUN = envint("BATCH_TASKS_PER_RUN", 1)
# Whether the launcher (python -m playground.serve, i.e. `make run`) starts a batch worker beside Daphne.
BATCH_WORKER = envbool("BATCH_WORKER", True)
if not 1 <= BATCH_CONCURRENCY <= 64 or not 1 <= BATCH_TASKS_PER_RUN <= 64:
    raise ImproperlyConfigured("BATCH_CONCURRENCY and BATCH_TASKS_PER_RUN must be between 1 and 64")

# --- Auth -------------------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Security (production values whenever DEBUG is off) ------------------------

SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP
if envbool("USE_X_FORWARDED_PROTO", False):  # only behind a proxy that sets it
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024  # image parts arrive as data: URLs

# --- Static files -----------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG

# --- The in-process simulator ----------------------------------------------------

SIMULATOR_ENABLED = envbool("SIMULATOR_ENABLED", DEBUG)  # a demo: not mounted in production unless asked
# Image URLs on private network addresses (10/8, 172.16/12, 192.168/16, fc00::/7) for deployments
# whose images are internal; loopback, link-local (metadata) and localhost stay refused.
IMAGE_URLS_ALLOW_PRIVATE = envbool("IMAGE_URLS_ALLOW_PRIVATE", False)
# Derived from SECRET_KEY unless given, so every worker agrees without more config.
SIMULATOR_API_KEY = envsecret("SIMULATOR_API_KEY") or hmac.new(
    SECRET_KEY.encode(), b"hexgrid-simulator-api-key", hashlib.sha256
).hexdigest()
SIMULATOR_TOKEN_DELAY = envfloat("SIMULATOR_TOKEN_DELAY", 0.02)
SIMULATOR_BASE_URL = os.getenv("SIMULATOR_BASE_URL", "") or "http://127.0.0.1:8000/simulator/v1"

# --- Misc -------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "") or "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "") or "INFO"},
    "loggers": {"httpx": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}

"""Minimal Django settings: one PostgreSQL database reached through libpq's environment.

PGHOST (the TAP node's socket directory), PGPORT and PGDATABASE come from the test; psycopg2 passes
them on to libpq, as no HOST or PORT is set here.  PK_DJANGO_BROKEN=1 adds the "broken" app, whose
migration requests an index and then fails.
"""
import os

SECRET_KEY = "perfkit-test-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["shop"]
if os.environ.get("PK_DJANGO_BROKEN") == "1":
    INSTALLED_APPS.append("broken")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["PGDATABASE"],
    }
}

import os

from django.core.wsgi import get_wsgi_application

from provider import devenv

from .env import env_bool
from .timing import ServerTiming

devenv.load()  # var/dev.env, only when nothing else is configured (provider/devenv.py)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider.settings")
application = get_wsgi_application()
if env_bool("DJANGO_SERVER_TIMING", True):  # provider/timing.py: what the header covers
    application = ServerTiming(application)

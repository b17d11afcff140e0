import os

from django.core.wsgi import get_wsgi_application

from .env import env_bool
from .timing import ServerTiming

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider.settings")
application = get_wsgi_application()
if env_bool("DJANGO_SERVER_TIMING", True):  # provider/timing.py: what the header covers
    application = ServerTiming(application)

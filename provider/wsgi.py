import os

from django.core.wsgi import get_wsgi_application

from provider import devenv

devenv.load()  # var/dev.env, only when nothing else is configured (provider/devenv.py)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider.settings")
application = get_wsgi_application()

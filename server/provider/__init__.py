"""The provider's Django project: settings from the environment, URLs, WSGI."""

"""A sample API protected by tokenversion, and the scripts that run it beside Keycloak and the provider.

It is what a team's microservice looks like after ``pip install django-tokenversion``: one DRF view, the
``TokenVersionAuthentication`` class, and a revocation store. The end-to-end tests and the live demo run it as
a real process.
"""

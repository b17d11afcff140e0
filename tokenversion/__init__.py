"""tokenversion: revocable Keycloak access tokens, validated locally by every service.

The package has three layers:

- ``tokenversion.core``: the token and revocation rules, with no Django import, so the rules can be read,
  tested and reused on their own;
- ``tokenversion`` itself (settings, checks, stores, the DRF authentication class): what a service installs;
- ``tokenversion_server``: the provider's side (models, revocation services, endpoints, admin, commands).
"""

__version__ = "0.1.0"

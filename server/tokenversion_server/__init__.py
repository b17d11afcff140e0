"""The provider's side of tokenversion: revocation state, the services that change it, and its endpoints.

It ships in the provider's distribution (``server/pyproject.toml``), never in the wheel a service installs:
services that only validate tokens need ``"tokenversion"`` alone. Install it (``"tokenversion_server"``) in
the provider, or in a service that reads the provider's database directly (``store.DatabaseStore``).
"""

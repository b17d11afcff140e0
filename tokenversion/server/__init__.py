"""The provider's side of tokenversion: revocation state, the services that change it, and its endpoints.

Install it (``"tokenversion.server"``) only in the provider, or in a service that reads the provider's
database directly. Services that only validate tokens need ``"tokenversion"`` alone.
"""

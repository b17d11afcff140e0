"""The rules, free of Django: token validation, revocation checks, and the store interface."""

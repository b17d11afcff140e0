"""Signals sent after a revocation commits, so stores and feeds can react without the services knowing them."""

from django.dispatch import Signal

# Sent with ``record`` (a ``tokenversion_server.services.Revocation``) after the transaction commits.
revocation_committed = Signal()

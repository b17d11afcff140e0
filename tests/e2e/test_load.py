"""A short load run with revocations interleaved (CI variant of ``python -m sample_service.load --duration 60``)."""

from __future__ import annotations

from sample_service.load import run_load

from .conftest import report


def test_under_load_no_5xx_and_no_revoked_token_accepted_after_the_bound(stack):
    result = run_load(stack, duration=10.0, users=10, threads=4, revoke_every=0.5, bound=1.0)
    for line in result.lines():
        report(f"load (10 s CI variant): {line}")
    assert result.errors == []
    assert result.server_errors() == 0
    assert result.revocations >= 5  # a logout and a new login take about 0.7 s under this load
    assert result.revoked_requests_after_bound > 100  # the check below had something to check
    assert result.late_acceptances == []
    assert result.statuses.get(200, 0) > 100

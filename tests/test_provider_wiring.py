"""How the provider's parts are wired: signal receivers connected by the app, not by whoever imports a module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_revocation_committed_receiver_is_connected_by_the_app_config():
    """After ``django.setup()`` alone (no URLconf, no view imported) the three receivers are connected, once each."""
    code = (
        "import django, os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')\n"
        "django.setup()\n"
        "import sys\n"
        "from tokenversion_server.signals import revocation_committed\n"
        "uids = sorted(entry[0][0] for entry in revocation_committed.receivers)\n"
        "print(uids)\n"
        "print('tokenversion_server.urls' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    uids, urls_loaded = out.splitlines()
    assert uids == str(["tokenversion_server.fanout.poke", "tokenversion_server.feed.poke",
                        "tokenversion_server.publish.fast_path"])
    assert urls_loaded == "False"

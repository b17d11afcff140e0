#!/usr/bin/env bash
# The README's first command: install the provider and start it on SQLite, on http://127.0.0.1:8000/.
# Prints the admin login on first run (also kept in var/admin-password).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv redis
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
mkdir -p var
"$PY" manage.py migrate --noinput -v 0
if [ ! -f var/admin-password ]; then
  "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' > var/admin-password
  chmod 600 var/admin-password
  DJANGO_SUPERUSER_PASSWORD="$(cat var/admin-password)" \
    "$PY" manage.py createsuperuser --noinput --username admin --email admin@localhost >/dev/null
fi
echo "tokenversion provider: http://127.0.0.1:${PORT:-8000}/admin/  login: admin / $(cat var/admin-password)"
exec "$PY" manage.py runserver "127.0.0.1:${PORT:-8000}"

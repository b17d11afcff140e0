#!/usr/bin/env bash
# The README's first command: install the provider and start it on SQLite, on http://127.0.0.1:${PORT:-8000}/.
# The first run writes var/dev.env (mode 0600: random secrets, DJANGO_DEBUG=1, SQLite in var/), which
# `python3 manage.py ...` then reads in this directory when nothing else is configured (provider/devenv.py).
# Prints the admin login (kept in var/admin-password), the development mapper secret and a claims request.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv redis
PORT="${PORT:-8000}"
mkdir -p var
"$PY" -m provider.devenv write
"$PY" manage.py migrate --noinput -v 0
if [ ! -f var/admin-password ]; then
  "$PY" -c 'import secrets; print(secrets.token_urlsafe(12))' > var/admin-password
  chmod 600 var/admin-password
  DJANGO_SUPERUSER_PASSWORD="$(cat var/admin-password)" \
    "$PY" manage.py createsuperuser --noinput --username admin --email admin@localhost >/dev/null
fi
MAPPER_SECRET="$("$PY" -m provider.devenv get TOKENVERSION_MAPPER_SECRETS)"
cat <<INFO
tokenversion provider: http://127.0.0.1:$PORT/admin/  login: admin / $(cat var/admin-password)
Development environment: var/dev.env (read by python3 manage.py in $ROOT; environment variables win)
Mapper secret: $MAPPER_SECRET
Try the claims endpoint (Keycloak's call at token issue; creates the user alice), from another shell:
  curl -s -H 'Content-Type: application/json' -H 'X-TokenVersion-Secret: $MAPPER_SECRET' -d '{"sub": "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b", "username": "alice"}' http://127.0.0.1:$PORT/tokenversion/claims
then revoke her and ask again (token_version goes up):
  python3 manage.py revoke alice --reason compromise
INFO
exec "$PY" manage.py runserver "127.0.0.1:$PORT"

#!/usr/bin/env bash
# Prints the path of a Python 3.12+ interpreter, or explains on stderr that there is none.
set -euo pipefail
for candidate in python3.13 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1; then
    path=$(command -v "$candidate")
    if "$path" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      "$path" -c 'import sys; print(sys.executable)'
      exit 0
    fi
  fi
done
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])' | sort -rV); do
    path="$(pyenv root)/versions/$version/bin/python3"
    if [ -x "$path" ]; then echo "$path"; exit 0; fi
  done
fi
echo "redline needs Python 3.12 or newer (Django 6); install python3.12 or python3.13 (e.g. 'apt-get install python3.12' or 'pyenv install 3.12')" >&2
exit 1

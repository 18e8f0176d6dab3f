#!/usr/bin/env bash
# Installs the Debian packages partyd needs, skipping those already present.
#   scripts/deps.sh          what building and running partyd needs (node and
#                            npm build the browser demo)
#   scripts/deps.sh --test   also what `make test` and `make test-valgrind` need
#                            (cmocka, clang, clang-format, python3 for the source checks,
#                            clang-tools for scan-build, valgrind, chromium for the browser
#                            test, openssl for the TLS test's certificate)
# Works as root or through sudo; never prompts (CI has no standard input).
set -euo pipefail

packages=(build-essential cmake pkg-config libuv1-dev libsqlite3-dev libssl-dev libcjson-dev libpq-dev)
# libcurl (OpenSSL flavour): outbound HTTP(S) from rooms (src/transport/http_client.c)
packages+=(libcurl4-openssl-dev)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "${1:-}" = "--test" ]; then
  packages+=(libcmocka-dev clang libclang-rt-dev clang-format clang-tools python3 valgrind chromium
             openssl postgresql haproxy)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo -n)
else
  echo "deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The cluster tests run their own servers: installing must leave none running
# (no main PostgreSQL cluster; no service started while policy-rc.d says no).
if [[ " ${missing[*]} " =~ " postgresql "|" haproxy " ]]; then
  "${sudo[@]}" sh -c 'f=/etc/postgresql-common/createcluster.conf; mkdir -p "${f%/*}"
    grep -qx "create_main_cluster = false" "$f" 2>/dev/null || echo "create_main_cluster = false" >>"$f"'
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    "${sudo[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

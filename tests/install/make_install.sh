#!/usr/bin/env bash
# make install into a DESTDIR under a temporary directory, then, with
# PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR pointed at it (what
# `pkg-config --cflags --libs libparty` gives, nothing else):
#   - examples/greeter builds as a party and the installed partyd serves it;
#   - cmake --install --prefix elsewhere writes that prefix into the .pc;
#   - a program that embeds libparty and tests a party with party_test.h
#     builds, links against the installed libparty.so and runs.
#   usage: make_install.sh SOURCE_DIR BUILD_DIR (the Release build make
#   install makes; kept between runs so a second run is incremental)
set -euo pipefail
src=$1
build=$2
prefix=/usr/local
tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-install-XXXXXX")
partyd_pid=
cleanup() {
  if [ -n "$partyd_pid" ]; then kill -KILL "$partyd_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

stage=$tmp/stage
make -C "$src" install DESTDIR="$stage" PREFIX="$prefix" INSTALL_DIR="$build" JOBS=2 \
  CMAKE_FLAGS= >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make install failed"; }
for f in bin/partyd lib/libparty.so include/party.h include/party_test.h lib/pkgconfig/libparty.pc; do
  [ -e "$stage$prefix/$f" ] || fail "make install did not install $prefix/$f"
done
echo "ok: make install DESTDIR=$stage PREFIX=$prefix"

# cmake --install --prefix on its own (the prefix chosen after configuring)
# writes that prefix into libparty.pc too.
DESTDIR=$tmp/other cmake --install "$build" --prefix /opt/party >"$tmp/other.log" 2>&1 ||
  { cat "$tmp/other.log"; fail "cmake --install --prefix /opt/party failed"; }
grep -qx "prefix=/opt/party" "$tmp/other/opt/party/lib/pkgconfig/libparty.pc" ||
  fail "cmake --install --prefix /opt/party wrote: $(cat "$tmp/other/opt/party/lib/pkgconfig/libparty.pc")"
echo "ok: cmake --install --prefix /opt/party writes that prefix into libparty.pc"

export PKG_CONFIG_PATH=$stage$prefix/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
grep -qx "prefix=$prefix" "$PKG_CONFIG_PATH/libparty.pc" ||
  fail "libparty.pc does not say prefix=$prefix: $(cat "$PKG_CONFIG_PATH/libparty.pc")"
cflags=$(echo $(pkg-config --cflags libparty)) # trims the trailing space
libs=$(echo $(pkg-config --libs libparty))
[ "$cflags" = "-I$stage$prefix/include" ] || fail "pkg-config --cflags libparty: $cflags"
echo "ok: pkg-config --cflags --libs libparty: $cflags $libs"

# The greeter party, against the installed header only.
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror -shared -fPIC $cflags -o "$tmp/greeter.so" "$src/examples/greeter/greeter.c"
echo "ok: examples/greeter built with pkg-config --cflags libparty"

# The installed partyd loads it; wait for its "listening on" line.
mkdir "$tmp/data"
exec {log}< <("$stage$prefix/bin/partyd" --port 0 --data "$tmp/data" \
  --party "greeter=$tmp/greeter.so" 2>&1 & echo "pid $!")
port=
while [ -z "$port" ] || [ -z "$partyd_pid" ]; do
  IFS= read -r -t 30 -u "$log" line || break
  if [[ $line =~ ^pid\ ([0-9]+)$ ]]; then partyd_pid=${BASH_REMATCH[1]}; fi
  if [[ $line =~ listening\ on\ http://127\.0\.0\.1:([0-9]+) ]]; then port=${BASH_REMATCH[1]}; fi
done
[ -n "$port" ] || fail "the installed partyd did not say where it listens"
body=$(curl -sS --fail-with-body "http://127.0.0.1:$port/parties/greeter/lobby")
[ "$body" = '{"greeted":0}' ] || fail "greeter answered $body"
kill -TERM "$partyd_pid"
wait "$partyd_pid" 2>/dev/null || true
partyd_pid=
echo "ok: the installed partyd serves the greeter: $body"

# An embedding program: party.h + party_test.h, linked with -lparty.
cat >"$tmp/embed.c" <<'C'
#include <party.h>
#include <party_test.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void echo(party_room *room, party_conn *conn, const void *data, size_t len, int binary) {
    (void)room;
    party_conn_send(conn, data, len, binary);
}

static const party_def echo_def = {.name = "echo", .on_message = echo};

int main(void) {
    party_test *t = party_test_new();
    party_test_conn *c;
    char *text = NULL;
    int status = 0, ok;

    if (t == NULL || party_test_add(t, &echo_def) != 0)
        return 1;
    c = party_test_connect(t, "/parties/echo/room", &status);
    ok = c != NULL && status == 101 && party_test_send_text(c, "hi") == 0 &&
         party_test_recv_text(c, &text) == 0 && strcmp(text, "hi") == 0;
    printf("libparty %s: %s\n", PARTY_VERSION_STRING, ok ? "echoed" : "failed");
    free(text);
    party_test_conn_free(c);
    party_test_free(t);
    return ok ? 0 : 1;
}
C
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror $cflags -o "$tmp/embed" "$tmp/embed.c" $libs
out=$(LD_LIBRARY_PATH=$stage$prefix/lib "$tmp/embed")
echo "ok: a program linked with pkg-config --libs libparty runs: $out"
echo "1 passed, 0 failed"

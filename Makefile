# The two commands of the quick start, and a few more for developers.
#   make run    install missing packages, build, serve on http://127.0.0.1:1999
#               with the browser demo (web/) at /
#   make test   install test needs, run the static analyzer, build with
#               ASan + UBSan, run every test
#   make install  a Release build installed under $(DESTDIR)$(PREFIX)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE_DIR := build/release
TEST_DIR := build/asan
VALGRIND_DIR := build/valgrind
SCAN_DIR := build/scan
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 30

.PHONY: all run test test-valgrind analyze build build-test install e2e-deps yjs-deps web-deps browser-deps web fuzz oom format clean bench

all: build

build:
	scripts/deps.sh
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARTY_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build $(RELEASE_DIR) -j $(JOBS)

run: build web
	mkdir -p data
	exec $(RELEASE_DIR)/partyd --data ./data --static web/dist $(ARGS)

# partyd, libparty.so, party.h, party_test.h and libparty.pc under
# $(DESTDIR)$(PREFIX) (bin/, lib/, include/, lib/pkgconfig/), from a Release
# build of its own. PREFIX is what libparty.pc names; DESTDIR stages the
# files elsewhere (packaging), e.g. make install DESTDIR=/tmp/stage.
PREFIX ?= /usr/local
INSTALL_DIR ?= build/install
install:
	scripts/deps.sh
	cmake -S . -B $(INSTALL_DIR) -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF \
		-DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)
	cmake --build $(INSTALL_DIR) -j $(JOBS)
	DESTDIR="$(DESTDIR)" cmake --install $(INSTALL_DIR) --prefix "$(PREFIX)"

# npm ci in the current directory unless node_modules matches the lock file.
NPM_CI = if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --no-audit --no-fund --loglevel=error; fi

e2e-deps:
	cd tests/e2e && $(NPM_CI)

web-deps:
	cd web && $(NPM_CI)

browser-deps:
	cd tests/browser && $(NPM_CI)

# The browser demo (web/src, partysocket bundled by esbuild) into web/dist.
web: web-deps
	node web/build.mjs web/dist

yjs-deps:
	cd tests/yjs && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --no-audit --no-fund --loglevel=error; fi

# Tests build with clang so the libFuzzer harnesses build in the same tree.
build-test:
	scripts/deps.sh --test
	CC=clang cmake -S . -B $(TEST_DIR) -DCMAKE_BUILD_TYPE=Debug -DPARTY_SANITIZE=ON \
		-DPARTY_WERROR=ON -DPARTY_FUZZ=ON -DPARTY_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS)
	cmake --build $(TEST_DIR) -j $(JOBS)

# Three phases: the static analyzer (make analyze), the tests proper on
# every core, then all fuzzers at once (each runs FUZZ_SECONDS of wall
# time, so the phase takes FUZZ_SECONDS however many there are, and no
# timing-sensitive test shares the CPU with them). A finding fails the run
# but the tests still run.
test: build-test e2e-deps yjs-deps web-deps browser-deps
	status=0; \
	JOBS=$(JOBS) scripts/analyze.sh . $(SCAN_DIR) || status=1; \
	cd $(TEST_DIR) || exit 1; \
	ctest --output-on-failure -j $(JOBS) -LE fuzz || status=1; \
	ctest --output-on-failure -j 8 -L fuzz || status=1; \
	exit $$status

# The clang static analyzer (scan-build) over src/, parties/, examples/,
# bench/ and tests/, in its own build (build/scan, made afresh): prints the
# number of findings and fails unless it is 0. About 3 minutes of CPU time.
analyze:
	scripts/deps.sh --test
	JOBS=$(JOBS) scripts/analyze.sh . $(SCAN_DIR)

# The integration tests again, with every partyd they start running under
# valgrind memcheck (a plain Debug build: no sanitizers). Any leak or memory
# error makes partyd exit 99 and its test fail. test_crash is left out: it
# kills partyd with SIGKILL dozens of times, so valgrind never gets to
# report, and it would take minutes under valgrind for nothing.
VALGRIND := valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --num-callers=30
test-valgrind: e2e-deps
	scripts/deps.sh --test
	cmake -S . -B $(VALGRIND_DIR) -DCMAKE_BUILD_TYPE=Debug -DPARTY_SANITIZE=OFF -DPARTY_WERROR=ON \
		-DPARTY_FUZZ=OFF $(CMAKE_FLAGS)
	cmake --build $(VALGRIND_DIR) -j $(JOBS)
	cd $(VALGRIND_DIR) && PARTYD_WRAPPER="$(VALGRIND)" \
		ctest --output-on-failure -j $(JOBS) -L integration -E 'test_crash$$'

# Longer fuzzing than `make test` does: make fuzz FUZZ_SECONDS=600
fuzz: FUZZ_SECONDS = 300
fuzz: build-test
	cd $(TEST_DIR) && ctest --output-on-failure -j 8 -L fuzz --timeout $$(( $(FUZZ_SECONDS) + 120 ))

# The OOM sweep with no stride: every allocation of every scenario fails
# once (tests/oom/test_oom.c; make test runs it with a stride).
oom: build-test
	cd $(TEST_DIR) && PARTY_OOM_FULL=1 tests/oom/test_oom

# partyd side by side with PartyServer on workerd and node ws (about 5 min;
# writes docs/benchmarks.md): make bench; a smoke run: make bench ARGS=--quick
bench:
	bench/run.sh $(ARGS)

# Formats every C file that scripts/check-format checks (make test runs it).
format:
	find include src parties examples tests bench -name node_modules -prune -o \
		\( -name '*.c' -o -name '*.h' \) -type f -print | grep -v -e /corpus -e /fixtures/ | xargs clang-format -i

clean:
	rm -rf build

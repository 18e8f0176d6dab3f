# The two commands of the quick start, and a few more for developers.
#   make run    install missing packages, build, serve on http://127.0.0.1:1999
#   make test   install test needs, build with ASan + UBSan, run every test
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
RELEASE_DIR := build/release
TEST_DIR := build/asan
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 20

.PHONY: all run test build build-test e2e-deps yjs-deps fuzz format clean

all: build

build:
	scripts/deps.sh
	cmake -S . -B $(RELEASE_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARTY_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build $(RELEASE_DIR) -j $(JOBS)

run: build
	mkdir -p data
	exec $(RELEASE_DIR)/partyd --data ./data $(ARGS)

e2e-deps:
	cd tests/e2e && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --no-audit --no-fund --loglevel=error; fi

yjs-deps:
	cd tests/yjs && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --no-audit --no-fund --loglevel=error; fi

# Tests build with clang so the libFuzzer harnesses build in the same tree.
build-test:
	scripts/deps.sh --test
	CC=clang cmake -S . -B $(TEST_DIR) -DCMAKE_BUILD_TYPE=Debug -DPARTY_SANITIZE=ON \
		-DPARTY_WERROR=ON -DPARTY_FUZZ=ON -DPARTY_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_FLAGS)
	cmake --build $(TEST_DIR) -j $(JOBS)

test: build-test e2e-deps yjs-deps
	cd $(TEST_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Longer fuzzing than `make test` does: make fuzz FUZZ_SECONDS=600
fuzz: FUZZ_SECONDS = 300
fuzz: build-test
	cd $(TEST_DIR) && ctest --output-on-failure -j $(JOBS) -L fuzz --timeout $$(( $(FUZZ_SECONDS) + 120 ))

format:
	clang-format -i include/*.h src/*.c src/*.h parties/*.c examples/*/*.c tests/*/*.c tests/*/*.h

clean:
	rm -rf build

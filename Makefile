# Makefile - a thin wrapper around CMake/CTest for the usual chores.
#
#   make demo    build, then a tour: examples/shared_dataset, then
#                store_tour, pipeline, param_server and checkpoint in short
#   make test    build (-Werror), then run every test with CTest
#   make asan    AddressSanitizer + UBSan build and tests  (build-asan/)
#   make tsan    ThreadSanitizer build and tests            (build-tsan/)
#   make bench   Release build of ray_bench, results in bench/results.json
#                (make bench BENCH_ARGS=--quick passes options through)
#   make format  clang-format -i over the C sources
#   make format-check  fail if any C source is not clang-format clean (CI)
#   make lint    clang-tidy (.clang-tidy) and cppcheck over src/, and the
#                include-graph check (scripts/layers.sh)
#   make install   build the libraries and install them, ray.h, ray.pc,
#                ray-static.pc and the CMake package under PREFIX (default
#                /usr/local; DESTDIR=/staging is honoured)
#   make uninstall  remove exactly what the last make install put
#                (build/install_manifest.txt and the directories it created)
#   make deps    install what the build needs (scripts/deps.sh)
#   make clean   remove every build directory
#
# The real build description is CMakeLists.txt; nothing here is needed to
# build with plain cmake.

CMAKE     ?= cmake
CTEST     ?= ctest
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_J   ?= 2
BENCH_ARGS ?=
# Extra -D options for every configure, e.g. CMAKE_ARGS=-DCMAKE_C_COMPILER=clang
CMAKE_ARGS ?=
# Where make install puts rayc (an absolute path is passed to CMake)
PREFIX ?= /usr/local

BUILD       := build
BUILD_ASAN  := build-asan
BUILD_TSAN  := build-tsan
BUILD_BENCH := build-bench

# Sanitized builds: Debug keeps assertions on; -O1 keeps them fast enough.
SAN_FLAGS := -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-g -O1" -DRAY_WERROR=ON

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

FORMAT_DIRS := include src tests bench examples

.PHONY: all deps configure build demo test install uninstall asan tsan bench format format-check \
        lint clean

all: build

deps:
	@scripts/deps.sh

configure: deps
	$(CMAKE) -S . -B $(BUILD) -DRAY_WERROR=ON $(CMAKE_ARGS)

build: configure
	$(CMAKE) --build $(BUILD) -j$(JOBS)

# The tour: shared_dataset in full, then the last lines of each other example
# (its whole output if it fails, and then make fails).
demo: build
	./$(BUILD)/examples/shared_dataset
	@for e in store_tour pipeline param_server checkpoint; do \
	  echo; echo "./$(BUILD)/examples/$$e | tail -n 3"; \
	  out=$$(./$(BUILD)/examples/$$e 2>&1) || { echo "$$out"; echo "make demo: $$e failed" >&2; exit 1; }; \
	  echo "$$out" | tail -n 3; \
	done

test: build
	$(CTEST) --test-dir $(BUILD) --output-on-failure -j$(CTEST_J)

# GNUInstallDirs picks the library directory (lib, lib64, lib/<multiarch> for
# /usr on Debian) from the prefix known at configure time, so the prefix is
# configured, not only passed to cmake --install. Only the two libraries are
# built: the install needs nothing else.
install: deps
	$(CMAKE) -S . -B $(BUILD) -DRAY_WERROR=ON -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX)) $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD) -j$(JOBS) --target ray_static ray_shared
	DESTDIR="$(DESTDIR)" $(CMAKE) --install $(BUILD)

# The same command the install test (tests/install/check.sh) runs.
uninstall:
	$(CMAKE) -DRAY_BUILD_DIR=$(abspath $(BUILD)) -P cmake/ray_uninstall.cmake

# run_sanitized_ctest <build dir> <environment>
# gcc 12's sanitizers can fail to start on kernels with high mmap ASLR entropy
# ("FATAL: ThreadSanitizer: unexpected memory mapping"). cmake/sanitizer_launcher.sh
# checks with a probe program and prints "setarch <arch> -R" whenever that works, which
# turns ASLR off for ctest and every test it starts. RAY_SETARCH=1 forces that,
# RAY_SETARCH=0 forbids it.
define run_sanitized_ctest
	@launcher=$$(env $(2) cmake/sanitizer_launcher.sh $(1)/ray_sanitizer_probe) || exit 1; \
	echo "env $(2) $$launcher $(CTEST) --test-dir $(1) --output-on-failure -j$(CTEST_J)"; \
	env $(2) $$launcher $(CTEST) --test-dir $(1) --output-on-failure -j$(CTEST_J)
endef

asan: deps
	$(CMAKE) -S . -B $(BUILD_ASAN) -DRAY_SANITIZE=address,undefined $(SAN_FLAGS) $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD_ASAN) -j$(JOBS)
	$(call run_sanitized_ctest,$(BUILD_ASAN),$(ASAN_ENV))

tsan: deps
	$(CMAKE) -S . -B $(BUILD_TSAN) -DRAY_SANITIZE=thread $(SAN_FLAGS) $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD_TSAN) -j$(JOBS)
	$(call run_sanitized_ctest,$(BUILD_TSAN),$(TSAN_ENV))

bench: deps
	@test -f bench/ray_bench.c || { echo "make: bench/ray_bench.c does not exist" >&2; exit 1; }
	$(CMAKE) -S . -B $(BUILD_BENCH) -DCMAKE_BUILD_TYPE=Release -DRAY_BUILD_TESTS=OFF $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD_BENCH) -j$(JOBS) --target ray_bench
	./$(BUILD_BENCH)/bench/ray_bench --json bench/results.json $(BENCH_ARGS)

format:
	@command -v clang-format >/dev/null || { echo "make: no clang-format; run scripts/deps.sh --lint" >&2; exit 1; }
	find $(FORMAT_DIRS) -name '*.[ch]' -type f -print0 2>/dev/null | xargs -0 -r clang-format -i

format-check:
	@scripts/deps.sh --lint
	find $(FORMAT_DIRS) -name '*.[ch]' -type f -print0 2>/dev/null | xargs -0 -r clang-format --dry-run -Werror

lint: configure
	@scripts/deps.sh --lint
	@rc=0; \
	echo "clang-tidy -p $(BUILD) src/**/*.c"; \
	find src -name '*.c' -type f -print0 | xargs -0 -r clang-tidy -p $(BUILD) --quiet || rc=1; \
	echo "cppcheck --enable=warning,performance src"; \
	cppcheck --enable=warning,performance --error-exitcode=1 --inline-suppr --quiet \
	  --std=c11 -I include -I src src || rc=1; \
	echo "scripts/layers.sh (include graph: no cycle, no runtime.h)"; \
	scripts/layers.sh || rc=1; \
	exit $$rc

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_BENCH)

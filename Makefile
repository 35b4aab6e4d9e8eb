# Top-level entry points: make, make run, make test, make fuzz, make format, make install.
BUILD      ?= build
TEST_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PYTHON     ?= /usr/bin/python3

.PHONY: all release run test unit e2e fuzz format setup clean install

all: release

release:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

setup:
	@scripts/setup

run: setup release
	./$(BUILD)/flowcast serve

test: setup
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
	FLOWCAST_BIN=$(CURDIR)/$(TEST_BUILD)/flowcast $(PYTHON) -m pytest -q -x tests/e2e
	FLOWCAST_BIN=$(CURDIR)/$(TEST_BUILD)/flowcast tests/browser/run.sh
	$(MAKE) --no-print-directory bench-smoke

FUZZ_SECONDS ?= 60
fuzz:
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON -DFC_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@for f in $(FUZZ_BUILD)/fuzz_*; do \
	  echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 2>&1 | tail -n 2 || exit 1; \
	done

# Installs flowcast, libflowcast (static + shared), its header and flowcast.pc
# under PREFIX (DESTDIR is honoured for staged installs).
PREFIX ?= /usr/local
install:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)

# Benchmarks (issue 4): bench/run.sh runs scenarios, bench/compare.sh runs the
# side-by-side set against Node ws and nginx+nchan; both write
# docs/benchmarks.md. bench-smoke runs every scenario at tiny sizes plus a
# tiny compare, checks only that they ran (no timing), and leaves docs alone.
BENCH_RUNS ?= 3
.PHONY: bench bench-compare bench-smoke
bench: setup release
	@scripts/setup-bench
	@rm -f $(BUILD)/bench-results/results-full.jsonl
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/run.sh --runs $(BENCH_RUNS) \
	  --results $(CURDIR)/$(BUILD)/bench-results/results-full.jsonl \
	  many-workflows ingest storm io-threads
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/profile.sh
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/compare.sh --runs $(BENCH_RUNS)

bench-compare: setup release
	@scripts/setup-bench
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/compare.sh --runs $(BENCH_RUNS)

bench-smoke: setup release
	@scripts/setup-bench
	@rm -f $(BUILD)/bench-results/smoke.jsonl
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 240 bench/run.sh --size tiny --runs 1 \
	  --results $(CURDIR)/$(BUILD)/bench-results/smoke.jsonl all
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 120 bench/compare.sh --size tiny --runs 1 --no-doc
	$(PYTHON) bench/report.py --check $(BUILD)/bench-results/smoke.jsonl \
	  $(BUILD)/bench-results/compare-tiny.jsonl

# Top-level entry points: make, make run, make test, make fuzz, make format, make install.
BUILD      ?= build
TEST_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PYTHON     ?= /usr/bin/python3

.PHONY: all release run cluster test unit e2e fuzz format setup clean install

all: release

release:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

setup:
	@scripts/setup

run: setup release
	./$(BUILD)/flowcast serve

# A cluster on loopback (docs/cluster.md): PostgreSQL, nats-server, three
# nodes and HAProxy on free ports; prints the URLs; Ctrl-C stops it all.
cluster: setup release
	@$(PYTHON) scripts/cluster --bin $(CURDIR)/$(BUILD)/flowcast

# The e2e suite mostly waits (timeouts, token expiry, peers), using about a
# fifth of a core: two xdist workers, each taking whole files (module
# fixtures and in-file order stay as written), halve its wall time.
# E2E_PARALLEL= runs it in one process.
E2E_PARALLEL ?= -n 2 --dist loadfile

test: setup
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3
	FLOWCAST_BIN=$(CURDIR)/$(TEST_BUILD)/flowcast $(PYTHON) -m pytest -q -x $(E2E_PARALLEL) tests/e2e
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp FLOWCAST_BIN=$(CURDIR)/$(TEST_BUILD)/flowcast tests/browser/run.sh
	$(MAKE) --no-print-directory bench-smoke

# Each driver runs FUZZ_SECONDS from its committed seeds (tests/fuzz/corpus/<driver>)
# plus what earlier runs found ($(FUZZ_BUILD)/corpus/<driver>, where new inputs
# go), and prints its final coverage (cov: edges, ft: features). The log and
# any crash input are in $(FUZZ_BUILD)/fuzz-logs.
FUZZ_SECONDS ?= 60
fuzz:
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON -DFC_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@mkdir -p $(FUZZ_BUILD)/fuzz-logs
	@for f in $(FUZZ_BUILD)/fuzz_*; do \
	  [ -f "$$f" ] && [ -x "$$f" ] || continue; \
	  name=$$(basename $$f); log=$(FUZZ_BUILD)/fuzz-logs/$$name.log; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$name; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    -artifact_prefix=$(FUZZ_BUILD)/fuzz-logs/$$name- \
	    $(FUZZ_BUILD)/corpus/$$name tests/fuzz/corpus/$$name >$$log 2>&1; rc=$$?; \
	  stats=$$(grep -E '^#[0-9]+[[:space:]]+DONE' $$log | tail -n 1 | \
	    sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*exec\/s: ([0-9]+).*/\2 runs: \1 exec\/s: \3/'); \
	  printf 'fuzz: %-20s %ss  %s\n' $$name $(FUZZ_SECONDS) "$$stats"; \
	  if [ $$rc -ne 0 ]; then tail -n 40 $$log; exit 1; fi; \
	done

# Installs flowcast, libflowcast (static + shared), its header, flowcast.pc,
# the man page flowcast.1 (generated from the options table), the systemd unit
# flowcast.service and its sysusers.d entry under PREFIX (DESTDIR is honoured
# for staged installs).
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
# docs/benchmarks.md. bench/tls.sh (issue 9) runs flowcast's TLS against
# nginx+nchan terminating TLS, and JWT verification per connect, and writes
# only the TLS section of docs/benchmarks.md. bench/cluster.sh (issue 10)
# runs three nodes on PostgreSQL and NATS and writes only the cluster section. bench-smoke runs every scenario
# at tiny sizes plus a tiny compare and TLS set, checks only that they ran
# (no timing), and leaves docs alone.
BENCH_RUNS ?= 3
.PHONY: bench bench-compare bench-tls bench-cluster bench-smoke
bench: setup release
	@scripts/setup-bench
	@rm -f $(BUILD)/bench-results/results-full.jsonl
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/run.sh --runs $(BENCH_RUNS) \
	  --results $(CURDIR)/$(BUILD)/bench-results/results-full.jsonl \
	  many-workflows ingest storm io-threads
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/profile.sh
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/compare.sh --runs $(BENCH_RUNS)
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/tls.sh --runs $(BENCH_RUNS)
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/cluster.sh --runs $(BENCH_RUNS)

bench-compare: setup release
	@scripts/setup-bench
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/compare.sh --runs $(BENCH_RUNS)

bench-tls: setup release
	@scripts/setup-bench
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/tls.sh --runs $(BENCH_RUNS)

bench-cluster: setup release
	FCB_BUILD=$(CURDIR)/$(BUILD) bench/cluster.sh --runs $(BENCH_RUNS)

bench-smoke: setup release
	@scripts/setup-bench
	@rm -f $(BUILD)/bench-results/smoke.jsonl
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 240 bench/run.sh --size tiny --runs 1 \
	  --results $(CURDIR)/$(BUILD)/bench-results/smoke.jsonl all
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 120 bench/compare.sh --size tiny --runs 1 --no-doc
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 90 bench/tls.sh --size tiny --runs 1 --no-doc
	FCB_BUILD=$(CURDIR)/$(BUILD) timeout -k 10 120 bench/cluster.sh --size tiny --runs 1 --no-doc
	$(PYTHON) bench/report.py --check $(BUILD)/bench-results/smoke.jsonl \
	  $(BUILD)/bench-results/compare-tiny.jsonl $(BUILD)/bench-results/tls-tiny.jsonl \
	  $(BUILD)/bench-results/cluster-tiny.jsonl

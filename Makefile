# Chatter: build, test, run and benchmark.
#
#   make run            install what is missing, build, start the private
#                       PostgreSQL cluster (unless DATABASE_URL is set), serve :4000
#   make test           the same set-up, then every suite (plain, TSan, ASan+UBSan,
#                       protocol tests over WebSockets, browser tests)
#   make fuzz           libFuzzer over the HTTP, WebSocket and JSON parsers
#                       (FUZZ_SECONDS each, default 60; make test-fuzz: 10)
#   make bench          the runtime's micro-benchmarks
#   make bench-compare  the same against the Erlang peers, as a table
#
# Every output goes under _build/<variant>/: default, tsan, asan.

CC      ?= cc
CFLAGS  ?= -O2 -g
PREFIX  ?= /usr/local
PKG_CONFIG ?= pkg-config
V       ?= default
SAN     ?=

B := _build/$(V)
SHELL := /bin/bash

WARN     := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
RT_CFLAGS  = $(WARN) $(CFLAGS) $(SAN) -pthread $(shell $(PKG_CONFIG) --cflags libuv)
RT_LIBS    = $(shell $(PKG_CONFIG) --libs libuv) -pthread
APP_PKGS   := libuv libpq libcjson nettle
APP_CFLAGS = $(RT_CFLAGS) -Iruntime -Iapp $(shell $(PKG_CONFIG) --cflags $(APP_PKGS))
APP_LIBS   = $(shell $(PKG_CONFIG) --libs $(APP_PKGS)) -lwslay -lhttp_parser -pthread -lm
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check)
CHECK_LIBS   = $(shell $(PKG_CONFIG) --libs check)

RT_SRC   := $(wildcard runtime/*.c)
APP_SRC  := $(filter-out app/main.c,$(wildcard app/*.c))
RT_OBJ   := $(RT_SRC:%.c=$(B)/obj/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(B)/obj/%.o)
RT_TESTS := $(patsubst test/runtime/%.c,$(B)/test/runtime/%,$(wildcard test/runtime/test_*.c))
APP_TESTS:= $(patsubst test/app/%.c,$(B)/test/app/%,$(wildcard test/app/test_*.c))
BENCHES  := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/*.c))

.PHONY: all build deps run test test-runtime test-app test-tsan test-asan \
        test-protocol test-browser test-faults test-faults-all test-faults-runtime bench bench-compare bench-repo \
        db-start stop-db clean install fuzz test-fuzz deps-fuzz

all: build
build: $(B)/libact.a $(B)/chatter $(RT_TESTS) $(APP_TESTS) $(BENCHES)

$(B)/obj/runtime/%.o: runtime/%.c $(wildcard runtime/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -c $< -o $@

$(B)/obj/app/%.o: app/%.c $(wildcard app/*.h) $(wildcard runtime/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) -c $< -o $@

$(B)/libact.a: $(RT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/libchatter.a: $(APP_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/chatter: app/main.c $(B)/libchatter.a $(B)/libact.a
	$(CC) $(APP_CFLAGS) $< $(B)/libchatter.a $(B)/libact.a $(APP_LIBS) -o $@

$(B)/test/runtime/%: test/runtime/%.c $(wildcard test/runtime/*.h) $(wildcard test/lib/*.h) $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -Itest/runtime $(CHECK_CFLAGS) $< $(B)/libact.a $(CHECK_LIBS) $(RT_LIBS) -o $@

$(B)/test/app/%: test/app/%.c $(wildcard test/app/*.h) $(wildcard test/lib/*.h) $(B)/libchatter.a $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) $(CHECK_CFLAGS) $< $(B)/libchatter.a $(B)/libact.a $(CHECK_LIBS) $(APP_LIBS) -o $@

$(B)/bench/%: bench/%.c bench/bench.h $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -Ibench $< $(B)/libact.a $(RT_LIBS) -o $@

# Fault injection (test/app/fault_repo.c): allocations go through wrappers
# that can fail the Nth one.  fault_repo: the app's only (its objects' calls
# renamed by objcopy); fault_repo_all: the runtime's too (ld --wrap).
FAULT_SYMS := malloc calloc realloc strdup
# The app's strings and arrays are the runtime's buf.c and vec.c: they go
# into this archive too (linked before libact.a, so these copies are used),
# so that the app's appends and pushes fail as they did when the app had its own.
$(B)/fault/libchatter.a: $(B)/libchatter.a $(B)/obj/runtime/buf.o $(B)/obj/runtime/vec.o
	@mkdir -p $(dir $@)
	cp $< $@.tmp && ar rcs $@.tmp $(B)/obj/runtime/buf.o $(B)/obj/runtime/vec.o
	objcopy $(foreach f,$(FAULT_SYMS),--redefine-sym $(f)=fault_$(f)) $@.tmp $@ && rm $@.tmp
$(B)/test/app/fault_repo: test/app/fault_repo.c test/runtime/fault_loop.h $(wildcard test/app/*.h) $(wildcard test/lib/*.h) $(B)/fault/libchatter.a $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) $(CHECK_CFLAGS) -Itest/runtime $< $(B)/fault/libchatter.a $(B)/libact.a $(APP_LIBS) -o $@
$(B)/test/app/fault_repo_all: test/app/fault_repo.c test/runtime/fault_loop.h $(wildcard test/app/*.h) $(wildcard test/lib/*.h) $(B)/libchatter.a $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) $(CHECK_CFLAGS) -Itest/runtime -DFAULT_ALL $< $(B)/libchatter.a $(B)/libact.a $(APP_LIBS) \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup -o $@

# fault_runtime: the runtime alone (libact.a), every allocation wrapped
# (ld --wrap), along a call, a request and a supervisor's start_child.
$(B)/test/runtime/fault_runtime: test/runtime/fault_runtime.c test/runtime/fault_loop.h $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime $< $(B)/libact.a $(RT_LIBS) \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup -o $@

# The repo's insert benchmark drives app/repo.c, so it links the app too.
$(B)/bench/repo_insert: bench/repo_insert.c bench/bench.h $(B)/libchatter.a $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) -Ibench $< $(B)/libchatter.a $(B)/libact.a $(APP_LIBS) -o $@

# ------------------------------------------------------------------ set-up

# Debian packages the project needs; installed when missing (as root, no sudo).
DEB_BUILD := gcc make pkg-config libuv1-dev libpq-dev libcjson-dev libwslay-dev \
             check libsubunit-dev libhttp-parser-dev nettle-dev postgresql-15 \
             postgresql-contrib
DEB_BENCH := erlang-base

define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing packages; run as root: apt-get update && apt-get install -y$$missing"; exit 1; fi; \
	fi
endef

define apt_ensure_cmd
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	else echo "missing node/npm; run as root: apt-get install -y $(1)"; exit 1; fi;
endef

deps:
	$(call apt_ensure,$(DEB_BUILD))

# Node may come from Debian or elsewhere (the machine image's own): only a
# missing `node`/`npm` command asks for Debian's packages.
deps-test: deps
	$(call apt_ensure,chromium)
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  $(call apt_ensure_cmd,nodejs npm) }
	@cd test && node lib/check-deps.mjs || npm install --no-audit --no-fund --loglevel=error

deps-bench: deps
	$(call apt_ensure,$(DEB_BENCH))

# The private development cluster, unless DATABASE_URL points elsewhere.
db-start: deps
	@if [ -z "$$DATABASE_URL" ]; then bash sql/devdb.sh start; fi

stop-db:
	bash sql/devdb.sh stop

run: deps db-start
	$(MAKE) --no-print-directory build
	@if [ -z "$$DATABASE_URL" ]; then export DATABASE_URL="$$(bash sql/devdb.sh url)"; fi; \
	 exec $(B)/chatter

# ------------------------------------------------------------------- tests

test: deps-test db-start
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory test-runtime
	$(MAKE) --no-print-directory test-app
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-fuzz
	$(MAKE) --no-print-directory test-protocol
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-harness
	$(MAKE) --no-print-directory test-kill
	@echo "make test: all suites passed"

# Every suite runs even after one fails; the target fails at the end.
test-runtime: $(RT_TESTS)
	@failed=""; for t in $(RT_TESTS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	 if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

test-app: $(APP_TESTS)
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; failed=""; \
	 for t in $(APP_TESTS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	 if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

test-tsan:
	$(MAKE) --no-print-directory V=tsan SAN="-fsanitize=thread" CFLAGS="-O1 -g" test-runtime

# The Check suites and the server itself (driven by the protocol suite)
# under AddressSanitizer + UBSan; a report, at run time or at exit, fails.
ASAN_SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
test-asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" test-runtime test-app
	$(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" _build/asan/chatter
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	CHATTER_CHECK_EXIT=1 $(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" test-protocol
	$(MAKE) --no-print-directory test-faults FAULT_STRIDE=8
	$(MAKE) --no-print-directory test-faults-runtime

# Every allocation along the repo's part of a join and a send failed in turn
# under ASan+LSan: no crash, no leak, every request answered.  FAULT_STRIDE=1
# tries every N; test-asan runs every 8th to stay short.  test-faults-all
# fails the runtime's allocations too, along the same path.
# test-faults-runtime fails each of the runtime's own allocations along a
# call, a request and a supervisor's start_child (every N: it is short),
# and test-asan runs it whole.
FAULT_STRIDE ?= 1
FAULT_RUN = export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	 FAULT_STRIDE=$(FAULT_STRIDE)
test-faults:
	$(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" _build/asan/test/app/fault_repo
	@$(FAULT_RUN) _build/asan/test/app/fault_repo
test-faults-all:
	$(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" _build/asan/test/app/fault_repo_all
	@$(FAULT_RUN) _build/asan/test/app/fault_repo_all
test-faults-runtime:
	$(MAKE) --no-print-directory V=asan SAN="$(ASAN_SAN)" CFLAGS="-O1 -g" _build/asan/test/runtime/fault_runtime
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	 FAULT_STRIDE=$(FAULT_STRIDE) _build/asan/test/runtime/fault_runtime

# Then the files that push most (fan-out, full sockets, large replies) again
# with CHATTER_IO_URING=0: one send(2) per push, as where io_uring is refused.
URING_OFF_TESTS := fanout bounds_output zz_large_replies consistency
test-protocol: $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 CHATTER_BIN=$(B)/chatter node test/lib/run-tests.mjs test/protocol && \
	 CHATTER_IO_URING=0 CHATTER_BIN=$(B)/chatter node test/lib/run-tests.mjs \
	   $(URING_OFF_TESTS:%=test/protocol/%.test.mjs)

test-browser: $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 CHATTER_BIN=$(B)/chatter node test/lib/run-tests.mjs test/browser

# ---------------------------------------------------------------- fuzzing

# libFuzzer (Debian's clang-14) over the three parsers a client reaches: the
# HTTP request parser, the WebSocket frame reader feeding the protocol
# decoder, the JSON request decoder; harnesses and seed corpora in test/fuzz/.
# `make fuzz` runs each for FUZZ_SECONDS; `make test-fuzz` for
# FUZZ_TEST_SECONDS each; both under ASan+UBSan, and any crash, leak, UB or
# failed check fails the target. New inputs found go to _build/fuzz/corpus/,
# crashing ones to _build/fuzz/crashes/ (the seeds in git stay as they are).
DEB_FUZZ := clang-14 libclang-rt-14-dev
FUZZ_CC  := clang-14
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 10
FUZZ_TARGETS := http ws json
FUZZ_SRC := app/http.c app/ws.c app/unicode.c app/protocol.c runtime/buf.c
FUZZ_BINS := $(FUZZ_TARGETS:%=_build/fuzz/%_fuzz)
FUZZ_CFLAGS = $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=all -Iapp -Iruntime $(shell $(PKG_CONFIG) --cflags libcjson nettle)
FUZZ_LIBS = $(shell $(PKG_CONFIG) --libs libcjson nettle) -lwslay -lhttp_parser -lm

deps-fuzz: deps
	$(call apt_ensure,$(DEB_FUZZ))

_build/fuzz/%_fuzz: test/fuzz/%_fuzz.c $(FUZZ_SRC) $(wildcard app/*.h) runtime/buf.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC) $(FUZZ_LIBS) -o $@

fuzz: deps-fuzz
	$(MAKE) --no-print-directory $(FUZZ_BINS)
	@set -o pipefail; failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p _build/fuzz/corpus/$$t _build/fuzz/crashes; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  _build/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -dict=test/fuzz/$$t.dict -artifact_prefix=_build/fuzz/crashes/$$t- \
	    _build/fuzz/corpus/$$t test/fuzz/$$t > _build/fuzz/$$t.log 2>&1 \
	    || { failed="$$failed $$t"; tail -n 60 _build/fuzz/$$t.log; }; \
	  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' _build/fuzz/$$t.log | tail -n 2; \
	  grep -E '^stat::number_of_executed_units' _build/fuzz/$$t.log; \
	done; if [ -n "$$failed" ]; then echo "FUZZ FAILED:$$failed (inputs in _build/fuzz/crashes/)"; exit 1; fi

test-fuzz:
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)

# ------------------------------------------------------------- benchmarks

bench: $(BENCHES)
	@for b in pingpong ring skynet fanout restart memory dynsup; do $(B)/bench/$$b; done

# Committed messages/s through the repo's writer, batched and one per round
# trip, against the private cluster (or $DATABASE_URL).
bench-repo: db-start $(B)/bench/repo_insert
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; $(B)/bench/repo_insert

bench-compare: deps-bench $(BENCHES)
	@bash bench/compare.sh $(B)/bench

# ------------------------------------------------------------ load harness

# chatter-load: the C load harness on the runtime (bench/chatter-load/).
LOAD_SRC := bench/chatter-load/client.c bench/chatter-load/main.c
$(B)/chatter-load: $(LOAD_SRC) bench/chatter-load/load.h runtime/act.h $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime $(LOAD_SRC) $(B)/libact.a $(RT_LIBS) -lm -o $@

# floor.c's measurement at a chosen cadence (bench/chatter-load/floor_gap.c),
# and with the server's own batches of sends (app/sendbatch.c).
$(B)/floor-gap: bench/chatter-load/floor_gap.c app/sendbatch.c app/sendbatch.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -O2 -Iapp $< app/sendbatch.c -lm -o $@

.PHONY: chatter-load bench-chat test-harness test-kill
chatter-load: $(B)/chatter-load $(B)/floor-gap

# The harness's smoke test (about 10 s): self-test, bad options, 50 sessions.
test-harness: $(B)/chatter-load $(B)/floor-gap $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 bash bench/chatter-load/smoke.sh $(B)/chatter-load $(B)/chatter

# The kill scenario at 400 sessions (about 15 s): pubsub and presence
# killed under load, nobody closed, nothing lost, counts exact.
test-kill: $(B)/chatter-load $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 bash bench/chatter-load/kill-smoke.sh $(B)/chatter-load $(B)/chatter

# Every scenario against Chatter, the Node peer and the kernel floor, one
# table, kept in bench/RESULTS.md.  BENCH_ARGS="--small" for a quick run.
bench-chat: deps db-start
	$(MAKE) --no-print-directory $(B)/chatter $(B)/chatter-load $(B)/floor-gap
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  $(call apt_ensure_cmd,nodejs npm) }
	BENCH_ARGS="$(BENCH_ARGS)" bash bench/chatter-load/bench-chat.sh $(BENCH_ARGS)

# The binary in bin/, the client and the migrations in share/chatter/, where
# the binary looks for them (app/config.c); contrib/ has a systemd unit and a
# TLS reverse-proxy example.
install: $(B)/chatter
	install -D -m 755 $(B)/chatter $(DESTDIR)$(PREFIX)/bin/chatter
	install -d $(DESTDIR)$(PREFIX)/share/chatter
	cp -R web sql $(DESTDIR)$(PREFIX)/share/chatter/
	rm -f $(DESTDIR)$(PREFIX)/share/chatter/sql/devdb.sh

clean:
	rm -rf _build

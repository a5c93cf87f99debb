# Chatter: build, test, run and benchmark.
#
#   make run            install what is missing, build, start the private
#                       PostgreSQL cluster (unless DATABASE_URL is set), serve :4000
#   make test           the same set-up, then every suite (plain, TSan, ASan+UBSan,
#                       protocol tests over WebSockets, browser tests)
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
        test-protocol test-browser bench bench-compare db-start stop-db clean install

all: build
build: $(B)/libact.a $(B)/chatter $(RT_TESTS) $(APP_TESTS) $(BENCHES)

$(B)/obj/runtime/%.o: runtime/%.c $(wildcard runtime/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -c $< -o $@

$(B)/obj/app/%.o: app/%.c $(wildcard app/*.h) runtime/act.h
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

$(B)/test/runtime/%: test/runtime/%.c $(wildcard test/runtime/*.h) $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -Itest/runtime $(CHECK_CFLAGS) $< $(B)/libact.a $(CHECK_LIBS) $(RT_LIBS) -o $@

$(B)/test/app/%: test/app/%.c $(wildcard test/app/*.h) $(B)/libchatter.a $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(APP_CFLAGS) $(CHECK_CFLAGS) $< $(B)/libchatter.a $(B)/libact.a $(CHECK_LIBS) $(APP_LIBS) -o $@

$(B)/bench/%: bench/%.c bench/bench.h $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime -Ibench $< $(B)/libact.a $(RT_LIBS) -o $@

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
	@if [ ! -d test/node_modules/playwright-core ] || [ ! -d test/node_modules/ws ]; then \
	  cd test && npm install --no-audit --no-fund --loglevel=error; fi

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
	$(MAKE) --no-print-directory test-protocol
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-harness
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

test-protocol: $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 CHATTER_BIN=$(B)/chatter node --test --test-concurrency=1 test/protocol/

test-browser: $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 CHATTER_BIN=$(B)/chatter node --test --test-concurrency=1 test/browser/

# ------------------------------------------------------------- benchmarks

bench: $(BENCHES)
	@for b in pingpong ring skynet fanout restart memory; do $(B)/bench/$$b; done

bench-compare: deps-bench $(BENCHES)
	@bash bench/compare.sh $(B)/bench

# ------------------------------------------------------------ load harness

# chatter-load: the C load harness on the runtime (bench/chatter-load/).
LOAD_SRC := $(wildcard bench/chatter-load/*.c)
$(B)/chatter-load: $(LOAD_SRC) bench/chatter-load/load.h runtime/act.h $(B)/libact.a
	@mkdir -p $(dir $@)
	$(CC) $(RT_CFLAGS) -Iruntime $(LOAD_SRC) $(B)/libact.a $(RT_LIBS) -lm -o $@

.PHONY: chatter-load bench-chat test-harness
chatter-load: $(B)/chatter-load

# The harness's smoke test (about 10 s): self-test, bad options, 50 sessions.
test-harness: $(B)/chatter-load $(B)/chatter
	@export DATABASE_URL="$${DATABASE_URL:-$$(bash sql/devdb.sh url)}"; \
	 bash bench/chatter-load/smoke.sh $(B)/chatter-load $(B)/chatter

# Every scenario against Chatter, the Node peer and the kernel floor, one
# table, kept in bench/RESULTS.md.  BENCH_ARGS="--small" for a quick run.
bench-chat: deps db-start
	$(MAKE) --no-print-directory $(B)/chatter $(B)/chatter-load
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  $(call apt_ensure_cmd,nodejs npm) }
	BENCH_ARGS="$(BENCH_ARGS)" bash bench/chatter-load/bench-chat.sh $(BENCH_ARGS)

install: $(B)/chatter
	install -D -m 755 $(B)/chatter $(DESTDIR)$(PREFIX)/bin/chatter

clean:
	rm -rf _build

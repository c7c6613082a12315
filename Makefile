# covet-pipe: `make run` serves the example app behind the pipeline; `make test` passes the tests.
# Each target creates .venv when it is missing and (re)compiles the Cython core when it changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.covet-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
FUZZ_SECONDS ?= 60

.PHONY: all build redis chromium run run-uvicorn test bench bench-native bench-micro bench-e2e bench-gzip bench-sandbox bench-reload bench-serve bench-resp bench-metrics bench-redis scale authorkit typecheck clean debug fuzz-native conformance resp-conformance

all: build

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip "setuptools>=77" wheel "cython>=3.1,<4"
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e ".[dev]"
	touch $(STAMP)

build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# COVET_PIPE_DEBUG=1 makes setup.py cythonize with annotate (an .html beside each .pyx) and linetrace;
# it is an environment switch for the build only (no C macro of that name reaches the sources).
debug: $(STAMP)
	COVET_PIPE_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

run: build
	$(VENV)/bin/covet-pipe serve examples.app:app --host $(HOST) --port $(PORT)

# The same example embedded in uvicorn (uvloop + httptools) instead of covet-pipe's own listener.
run-uvicorn: build
	$(PY) -m uvicorn examples.app:app --host $(HOST) --port $(PORT) --loop uvloop --http httptools

# redis-server (and redis-cli, redis-benchmark) for the RESP protocol's differential tests:
# the tests start their own on a free 127.0.0.1 port.
redis: 
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# Debian's chromium for the dashboard's browser tests (Python Playwright drives it with executable_path;
# Playwright's own browser download is not used).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The type check runs first: it takes seconds and names the file and line of any error. The 20 slowest
# tests are listed at the end, to keep the suite within its 20-minute budget.
test: build redis chromium typecheck
	$(PY) -m pytest -q --durations=20

# uvicorn's own tests/protocols/test_http.py (from the sdist of the uvicorn installed here, pip-downloaded
# into build/ once) against covet_pipe.server.http11:UvicornHTTP; not part of `make test`.
conformance: build
	$(PY) tests/conformance/run_uvicorn.py

# redis-py's own string/key command and connection tests (from the sdist of the redis-py installed here,
# pip-downloaded into build/ once), against a real redis-server and our RESP port over MemoryStorage, in
# RESP2 and RESP3; every test that passes on redis-server must pass on ours or be listed with its reason.
# The same again with our port over RedisStorage (on a second redis-server). Then cachelib's own RedisCache
# tests (pinned, in a venv of its own under build/), the same way (~5 min in all).
resp-conformance: build redis
	$(PY) tests/conformance/run_redispy.py
	$(PY) tests/conformance/run_redispy.py --engine=redis
	$(PY) tests/conformance/run_cachelib.py

# schemathesis (pinned, in a venv of its own under build/ so that its pytest plugin and hypothesis stay out
# of the test venv) against the admin API served by uvicorn on 127.0.0.1, every check on,
# ADMIN_FUZZ_EXAMPLES per operation; fails on any finding (a 500, an undocumented status, a schema
# violation). Not part of `make test`. About 30 s.
ADMIN_FUZZ_EXAMPLES ?= 100
ADMIN_FUZZ_SEED ?= 16
ADMIN_FUZZ_EXCLUDE ?=
SCHEMATHESIS := build/admin-fuzz/bin/st
.PHONY: admin-fuzz
admin-fuzz: build
	test -x $(SCHEMATHESIS) || ($(PYTHON) -m venv build/admin-fuzz && \
		build/admin-fuzz/bin/pip install -q --disable-pip-version-check "schemathesis==4.32.5")
	$(PY) fuzz/fuzz_admin_api.py --st $(SCHEMATHESIS) --max-examples $(ADMIN_FUZZ_EXAMPLES) --seed $(ADMIN_FUZZ_SEED) \
		$(foreach p,$(ADMIN_FUZZ_EXCLUDE),--exclude-path $(p))

# Fuzz the native loader's checks (ELF header, descriptor) with atheris for FUZZ_SECONDS.
fuzz-native: build
	mkdir -p build/fuzz
	$(PY) fuzz/fuzz_native_loader.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
		-artifact_prefix=build/fuzz/

# mypy --strict over the package (settings in pyproject.toml's [tool.mypy]), then over the typing
# examples; then stubtest compares the stubs of the compiled modules (the core, the HTTP/1.1
# connection) with the modules (the differences that stay are listed, with their reasons, in the
# allowlist).
typecheck: build
	$(PY) -m mypy
	$(PY) -m mypy --strict tests/typing/examples.py
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml --allowlist tests/typing/stubtest-allowlist.txt \
		covet_pipe._core covet_pipe.server.http11._http11 covet_pipe.server.resp._resp

bench: build
	mkdir -p benchmarks/results
	rm -f benchmarks/results/layers.json benchmarks/results/micro.json benchmarks/results/native.json
	$(PY) benchmarks/bench_layers.py --fast --quiet -o benchmarks/results/layers.json
	$(PY) -m pytest -q benchmarks/test_micro.py --benchmark-only --benchmark-columns=min,median,ops \
		--benchmark-json benchmarks/results/micro.json
	$(PY) benchmarks/report.py benchmarks/results/layers.json --micro benchmarks/results/micro.json
	$(PY) benchmarks/bench_native.py --fast --quiet -o benchmarks/results/native.json

bench-native: build
	mkdir -p benchmarks/results
	rm -f benchmarks/results/native.json
	$(PY) benchmarks/bench_native.py --fast --quiet -o benchmarks/results/native.json

bench-reload: build
	$(PY) benchmarks/bench_reload.py

bench-micro: build
	$(PY) -m pytest -q benchmarks/test_micro.py --benchmark-only

# uvicorn under wrk (bare, 10 plugins, 10 Starlette layers), then callgrind's instructions per request on the
# served and the stepped path (~5 min; longer on a busy machine, where disturbed runs are measured again).
bench-e2e: build
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	$(PY) benchmarks/e2e_wrk.py

# covet-pipe's GZip plugin vs Starlette's GZipMiddleware on a 64 KiB response, uvicorn under wrk, levels 9
# and 1 (~2 min); writes the "gzip" section of docs/benchmarks.md.
bench-gzip: build
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) benchmarks/bench_gzip.py

# covet-pipe serve vs uvicorn+httptools vs granian vs nginx under wrk, bare app and 10 no-op plugins (~3 min).
bench-serve: build
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx-light)
	$(PY) -c "import granian" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check granian
	$(PY) benchmarks/bench_serve.py

# `covet-pipe serve` with 10 plugins under wrk, PrometheusMetrics on vs off in paired rounds (the ratios of req/s
# and of server CPU per request, goal within 2%), one scrape's time over 100 plugins, and callgrind's instructions
# per served request off and on (~6 min); writes the "metrics" section of docs/benchmarks.md.
bench-metrics: build
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind)
	$(PY) benchmarks/bench_metrics.py

# The sandboxed hook call against a raw socketpair ping-pong, latency and 64-in-flight throughput (~1 min).
bench-sandbox: build
	mkdir -p benchmarks/results
	$(PY) benchmarks/bench_sandbox.py -o benchmarks/results/sandbox.json

clean:
	rm -rf build covet_pipe/*.so covet_pipe/_core.c covet_pipe/*.html covet_pipe/server/http11/*.so \
		covet_pipe/server/http11/_http11.c covet_pipe/server/http11/*.html \
		covet_pipe/server/resp/*.so covet_pipe/server/resp/_resp.c covet_pipe/server/resp/*.html

# The long checks across worker processes and "hosts" (tests/scale: 30 s rate-limit runs, reload storms)
# against a real redis-server (and the author kit's walks below); not part of `make test`.
scale: build redis
	COVET_PIPE_SCALE=1 $(PY) -m pytest -q tests/scale

# The author kit's slow walk: `covet-pipe new --kind cython` -> build -> check -> its own test -> served
# (tests/scale/test_authorkit_cython.py, ~30 s; the other kinds walk in the default suite), and `new --package`
# -> wheel -> a fresh venv with the covet-pipe wheel built from this checkout -> served (minutes: it builds it).
authorkit: build
	COVET_PIPE_SCALE=1 $(PY) -m pytest -q tests/scale/test_authorkit_cython.py tests/scale/test_authorkit_package.py

# redis-benchmark -t set,get,incr,mset -n 200000 -c 50, -P 1 and -P 16, against the RESP protocol (bare, behind
# 1 and behind 10 no-op plugins) and a real redis-server in the same run (~15 min for 3 rounds on a busy 2-core
# machine; a command ours does not know is "unsupported"); writes the "resp" section of docs/benchmarks.md.
bench-resp: build redis
	$(PY) benchmarks/bench_resp.py

# The Redis benchmarks, same redis-server, same run (one line per script): RedisStorage get/set latency and
# throughput (50 tasks) vs raw redis-py asyncio (~2 min, the "redis-storage" section of docs/benchmarks.md);
# the latency a rate limiter adds per request, RateLimit in memory and in Redis beside slowapi (the limits
# library) on the same Starlette app (~1 min, the "ratelimit" section).
bench-redis: build redis
	$(PY) benchmarks/bench_redis_storage.py
	$(PY) benchmarks/bench_rate_limit.py

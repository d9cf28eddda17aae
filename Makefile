# Quick start on a fresh Debian machine: `make demo` and `make test`.
# Both do every set-up step themselves; each step is idempotent.

# Debian's own interpreter starts ~2x faster than a pyenv build (docs/performance.md).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT    := DEBIAN_FRONTEND=noninteractive apt-get
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup venv browsers chromium firefox lint unit e2e test demo bench clean package

setup: venv browsers

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq python3-venv; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

browsers: chromium firefox

chromium:
	@test -x /usr/bin/chromium || { echo "installing chromium (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq chromium >/dev/null; } || echo "WARNING: chromium could not be installed; browser tests will be skipped"

firefox:
	@command -v firefox-esr >/dev/null || { echo "installing firefox-esr (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq firefox-esr >/dev/null; } || echo "WARNING: firefox-esr could not be installed; Firefox tests will be skipped"

lint: venv
	$(VENV)/bin/ruff check host fake_site testkit tests bench demo extension
	@mkdir -p .typecheck && ln -sfn ../host .typecheck/flattr_host && ln -sfn ../fake_site .typecheck/fake_flattr && ln -sfn ../testkit .typecheck/flattr_testing
	MYPYPATH=.typecheck $(VENV)/bin/mypy --strict -p flattr_host -p fake_flattr -p flattr_testing

unit: venv
	$(PY) -m pytest tests/unit -q

e2e: setup
	$(PY) -m pytest tests/e2e -q

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(PY) demo/run.py $(if $(BROWSER),--browser $(BROWSER),)

bench: venv chromium
	$(PY) bench/run.py

package: venv
	$(PY) extension/package.py

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts

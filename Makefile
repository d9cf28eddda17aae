# Quick start on a fresh Debian machine: `make demo` and `make test`.
# Both do every set-up step themselves; each step is idempotent.

# Debian's own interpreter starts ~2x faster than a pyenv build (docs/performance.md).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT    := DEBIAN_FRONTEND=noninteractive apt-get
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# JavaScript tools (addons-linter for `make lint`, axe-core for the e2e accessibility
# audit): versions pinned in tools/npm/package-lock.json, installed into .npm-tools/
# only, never globally (docs/dependencies.md).
NPM_TOOLS := .npm-tools
NPM_STAMP := $(NPM_TOOLS)/.installed

.PHONY: setup venv browsers chromium firefox keyring npm-tools lint unit jstest e2e test demo bench clean package wheel

setup: venv browsers keyring npm-tools

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq python3-venv; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[fake-site,test]'
	@touch $@

npm-tools: $(NPM_STAMP)

$(NPM_STAMP): tools/npm/package.json tools/npm/package-lock.json
	@command -v npm >/dev/null || { echo "installing npm (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq npm >/dev/null; }
	@mkdir -p $(NPM_TOOLS)
	cp tools/npm/package.json tools/npm/package-lock.json $(NPM_TOOLS)/
	npm ci --prefix $(NPM_TOOLS) --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

browsers: chromium firefox

chromium:
	@test -x /usr/bin/chromium || { echo "installing chromium (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq chromium >/dev/null; } || echo "WARNING: chromium could not be installed; browser tests will be skipped"

firefox:
	@command -v firefox-esr >/dev/null || { echo "installing firefox-esr (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq firefox-esr >/dev/null; } || echo "WARNING: firefox-esr could not be installed; Firefox tests will be skipped"

# A real Secret Service for the keyring tests (tests/support/secret_service.py):
# gnome-keyring on a private session bus started by the tests with dbus-run-session.
keyring:
	@{ command -v gnome-keyring-daemon && command -v dbus-run-session && command -v secret-tool; } >/dev/null || { echo "installing gnome-keyring (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq gnome-keyring libsecret-tools dbus >/dev/null; } || echo "WARNING: gnome-keyring could not be installed; Secret Service tests will be skipped"

lint: venv npm-tools
	$(VENV)/bin/ruff check host fake_site testkit tests bench demo extension tools
	@mkdir -p .typecheck && ln -sfn ../host .typecheck/flattr_host && ln -sfn ../fake_site .typecheck/fake_flattr && ln -sfn ../testkit .typecheck/flattr_testing
	MYPYPATH=.typecheck $(VENV)/bin/mypy --strict -p flattr_host -p fake_flattr -p flattr_testing
	$(PY) tools/lint_extension.py

unit: venv
	$(PY) -m pytest tests/unit -q

# The extension's JavaScript under Node's own test runner (no npm packages): the
# shared protocol cases (tests/data/protocol_cases.json) against lib/validate.js.
NODE ?= $(shell test -x /usr/bin/node && echo /usr/bin/node || command -v node)
jstest:
	@test -n "$(NODE)" || command -v node >/dev/null || { echo "installing nodejs (apt)"; $(SUDO) $(APT) update -qq && $(SUDO) $(APT) install -y -qq nodejs >/dev/null; }
	$(or $(NODE),node) --test tests/js/*.test.js

e2e: setup
	$(PY) -m pytest tests/e2e -q

# pytest also runs node --test (tests/unit/test_protocol_cases.py); jstest has just
# run it, so it is skipped there.
test: setup lint jstest
	FLATTR_JSTEST_DONE=1 $(PY) -m pytest -q

demo: setup
	$(PY) demo/run.py $(if $(BROWSER),--browser $(BROWSER),)

bench: venv chromium
	$(PY) bench/run.py

package: venv
	$(PY) extension/package.py

# The Python package (host, fake site, templates, the unpacked extension) as a wheel
# in dist/, built offline with the venv's setuptools (docs/install.md).
wheel: venv
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts $(NPM_TOOLS)

# Two entry points: `make demo` and `make test`. Both create .venv when missing
# and install everything (system packages too when run as root).
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

APT_PKGS := libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri libgl1

.PHONY: demo test test-slow bench setup sysdeps clean

setup: $(STAMP)

sysdeps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "apt: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi

$(STAMP): pyproject.toml setup.py sim/_native.c
	@$(MAKE) --no-print-directory sysdeps
	@[ -x $(VPY) ] || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/physcut run rooftop_chase -o out/demo --generator builtin

test: $(STAMP)
	$(VPY) -m pytest -q -n 2 --durations=15

test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow

bench: $(STAMP)
	$(VENV)/bin/physcut bench all

clean:
	rm -rf out .pytest_cache

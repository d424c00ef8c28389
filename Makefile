# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (Python 3.11) and install gearshift with its pinned dependencies if needed,
# plus the Debian cross compiler for ARM targets.

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup system-deps demo test sweep clean

setup: $(STAMP) system-deps

$(STAMP):
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	@rm -f $(VENV)/.installed-*; touch $@

# ARM targets link with Debian's aarch64 cross compiler; the ARM kernel tests run under qemu-user.
system-deps:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || { \
	  echo "installing gcc-aarch64-linux-gnu and qemu-user (Debian) for ARM targets"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user >/dev/null; }

demo: setup
	$(PY) -m gearshift.cli demo

test: setup
	$(PY) -m pytest -q

# The whole architecture sweep (tests/test_sweep.py runs its fast tier): benchmarks/results/sweep.{json,md}
sweep: setup
	cd benchmarks && ../$(PY) sweep.py

clean:
	rm -rf out .pytest_cache

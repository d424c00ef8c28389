# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (Python 3.11) and install gearshift with its pinned dependencies if needed,
# plus the Debian cross compiler for ARM targets and pocl (an OpenCL on the CPU) for GPU targets.

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup system-deps arm-env demo test test-arm sweep fuzz clean

setup: $(STAMP) system-deps

$(STAMP):
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,bench]"
	@rm -f $(VENV)/.installed-*; touch $@

# ARM targets link with Debian's aarch64 cross compiler; the ARM kernel tests run under qemu-user.
# GPU targets' OpenCL kernels run on pocl, a CPU OpenCL implementation (gearshift check-gpu, the GPU tests).
system-deps:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null \
	  && test -e /etc/OpenCL/vendors/pocl.icd || { \
	  echo "installing gcc-aarch64-linux-gnu, qemu-user and pocl-opencl-icd (Debian) for ARM and GPU targets"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq gcc-aarch64-linux-gnu \
	    qemu-user pocl-opencl-icd ocl-icd-libopencl1 >/dev/null; }

# The emulated aarch64 phone (runtime/emulated.py): Debian arm64 + TVM's aarch64 wheels, run under
# qemu-user; built once under ~/.cache/gearshift (or $$GEARSHIFT_ARM_ROOT), rebuilt when its recipe changes.
arm-env: setup
	@command -v mmdebstrap >/dev/null || { \
	  echo "installing mmdebstrap (Debian) for the emulated phone"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mmdebstrap >/dev/null; }
	$(PY) -m gearshift.cli device setup

demo: setup
	$(PY) -m gearshift.cli demo

# GEARSHIFT_REQUIRE_ARM / _OPENCL: the emulated-phone and GPU tests fail instead of skipping when the
# phone or pocl is missing.
test: setup arm-env
	GEARSHIFT_REQUIRE_ARM=1 GEARSHIFT_REQUIRE_OPENCL=1 $(PY) -m pytest -q

# The emulated-phone tier alone (tests marked `arm`: tests/test_phone.py).
test-arm: setup arm-env
	GEARSHIFT_REQUIRE_ARM=1 $(PY) -m pytest -q -m arm

# The whole architecture sweep (tests/test_sweep.py runs its fast tier): benchmarks/results/sweep.{json,md}
sweep: setup
	cd benchmarks && ../$(PY) sweep.py

# Coverage-guided fuzzing (atheris) of every file gearshift reads, FUZZ_SECONDS per target; the corpus
# (fuzz/corpus/, with every crash found as regression-*) is replayed by `make test` (tests/test_fuzz.py).
FUZZ_SECONDS ?= 60
fuzz: setup
	$(PY) -m pip install -q -e ".[fuzz]"
	@mkdir -p out; for t in $$($(PY) -c "from gearshift.fuzz.targets import TARGETS; print(*TARGETS)"); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s (log: out/fuzz-$$t.log)"; \
	  $(PY) -m gearshift.fuzz.run $$t --seconds $(FUZZ_SECONDS) > out/fuzz-$$t.log 2>&1; rc=$$?; \
	  grep -E "number_of_executed_units" out/fuzz-$$t.log; \
	  test $$rc = 0 || { tail -40 out/fuzz-$$t.log; exit 1; }; done

clean:
	rm -rf out .pytest_cache

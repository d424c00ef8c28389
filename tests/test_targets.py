"""Every named target builds; ARM artifacts are real aarch64 shared objects; GPU ones carry OpenCL kernels."""

from __future__ import annotations

import shutil
import struct

import pytest

import gearshift
from gearshift.errors import TargetError
from gearshift.schedules.targets import get_target, target_names

EM_AARCH64, EM_X86_64, ET_DYN = 183, 62, 3


def elf_header(path) -> dict:
    data = path.read_bytes()[:64]
    assert data[:4] == b"\x7fELF", "not an ELF file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    return {"class64": data[4] == 2, "little_endian": data[5] == 1, "type": e_type, "machine": e_machine}


def dynamic_symbols(path) -> set[str]:
    """Names in the ELF's dynamic symbol table (parsed here, so no binutils for the target is needed)."""
    data = path.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != 11:  # SHT_DYNSYM
            continue
        strtab_offset = sections[link][4]
        for i in range(size // entsize):
            st_name, = struct.unpack_from("<I", data, offset + i * entsize)
            end = data.index(b"\0", strtab_offset + st_name)
            names.add(data[strtab_offset + st_name:end].decode())
    return names


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="needs Debian's gcc-aarch64-linux-gnu")
@pytest.mark.parametrize("target", ["arm-a53", "arm-a76", "mali-g76", "adreno-640"])
def test_arm_artifacts_are_aarch64_shared_objects(target, mlp_onnx, tmp_path):
    art = gearshift.compile(mlp_onnx, target, tmp_path / target)
    header = elf_header(art.library)
    assert header == {"class64": True, "little_endian": True, "type": ET_DYN, "machine": EM_AARCH64}
    symbols = dynamic_symbols(art.library)
    assert "__tvm_ffi__library_bin" in symbols  # what TVM's loader looks for
    if get_target(target).is_gpu:
        assert b"__kernel" in art.library.read_bytes()  # OpenCL C for the GPU, embedded
    else:
        assert any(s.startswith("__tvm_ffi_") and "gs_dense" in s for s in symbols)  # the packed dense kernel
    with pytest.raises(TargetError, match="aarch64"):
        gearshift.Session(art)


def test_host_artifact_is_native(mlp_onnx, tmp_path):
    art = gearshift.compile(mlp_onnx, "host", tmp_path / "host")
    assert elf_header(art.library)["machine"] in (EM_X86_64, EM_AARCH64)


def test_target_registry():
    assert target_names() == ["host", "arm-a53", "arm-a76", "mali-g76", "adreno-640", "x86-avx2", "x86-avx512", "vta-sim"]
    assert get_target("x86-avx512").config["mcpu"] == "skylake-avx512" and get_target("x86-avx2").arch == "x86_64"
    a76 = get_target("arm-a76")
    assert a76.config["mtriple"] == "aarch64-linux-gnu" and "+dotprod" in a76.config["mattr"]
    assert "+dotprod" not in get_target("arm-a53").config["mattr"]
    assert get_target("mali-g76").tvm_target().kind.name == "opencl"
    assert get_target("host").config["num-cores"] >= 1
    with pytest.raises(TargetError, match="known targets: host, arm-a53"):
        get_target("arm-a77")


def test_x86_isa_artifacts(mlp_onnx, tmp_path, monkeypatch):
    """An x86-avx2 artifact runs on any of the project's x86 machines; an x86-avx512 one is refused
    by name on a CPU without AVX-512 (simulated here by the flags the session reads), not run into
    an illegal instruction."""
    import platform

    import numpy as np

    import gearshift.runtime.cpu as cpu

    if platform.machine() != "x86_64" or "avx2" not in cpu.cpu_flags():
        pytest.skip("needs an x86-64 CPU with AVX2")
    x = {"x": np.random.default_rng(3).standard_normal((3, 64)).astype(np.float32)}
    avx2 = gearshift.Session(gearshift.compile(mlp_onnx, "x86-avx2", tmp_path / "avx2")).run(x)["y"]
    host = gearshift.Session(gearshift.compile(mlp_onnx, "host", tmp_path / "host")).run(x)["y"]
    np.testing.assert_allclose(avx2, host, atol=1e-5, rtol=1e-5)
    art = gearshift.compile(mlp_onnx, "x86-avx512", tmp_path / "avx512")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma", "sse4_2"}))
    with pytest.raises(TargetError, match="avx512f"):
        gearshift.Session(art)

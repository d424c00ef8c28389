"""Run gearshift's generated OpenCL without a phone: TVM writes the kernels' source, pocl runs it.

TVM's wheel has no OpenCL runtime, but the OpenCL C it generates for Mali and Adreno is plain
OpenCL. A kernel function (a TIR PrimFunc with thread bindings) is lowered by TVM's own pipeline for
the GPU target; just before the host side is turned into packed-call code, its host function still
says, in order, which device kernels it launches, with which buffers and with what grid. That list
(`Program.launches`) plus the device source (`Program.source`) is all a launcher needs: `Pocl` runs
it through `pyopencl` on any OpenCL implementation, here pocl on the CPU. Nothing is emulated:
the kernels that run are the ones a phone would get; only the timings mean nothing (a CPU runs them).

`pyopencl` and an OpenCL implementation are optional: `available()` says whether this machine has
them, and everything that needs them raises `OpenCLUnavailable` with a one-line reason otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import tirx
from tvm.tirx.build import codegen_build, split_host_device_mods

from gearshift.errors import GearshiftError


class OpenCLUnavailable(GearshiftError):
    """This machine cannot run OpenCL (no pyopencl, or no OpenCL platform such as pocl)."""


class UnsupportedHostCode(GearshiftError):
    """A kernel function's host side does more than launch kernels in sequence (a host loop, a branch)."""


@dataclass(frozen=True)
class Launch:
    kernel: str
    args: tuple  # per kernel argument: ("param", i) | ("workspace", i) | ("scalar", value, dtype)
    grid: tuple[int, int, int]  # work-groups per dimension
    block: tuple[int, int, int]  # work-items per work-group


@dataclass(frozen=True)
class Program:
    """A kernel function as OpenCL: its source, its parameters and the launches that compute it."""

    name: str
    source: str
    params: tuple  # (shape, dtype) per PrimFunc parameter
    workspaces: tuple  # bytes per global buffer the host allocates between launches
    launches: tuple

    @property
    def launch_sizes(self) -> list[tuple[str, tuple, tuple]]:
        """(kernel, work-groups per dimension, work-items per work-group) per launch, in order."""
        return [(launch.kernel, launch.grid, launch.block) for launch in self.launches]


_AXES = {"blockIdx.x": (0, 0), "blockIdx.y": (0, 1), "blockIdx.z": (0, 2),
         "threadIdx.x": (1, 0), "threadIdx.y": (1, 1), "threadIdx.z": (1, 2)}


def opencl_program(func: tirx.PrimFunc, target: tvm.target.Target, name: str = "main") -> Program:
    """Lower `func` (scheduled, static shapes) for the OpenCL `target` and return its Program."""
    func = func.with_attr("global_symbol", name)
    mod = tvm.IRModule({name: func})
    mod = tirx.transform.BindTarget(target.with_host(target.host or "llvm"))(mod)
    captured: dict = {}

    @tvm.instrument.pass_instrument
    class _BeforePackedAPI:  # the host function while it still takes buffers and launches kernels
        def run_before_pass(self, module, info):
            if info.name.endswith("MakePackedAPI"):
                captured["mod"] = module

    pipeline = tirx.get_default_tir_pipeline(target)
    if isinstance(pipeline, tuple):
        pipeline, device_passes = pipeline[0], pipeline[2]
    else:  # the Adreno pipeline (texture passes first) comes alone; its device passes are TVM's default ones
        from tvm.s_tir.pipeline import finalize_device_passes as device_passes
    with target, tvm.transform.PassContext(opt_level=3, instruments=[_BeforePackedAPI()]):
        lowered = pipeline(mod)
        _host, devices = split_host_device_mods(lowered)
        sources = [codegen_build(device_passes()(dmod), t).inspect_source()
                   for t, dmod in devices.items() if len(dmod.functions)]
    host = captured["mod"][name]
    params = tuple((tuple(int(d) for d in p.shape), str(p.dtype)) for p in host.params)  # (buffer parameters)
    data = {p: i for i, p in enumerate(host.params)}
    launches, workspaces = _launches(host, data)
    return Program(name, "\n".join(sources), params, tuple(workspaces), tuple(launches))


def _launches(host: tirx.PrimFunc, data: dict) -> tuple[list[Launch], list[int]]:
    calls, control, allocs, aliases = [], [], {}, []  # aliases: (declared buffer, the buffer it views)

    def walk(stmt):  # TVM 0.27 exposes no TIR visitor to Python; the host side is a few statement kinds
        if isinstance(stmt, tirx.SeqStmt):
            for child in stmt.seq:
                walk(child)
            return
        if isinstance(stmt, tirx.Evaluate) and isinstance(stmt.value, tvm.ir.Call) \
                and getattr(stmt.value.op, "name", "") == "tirx.call_ffi_kernel":
            calls.append(stmt.value)
        elif isinstance(stmt, (tirx.For, tirx.While, tirx.IfThenElse)):
            control.append(type(stmt).__name__)
        elif isinstance(stmt, tirx.AllocBuffer):
            buf = stmt.buffer
            allocs[buf] = int(np.prod([int(d) for d in buf.shape])) * tvm.DataType(buf.dtype).bits // 8
        elif isinstance(stmt, tirx.DeclBuffer) and _viewed(stmt.data) is not None:
            aliases.append((stmt.buffer, _viewed(stmt.data)))
        for part in ("body", "then_case", "else_case"):
            child = getattr(stmt, part, None)
            if isinstance(child, tirx.Stmt):
                walk(child)

    walk(host.body)
    if control and calls:
        raise UnsupportedHostCode(f"the host side of {host.attrs.get('global_symbol', 'a kernel')} has a "
                                  f"{control[0]} around its launches; the OpenCL launcher runs straight-line hosts only")
    workspace = {var: i for i, var in enumerate(allocs)}
    data = dict(data)
    launches = []
    for call in calls:
        tags = [str(t) for t in call.attrs.launch_params] if call.attrs is not None else []
        kernel, rest = str(call.args[0].value), list(call.args[1:])
        extents = rest[len(rest) - len(tags):] if tags else []
        grid, block = [1, 1, 1], [1, 1, 1]
        for tag, extent in zip(tags, extents):
            if tag not in _AXES or not isinstance(extent, tirx.IntImm):
                raise UnsupportedHostCode(f"kernel {kernel}: launch parameter {tag} = {extent} is not a constant "
                                          "thread extent")
            which, dim = _AXES[tag]
            (grid, block)[which][dim] = int(extent.value)
        args = []
        for arg in rest[:len(rest) - len(tags)]:
            buffer = _viewed(arg)
            while buffer is not None and (seen := _find(dict(aliases), buffer)) is not None:
                buffer = seen
            param = _find(data, buffer) if buffer is not None else None
            space = _find(workspace, buffer) if buffer is not None else None
            if param is not None:
                args.append(("param", param))
            elif space is not None:
                args.append(("workspace", space))
            elif isinstance(arg, (tirx.IntImm, tirx.FloatImm)):
                args.append(("scalar", arg.value, str(arg.dtype)))
            else:
                raise UnsupportedHostCode(f"kernel {kernel}: argument {arg} is neither a buffer nor a constant")
        launches.append(Launch(kernel, tuple(args), tuple(grid), tuple(block)))
    return launches, list(allocs.values())


def _find(table: dict, var):
    """table[var] by identity (a TIR Var's == builds an expression instead of comparing)."""
    return next((value for key, value in table.items() if key.same_as(var)), None)


def _viewed(expr):
    """The buffer whose data pointer `expr` is (`buf.data`), else None."""
    if isinstance(expr, tvm.ir.Call) and getattr(expr.op, "name", "") == "tirx.buffer_data":
        return expr.args[0]
    return None


# -- running on an OpenCL implementation (pocl here) ----------------------------------------------
@functools.lru_cache(maxsize=1)
def _context():
    try:
        import pyopencl as cl
    except ImportError as err:
        raise OpenCLUnavailable("pyopencl is not installed (pip install pyopencl; `make setup` does)") from err
    try:
        platforms = cl.get_platforms()
    except cl.Error as err:  # no ICD at all
        raise OpenCLUnavailable(f"no OpenCL platform on this machine ({err}); install Debian's pocl-opencl-icd") from err
    devices = [d for p in platforms for d in p.get_devices()]
    if not devices:
        raise OpenCLUnavailable("no OpenCL device on this machine; install Debian's pocl-opencl-icd")
    ctx = cl.Context([devices[0]])
    return cl, ctx, cl.CommandQueue(ctx), devices[0]


def available() -> str | None:
    """None when OpenCL programs can run here, else why not (one line)."""
    try:
        _context()
    except OpenCLUnavailable as err:
        return str(err)
    return None


def device_name() -> str:
    _cl, _ctx, _queue, device = _context()
    return f"{device.platform.name.strip()} {device.name.strip()}"


class Pocl:
    """Runs Programs on this machine's first OpenCL device; compiled programs are kept by source."""

    def __init__(self):
        self.cl, self.ctx, self.queue, self.device = _context()
        self._built: dict[str, object] = {}
        self._kernels: dict[tuple[str, str], object] = {}

    def _program(self, source: str):
        if source not in self._built:
            self._built[source] = self.cl.Program(self.ctx, source).build()
        return self._built[source]

    def buffer(self, array: np.ndarray):
        mf = self.cl.mem_flags
        array = np.ascontiguousarray(array)
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=array) if array.nbytes else \
            self.cl.Buffer(self.ctx, mf.READ_WRITE, 4)

    def run(self, program: Program, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run `program` on `arrays` (one per parameter, outputs included: their contents are the
        initial values) and return every parameter's array afterwards."""
        if len(arrays) != len(program.params):
            raise ValueError(f"{program.name}: {len(program.params)} arrays expected, got {len(arrays)}")
        for i, ((shape, dtype), a) in enumerate(zip(program.params, arrays)):
            if tuple(a.shape) != shape or str(a.dtype) != dtype:
                raise ValueError(f"{program.name}: argument {i} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")
        buffers = [self.buffer(a) for a in arrays]
        workspaces = [self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, max(size, 4)) for size in program.workspaces]
        built = self._program(program.source)
        for launch in program.launches:
            kernel = self._kernels.get((program.source, launch.kernel))
            if kernel is None:
                kernel = self._kernels[(program.source, launch.kernel)] = self.cl.Kernel(built, launch.kernel)
            args = []
            for arg in launch.args:
                if arg[0] == "param":
                    args.append(buffers[arg[1]])
                elif arg[0] == "workspace":
                    args.append(workspaces[arg[1]])
                else:
                    args.append(np.array(arg[1], dtype=arg[2]))
            global_size = tuple(g * b for g, b in zip(launch.grid, launch.block))
            kernel(self.queue, global_size, launch.block, *args)
        out = [np.empty(a.shape, a.dtype) for a in arrays]
        for host, buf in zip(out, buffers):
            if host.nbytes:
                self.cl.enqueue_copy(self.queue, host, buf)
        self.queue.finish()
        return out

"""The simulated VTA-style accelerator: configuration, instruction encoding, the functional simulator
(bit-exact against numpy and against a naive second interpreter), the cycle model's direction, the
quantised dense and block-sparse lowering, and named errors for malformed streams and configurations."""

from __future__ import annotations

import numpy as np
import pytest
import vta_reference

from gearshift.runtime.vta import isa
from gearshift.runtime.vta.config import DEFAULT, VtaConfig, VtaConfigError, config_from_json
from gearshift.runtime.vta.simulator import DeadlockError, Simulator, VtaExecutionError
from gearshift.schedules.vta.matmul import lower_matmul
from gearshift.schedules.vta.quantize import quantize_linear, reference

C = DEFAULT
SMALL = VtaConfig(uop_buffer_bytes=1024, inp_buffer_bytes=1024, wgt_buffer_bytes=8192, acc_buffer_bytes=8192)


# -- configuration ---------------------------------------------------------------------------------
def test_default_is_vtas_published_configuration():
    assert (C.batch, C.block_in, C.block_out, C.inp_bits, C.wgt_bits, C.acc_bits) == (1, 16, 16, 8, 8, 32)
    assert (C.inp_depth, C.wgt_depth, C.acc_depth, C.uop_depth) == (2048, 1024, 2048, 8192)
    assert config_from_json('{"dram_bytes_per_cycle": 16}').dram_bytes_per_cycle == 16


@pytest.mark.parametrize("text,field", [('{"block_in": 12}', "block_in"), ('{"inp_bits": 4}', "inp_bits"),
                                        ('{"clock": 100}', "clock"), ('{"acc_buffer_bytes": -1}', "acc_buffer_bytes"),
                                        ('{"batch": "one"}', "batch"), ("{not json", "<json>"), ("[1]", "<json>")])
def test_bad_configurations_are_named(text, field):
    with pytest.raises(VtaConfigError) as err:
        config_from_json(text)
    assert err.value.field == field


# -- instruction encoding --------------------------------------------------------------------------
def random_insn(rng, config=C) -> isa.Insn:
    def bits(n):
        return int(rng.integers(0, 1 << n))

    deps = isa.Deps(*(bool(b) for b in rng.integers(0, 2, 4)))
    kind = rng.integers(0, 4)
    if kind == 0:
        return isa.Mem(int(rng.choice([isa.LOAD, isa.STORE])), int(rng.integers(0, 5)), bits(16), bits(32), bits(16),
                       bits(16), bits(16), bits(4), bits(4), bits(4), bits(4), deps)
    loops = dict(uop_bgn=bits(config.log_uop_depth), uop_end=bits(config.log_uop_depth + 1), iter_out=bits(14),
                 iter_in=bits(14), dst_factor_out=bits(config.log_acc_depth), dst_factor_in=bits(config.log_acc_depth),
                 reset=bool(rng.integers(0, 2)), deps=deps)
    if kind == 1:
        return isa.Gemm(src_factor_out=bits(config.log_inp_depth), src_factor_in=bits(config.log_inp_depth),
                        wgt_factor_out=bits(config.log_wgt_depth), wgt_factor_in=bits(config.log_wgt_depth), **loops)
    if kind == 2:
        return isa.Alu(int(rng.integers(0, 4)), src_factor_out=bits(config.log_acc_depth),
                       src_factor_in=bits(config.log_acc_depth), use_imm=bool(rng.integers(0, 2)),
                       imm=int(rng.integers(-32768, 32768)), **loops)
    return isa.Finish(deps)


def test_encoding_round_trips():
    rng = np.random.default_rng(0)
    insns = [random_insn(rng) for _ in range(2000)]
    assert all(isa.decode(isa.encode(i, C), C) == i for i in insns)
    assert isa.from_bytes(isa.to_bytes(insns, C), C) == insns
    uops = [isa.Uop(int(rng.integers(0, 2048)), int(rng.integers(0, 2048)), int(rng.integers(0, 1024))) for _ in range(500)]
    assert all(isa.decode_uop(isa.encode_uop(u, C), C) == u for u in uops)
    assert all(isa.encode(i, C) < 1 << 128 for i in insns)


def test_encoding_follows_vtas_layout():
    word = isa.encode(isa.Mem(isa.LOAD, isa.MEM_INP, 5, 7, 1, 2, 3, deps=isa.Deps(pop_next=True)), C)
    assert word & 7 == isa.LOAD and (word >> 4) & 1 == 1 and (word >> 7) & 7 == isa.MEM_INP
    assert (word >> 10) & 0xFFFF == 5 and (word >> 26) & 0xFFFFFFFF == 7 and (word >> 64) & 0xFFFF == 1


@pytest.mark.parametrize("word,what", [(5, "unknown opcode"), (7, "unknown opcode"),
                                       (isa.LOAD | (6 << 7), "memory type"), (isa.ALU | (7 << 108), "ALU opcode")])
def test_bad_words_are_named(word, what):
    with pytest.raises(isa.IsaError, match=what):
        isa.decode(word, C)


def test_fields_out_of_range_are_named():
    with pytest.raises(isa.IsaError, match="iter_out"):
        isa.encode(isa.Gemm(0, 1, iter_out=1 << 14), C)
    with pytest.raises(isa.IsaError, match="immediate"):
        isa.encode(isa.Alu(isa.ALU_ADD, 0, 1, imm=40000), C)
    with pytest.raises(isa.IsaError, match="multiple of 16"):
        isa.from_bytes(b"\0" * 17, C)


# -- the simulator, bit-exact ------------------------------------------------------------------------
class Image:
    """A DRAM image with regions at element-aligned offsets (what tests and streams share)."""

    def __init__(self, nbytes: int = 1 << 16):
        self.dram = np.zeros(nbytes, np.uint8)

    def put(self, at: int, array: np.ndarray) -> None:
        raw = np.ascontiguousarray(array).view(np.uint8).ravel()
        self.dram[at:at + raw.size] = raw


def gemm_stream(m: int, kb: int, nb: int, alu: list[tuple[int, int]]) -> list:
    """x [m, kb*16] at DRAM 0, w blocks [nb, kb] at 8192, uops at 40960; y to 49152; then ALU ops with immediates."""
    uops = [isa.Uop(j, q, j * kb + q) for j in range(nb) for q in range(kb)]
    s = [isa.Mem(isa.LOAD, isa.MEM_UOP, 0, 40960 // 4, 1, len(uops), len(uops)),
         isa.Mem(isa.LOAD, isa.MEM_INP, 0, 0, m, kb, kb, deps=isa.Deps(push_next=False)),
         isa.Mem(isa.LOAD, isa.MEM_WGT, 0, 8192 // 256, nb, kb, kb, deps=isa.Deps(push_next=True)),
         isa.Gemm(0, len(uops), iter_out=m, dst_factor_out=nb, src_factor_out=kb, reset=True, deps=isa.Deps(pop_prev=True)),
         isa.Gemm(0, len(uops), iter_out=m, dst_factor_out=nb, src_factor_out=kb)]
    for op, imm in alu:
        s.append(isa.Alu(op, 0, 1, iter_out=m * nb, dst_factor_out=1, imm=imm))
    s += [isa.Alu(isa.ALU_ADD, 0, 1, iter_out=1, imm=0, deps=isa.Deps(push_next=True)),
          isa.Mem(isa.STORE, isa.MEM_OUT, 0, 49152 // 16, m, nb, nb, deps=isa.Deps(pop_prev=True, push_prev=True)),
          isa.Finish(isa.Deps(pop_next=True))]
    return s, uops


@pytest.mark.parametrize("alu", [[], [(isa.ALU_SHR, 6), (isa.ALU_MAX, -128), (isa.ALU_MIN, 127)],
                                 [(isa.ALU_ADD, 1000), (isa.ALU_SHR, -2), (isa.ALU_MIN, 90)]])
def test_gemm_and_alu_match_numpy(alu):
    rng = np.random.default_rng(len(alu))
    m, kb, nb = 5, 3, 2
    x = rng.integers(-128, 128, (m, kb * 16), dtype=np.int8)
    w = rng.integers(-128, 128, (kb * 16, nb * 16), dtype=np.int8)
    stream, uops = gemm_stream(m, kb, nb, alu)
    img = Image()
    img.put(0, x)
    img.put(8192, w.reshape(kb, 16, nb, 16).transpose(2, 0, 3, 1))  # [n block, k block, out, in]
    img.put(40960, np.array([isa.encode_uop(u, C) for u in uops], np.uint32))
    stats = Simulator(C, img.dram).run(stream)
    acc = x.astype(np.int64) @ w.astype(np.int64)
    for op, imm in alu:  # (every |imm| <= 15: SHR's 5-bit amount is the immediate itself)
        acc = {isa.ALU_SHR: lambda a, s=imm: a >> s if s >= 0 else a << -s, isa.ALU_MAX: lambda a, v=imm: np.maximum(a, v),
               isa.ALU_MIN: lambda a, v=imm: np.minimum(a, v), isa.ALU_ADD: lambda a, v=imm: a + v}[op](acc)
    expected = acc.astype(np.int32).astype(np.int8)  # the output buffer's truncation
    got = img.dram[49152:49152 + m * nb * 16].view(np.int8).reshape(m, nb * 16)
    np.testing.assert_array_equal(got, expected)
    assert stats.gemm_cycles == m * kb * nb


def random_stream(rng, config) -> tuple[list, np.ndarray]:
    """A random, well-synchronised stream (each hand-off between modules a token, so program order is an
    execution order) over a random DRAM image: loads with padding, GEMMs, ALU ops, stores."""
    dram = rng.integers(0, 256, 1 << 15).astype(np.uint8)
    uop_words = []
    for _ in range(64):
        uop_words.append(isa.encode_uop(isa.Uop(int(rng.integers(0, 16)), int(rng.integers(0, 16)),
                                                int(rng.integers(0, 16))), config))
    dram[16384:16384 + 256] = np.array(uop_words, np.uint32).view(np.uint8)
    stream = [isa.Mem(isa.LOAD, isa.MEM_UOP, 0, 16384 // 4, 1, 64, 64),
              isa.Mem(isa.LOAD, isa.MEM_ACC, 0, int(rng.integers(0, 64)), 4, 4, 8, 0, 0, 0, 0)]
    for _ in range(int(rng.integers(2, 6))):
        pads = [int(v) for v in rng.integers(0, 2, 4)]
        stream.append(isa.Mem(isa.LOAD, isa.MEM_INP, int(rng.integers(0, 8)), int(rng.integers(0, 512)), 2, 3, 5, *pads))
        stream.append(isa.Mem(isa.LOAD, isa.MEM_WGT, int(rng.integers(0, 8)), int(rng.integers(0, 64)), 2, 2, 2,
                              deps=isa.Deps(push_next=True)))
        bgn = int(rng.integers(0, 60))
        stream.append(isa.Gemm(bgn, bgn + int(rng.integers(0, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3)),
                               *(int(v) for v in rng.integers(0, 3, 6)), reset=bool(rng.random() < 0.1),
                               deps=isa.Deps(pop_prev=True, push_prev=True)))
        stream.append(isa.Alu(int(rng.integers(0, 4)), bgn, bgn + int(rng.integers(1, 4)), int(rng.integers(1, 3)), 1,
                              *(int(v) for v in rng.integers(0, 2, 4)), use_imm=bool(rng.random() < 0.6),
                              imm=int(rng.integers(-20, 20)), deps=isa.Deps(push_next=True)))
        stream.append(isa.Mem(isa.STORE, isa.MEM_OUT, int(rng.integers(0, 8)), int(rng.integers(1000, 1100)), 2, 3, 4,
                              deps=isa.Deps(pop_prev=True, push_prev=True)))
        stream.append(isa.Mem(isa.LOAD, isa.MEM_ACC, 0, int(rng.integers(0, 64)), 1, 2, 2, deps=isa.Deps(pop_next=True)))
    return stream, dram


def test_random_streams_match_a_naive_interpreter():
    rng = np.random.default_rng(7)
    for _ in range(40):  # small buffers: the naive interpreter holds them as Python lists
        stream, dram = random_stream(rng, SMALL)
        stream = _serialise(stream)
        assert isa.from_bytes(isa.to_bytes(stream, SMALL), SMALL) == stream
        ours, theirs = dram.copy(), bytearray(dram.tobytes())
        Simulator(SMALL, ours).run(stream)
        vta_reference.run(stream, SMALL, theirs)
        np.testing.assert_array_equal(ours, np.frombuffer(bytes(theirs), np.uint8))


def _serialise(stream: list) -> list:
    """Balance the tokens: every compute->load token pushed is popped by the next load-module LOAD."""
    out, pending = [], 0
    for insn in stream:
        if isinstance(insn, isa.Mem) and insn.opcode == isa.LOAD and insn.memory_type == isa.MEM_INP and pending:
            insn = isa.Mem(**{**{f: getattr(insn, f) for f in insn.__dataclass_fields__}, "deps": isa.Deps(pop_next=True)})
            pending -= 1
        if isinstance(insn, isa.Gemm) and insn.deps.push_prev:
            pending += 1
        out.append(insn)
    return out


# -- quantised layers --------------------------------------------------------------------------------
@pytest.mark.parametrize("m,k,n", [(3, 40, 24), (16, 768, 256), (7, 100, 50)])
@pytest.mark.parametrize("double_buffer", [True, False])
def test_quantised_dense_layer_is_bit_exact(m, k, n, double_buffer):
    rng = np.random.default_rng(m)
    w, b, x = rng.standard_normal((k, n)) * 0.05, rng.standard_normal(n) * 0.1, rng.standard_normal((m, k))
    layer = quantize_linear(w, b, x)
    x_q = layer.quantize_input(x)
    y_q, stats = lower_matmul(layer, m, C, double_buffer).run(x_q)
    np.testing.assert_array_equal(y_q, reference(x_q, layer))
    y = layer.dequantize_output(y_q)
    assert np.abs(y - (x @ w + b)).max() < 0.05 * np.abs(x @ w + b).max()  # int8 quantisation error, loose
    assert stats.gemm_cycles == m * -(-k // 16) * -(-n // 16)


@pytest.mark.parametrize("density", [0.5, 0.8, 0.9])
def test_block_sparse_layer_skips_zero_blocks_bit_exactly(density):
    rng = np.random.default_rng(int(density * 10))
    m, k, n = 16, 256, 512
    kept = rng.random((n // 16, k // 16)) < density
    w = rng.standard_normal((k, n)) * 0.05
    w.reshape(k // 16, 16, n // 16, 16)[:] *= kept.T[:, None, :, None]
    x = rng.standard_normal((m, k))
    layer = quantize_linear(w, None, x)
    x_q = layer.quantize_input(x)
    y_q, stats = lower_matmul(layer, m, C, kept=kept).run(x_q)
    np.testing.assert_array_equal(y_q, reference(x_q, layer))
    assert stats.gemm_cycles == m * kept.sum()


def test_double_buffering_shows_in_the_cycle_count():
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((768, 1024)) * 0.05, rng.standard_normal((16, 768))
    layer = quantize_linear(w, None, x)
    config = VtaConfig(dram_bytes_per_cycle=32)
    single = lower_matmul(layer, 16, config, double_buffer=False).run(layer.quantize_input(x))[1]
    double = lower_matmul(layer, 16, config, double_buffer=True).run(layer.quantize_input(x))[1]
    assert double.cycles < single.cycles and double.gemm_cycles == single.gemm_cycles


# -- malformed streams ---------------------------------------------------------------------------------
def test_deadlock_is_named():
    with pytest.raises(DeadlockError, match="compute: #0 GEMM"):
        Simulator(C, np.zeros(1024, np.uint8)).run([isa.Gemm(0, 1, deps=isa.Deps(pop_prev=True)), isa.Finish()])


@pytest.mark.parametrize("insn,match", [
    (isa.Mem(isa.LOAD, isa.MEM_INP, 2047, 0, 1, 2, 2), "buffer index 2048 beyond"),
    (isa.Mem(isa.LOAD, isa.MEM_WGT, 0, 100, 1, 1, 1), "DRAM element 100 beyond"),
    (isa.Mem(isa.STORE, isa.MEM_ACC, 0, 0, 1, 1, 1), "stores come from the output buffer"),
    (isa.Gemm(0, 2, iter_out=3000, dst_factor_out=1), "accumulator index 2999 beyond"),
    (isa.Alu(isa.ALU_ADD, 9000, 9001), "outside the micro-op buffer")])
def test_out_of_range_is_named(insn, match):
    with pytest.raises(VtaExecutionError, match=match):
        Simulator(C, np.zeros(256 * 64, np.uint8)).run([insn])


# -- the vta-sim target: whole models ------------------------------------------------------------------
def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / np.linalg.norm(a) / np.linalg.norm(b))


def test_bert_linear_layers_on_the_accelerator(tmp_path):
    """Every linear layer of a BERT-style encoder on the simulated accelerator (int8, calibrated on
    other samples than the ones checked), the rest on the host: cosine >= 0.99 to the float model."""
    import torch

    import gearshift
    from gearshift.cli import main
    from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert
    from gearshift.runtime.device import save_npz

    config = BertConfig()
    module = tiny_bert(config).eval()
    feeds = bert_inputs(config, batch=1, seq_len=32)
    art = gearshift.compile(module, "vta-sim", tmp_path / "bert", example_inputs=feeds,
                            calibration=bert_inputs(config, batch=1, seq_len=32, seed=1))
    assert art.target["accelerator"] == "vta" and "vta/layers.safetensors" in art.manifest["files"]
    session = gearshift.Session(art)
    got = next(iter(session.run(feeds).values()))
    with torch.no_grad():
        expected = module(**{k: torch.tensor(v) for k, v in feeds.items()})
    expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).numpy()
    assert _cosine(got, expected) >= 0.99
    report = session.accelerator_report
    assert len(report["layers"]) == 12 and report["total_cycles"] > sum(r["gemm_cycles"] for r in report["layers"])
    save_npz(tmp_path / "in.npz", feeds)
    assert main(["run", str(art.path), "-i", str(tmp_path / "in.npz")]) == 0


@pytest.mark.parametrize("sparsity,kept", [("bsr:0.75:16x16", 0.25), ("circulant:16", 1.0)])
def test_structured_layers_on_the_accelerator(mlp_onnx, sparsity, kept):
    import gearshift

    built = gearshift.compile_model(mlp_onnx, "vta-sim", sparsity=sparsity)
    layers = [layer for layer in built.report["sparse_layers"] if layer["decision"] == "vta"]
    structured = [layer for layer in layers if layer["block"].startswith(sparsity.split(":")[0])]
    assert len(layers) == 2 and structured, layers  # (96 -> 40 does not divide into 16x16 blocks: dense tiles)
    assert all(abs(layer["density"] - kept) < 0.1 for layer in structured), structured


def test_a_corrupted_accelerator_file_is_refused(mlp_onnx, tmp_path):
    import gearshift
    from gearshift.errors import ArtifactError

    art = gearshift.compile(mlp_onnx, "vta-sim", tmp_path / "mlp")
    data = bytearray((art.path / "vta/layers.safetensors").read_bytes())
    data[-1] ^= 1
    (art.path / "vta/layers.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="vta/layers.safetensors"):
        gearshift.Session(art.path)


def test_levels_and_tuning_say_what_vta_sim_does_not_do(mlp_onnx, tmp_path):
    from gearshift.autotune import sparse_tasks
    from gearshift.errors import InputError
    from gearshift.levels_compiler import compile_levels
    from gearshift.relay_passes.levels import parse_levels
    from gearshift.schedules.targets import get_target

    levels = parse_levels({"form": "runtime", "levels": [{"name": "a", "sparsity": "bsr:0.5:16x16"}]})
    with pytest.raises(InputError, match="RT3 levels are not built for vta-sim"):
        compile_levels(mlp_onnx, levels, "vta-sim")
    with pytest.raises(InputError, match="no tunable knobs"):
        sparse_tasks(mlp_onnx, get_target("vta-sim"), sparsity="bsr:0.5")

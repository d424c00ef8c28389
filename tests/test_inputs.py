"""The run-time input policy (docs/design/inputs.md): every wrong input gets a named error, every
cast is lossless or said."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gearshift
from gearshift.errors import InputError
from gearshift.spec import InputCastWarning, TensorSpec


@pytest.fixture(scope="module")
def session(mlp_onnx, tmp_path_factory):
    return gearshift.Session(gearshift.compile(mlp_onnx, "host", tmp_path_factory.mktemp("in") / "mlp"))


def test_float64_is_cast_with_a_warning(session):
    spec = session.inputs[0]
    x = np.random.default_rng(0).standard_normal(spec.shape)
    with pytest.warns(InputCastWarning, match="float64 cast to float32"):
        got = session.run({spec.name: x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = session.run({spec.name: x.astype(np.float32)})
    np.testing.assert_array_equal(next(iter(got.values())), next(iter(expected.values())))


@pytest.mark.parametrize("make,match", [
    (lambda s: np.zeros(s, np.int64), "expected dtype float32, got int64"),
    (lambda s: np.zeros(s, bool), "expected dtype float32, got bool"),
    (lambda s: np.zeros(s, object), "expected dtype float32, got object"),
    (lambda s: np.float32(1.0), "expected shape"),
    (lambda s: np.zeros((s[0] * 64, *s[1:]), np.float32), "expected shape"),
    (lambda s: np.zeros(s[1:], np.float32), "expected shape")])
def test_wrong_inputs_are_named(session, make, match):
    spec = session.inputs[0]
    with pytest.raises(InputError, match=match):
        session.run({spec.name: make(spec.shape)})


def test_layouts_do_not_matter_and_nan_is_data(session):
    spec = session.inputs[0]
    x = np.random.default_rng(1).standard_normal(spec.shape).astype(np.float32)
    expected = next(iter(session.run({spec.name: x}).values()))
    strided = np.asfortranarray(x)
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (strided, readonly, x[::1]):
        np.testing.assert_array_equal(next(iter(session.run({spec.name: variant}).values())), expected)
    with_nan = x.copy()
    with_nan[0, 0] = np.nan
    assert np.isnan(next(iter(session.run({spec.name: with_nan}).values()))).any()


def test_integer_inputs_widen_silently_and_narrow_only_when_they_fit():
    ids = TensorSpec("input_ids", (1, 4), "int64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ids.check(np.array([[1, 2, 3, 4]], np.int32)).dtype == np.int64
    small = TensorSpec("ids", (2,), "int32")
    assert small.check(np.array([5, 7], np.int64)).dtype == np.int32
    with pytest.raises(InputError, match="outside int32's range"):
        small.check(np.array([5, 1 << 40], np.int64))
    with pytest.raises(InputError, match="expected dtype int32, got float32"):
        small.check(np.array([5, 7], np.float32))

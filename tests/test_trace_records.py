"""Tests for gradtrace.records.trace: a trace's JSON form is strict JSON and loses nothing.

Reference: the record itself. After to_dict -> json.dumps(allow_nan=False) -> json.loads ->
from_dict the record is == to the original (the records' own equality), and, independently of
that equality, `assert_same` here finds every tensor bit-for-bit equal (NaN where NaN) and
every other field equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch
from torch import Tensor, nn

from gradtrace.errors import GradtraceError
from gradtrace.records import GradientFlow, LyapunovSpectrum, SensitivityProfile, TraceResult
from gradtrace.records.codec import decode_float, encode_float
from gradtrace.tracing import input_sensitivity, trace

DTYPE = torch.float64
FORMAT = TraceResult.format_tag()


def through_json(data: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(data, allow_nan=False))


def assert_same(a: object, b: object) -> None:
    """Field by field: tensors bit-for-bit (NaN equal), floats with NaN equal, rest by ==."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and a.shape == b.shape and a.dtype == b.dtype
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, tuple | list):
        assert isinstance(b, tuple | list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b


def lstm_trace() -> TraceResult:
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=DTYPE)
    x = torch.randn(7, 2, 3, dtype=DTYPE)
    return trace(lstm, x, loss_fn=lambda out: out[0].pow(2).mean(), lyapunov=3)


def dead_relu_trace() -> TraceResult:
    # A relu RNN whose units all die after one step: exact zeros, so log10 c(k) = -inf.
    rnn = nn.RNN(2, 3, nonlinearity="relu", dtype=DTYPE)
    with torch.no_grad():
        rnn.weight_hh_l0.fill_(-1.0)
        rnn.weight_ih_l0.zero_()
        rnn.bias_ih_l0.fill_(-1.0)
        rnn.bias_hh_l0.zero_()
    return trace(rnn, torch.randn(4, 1, 2, dtype=DTYPE), metric="frobenius")


@pytest.mark.parametrize(
    "build", [lstm_trace, dead_relu_trace], ids=["lstm-2layer-bidir", "dead-relu"]
)
def test_trace_round_trips_through_json(build: object) -> None:
    result = build()  # type: ignore[operator]
    data = through_json(result.to_dict())
    assert data["format"] == "gradtrace.trace/1"
    back = TraceResult.from_dict(data)
    assert back == result
    assert_same(result, back)


def test_non_finite_values_are_written_as_named_strings() -> None:
    data = dead_relu_trace().to_dict()
    assert data["layers"][0]["log10_norm"]["shape"] == [1, 4]  # (B, T), also for B = 1
    assert "-Infinity" in data["layers"][0]["log10_norm"]["data"]
    assert [encode_float(v) for v in (math.inf, -math.inf, math.nan, 1.5)] == [
        "Infinity",
        "-Infinity",
        "NaN",
        1.5,
    ]
    assert math.isnan(decode_float("NaN") or 0.0)


def test_a_hand_built_record_with_every_optional_field_round_trips() -> None:
    layer = lstm_trace().layers[0]
    rec = dataclasses.replace(
        layer,
        activation=None,
        theory=dataclasses.replace(
            layer.theory,
            gamma=None,
            sigma_max=math.nan,
            spectral_radius=math.inf,
            eigen_prediction=None,
        ),
        rate_per_step=-math.inf,
        lyapunov_max=math.nan,
        lyapunov=LyapunovSpectrum(
            torch.tensor([[math.inf]], dtype=DTYPE), torch.zeros(0, 1, 1, dtype=DTYPE)
        ),
        cell_path_log10=None,
        loss_grad_log10=None,
        output_error=None,
    )
    data = through_json(rec.to_dict())
    assert data["format"] == "gradtrace.gradient_flow/1"
    back = GradientFlow.from_dict(data)
    assert back == rec
    assert_same(rec, back)


def test_sensitivity_profile_round_trips() -> None:
    torch.manual_seed(1)
    profile = input_sensitivity(nn.GRU(3, 2, dtype=DTYPE), torch.randn(5, 2, 3, dtype=DTYPE))
    back = SensitivityProfile.from_dict(through_json(profile.to_dict()))
    assert back == profile
    assert_same(profile, back)


def test_find_returns_the_named_layer_and_refuses_a_missing_one() -> None:
    result = lstm_trace()
    assert result.find(layer=1, direction="reverse").label == "lstm layer 1 reverse"
    with pytest.raises(GradtraceError, match="no traced layer matches layer=2"):
        result.find(layer=2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {
                "format": "gradtrace.gradient_flow/1",
                "metric": "spectral",
                "input_shape": [],
                "loss": None,
                "layers": [],
            },
            f"`data` must be a {FORMAT} record, got format 'gradtrace.gradient_flow/1'",
        ),
        (
            {
                "format": "other/1",
                "metric": "spectral",
                "input_shape": [],
                "loss": None,
                "layers": [],
            },
            "`format` must be a tag such as 'gradtrace.gradient_flow/1', got 'other/1'",
        ),
        ({"format": FORMAT}, "`data` of a TraceResult is missing the keys"),
        ([], "`data` must be a dict with a 'format' tag"),
    ],
    ids=["wrong-kind", "foreign-format", "missing-keys", "not-a-dict"],
)
def test_malformed_records_are_refused(data: object, message: str) -> None:
    with pytest.raises(GradtraceError, match=re.escape(message)) as err:
        TraceResult.from_dict(data)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_a_trace_reads_as_one_line_per_layer() -> None:
    result = trace(torch.nn.GRU(3, 4, num_layers=2, dtype=DTYPE), torch.randn(9, 2, 3, dtype=DTYPE))
    lines = repr(result).splitlines()
    assert len(lines) == 2 + len(result.layers)  # header, one per layer, closing parenthesis
    for line, layer in zip(lines[1:-1], result.layers, strict=True):
        assert layer.label in line and layer.verdict in line

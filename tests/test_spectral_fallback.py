"""When LAPACK's eigh does not converge, the PSD eigenproblems fall back to the SVD.

Reference: torch.linalg.eigh / eigvalsh on the same matrices (float64, 1e-12), with eigh made
to fail by a patch, as it does on the clustered spectra of identity-initialised RNNs; and the
IRNN that once failed, traced end to end.
"""

from __future__ import annotations

import pytest
import torch

import gradtrace
from gradtrace.core import spectral


def _fail(*args: object, **kwargs: object) -> None:
    raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")


def test_fallback_equals_eigh_on_psd_matrices(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(5, 6, 4, generator=gen, dtype=torch.float64)
    G = A @ A.mT  # (5, 6, 6), PSD of rank 4: repeated zero eigenvalues
    values, vectors = torch.linalg.eigh(G)
    monkeypatch.setattr(torch.linalg, "eigh", _fail)
    monkeypatch.setattr(torch.linalg, "eigvalsh", _fail)
    got_values, got_vectors = spectral.eigh_psd(G)
    torch.testing.assert_close(got_values, values, rtol=0, atol=1e-12)
    torch.testing.assert_close(spectral.eigvalsh_psd(G), values, rtol=0, atol=1e-12)
    top = got_vectors[..., -1:]  # the top eigenvector, up to sign
    torch.testing.assert_close(
        (top.mT @ vectors[..., -1:]).abs().squeeze(), torch.ones(5, dtype=torch.float64)
    )
    torch.testing.assert_close(G @ top, got_values[..., -1:, None] * top, rtol=0, atol=1e-10)


def test_irnn_at_initialisation_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: an IRNN's trace (W_hh = I) raised _LinAlgError inside a sweep."""
    model = gradtrace.models.build_model("irnn", 2, 16, 1, seed=0).double()
    x = torch.rand(4, 30, 2, dtype=torch.float64)
    monkeypatch.setattr(torch.linalg, "eigh", _fail)
    monkeypatch.setattr(torch.linalg, "eigvalsh", _fail)
    flow = gradtrace.trace(model, x).layers[0]
    assert flow.log10_norm.isfinite().all()

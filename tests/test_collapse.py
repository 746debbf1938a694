import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_features.measure import collapse


def _reference_rank(h):
    s = np.linalg.svd(h - h.mean(0), compute_uv=False)
    p = s[s > 1e-9 * s.max()] / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def test_collapsed_representations_are_detected_and_full_rank_ones_are_not():
    key = jax.random.key(0)
    full = jax.random.normal(key, (1024, 64))
    same_rows = jnp.tile(jax.random.normal(key, (1, 64)), (1024, 1))  # complete collapse
    line = jax.random.normal(key, (1024, 1)) * jnp.linspace(-1, 2, 64)  # rank one
    out = {name: collapse.collapse(h) for name, h in (("full", full), ("same", same_rows), ("line", line))}
    assert not out["full"]["collapsed"] and out["full"]["effective_rank"] > 55
    assert out["full"]["effective_rank"] == pytest.approx(_reference_rank(np.asarray(full, np.float64)), rel=1e-4)
    assert out["same"]["collapsed"] and out["same"]["effective_rank"] == 0.0
    assert out["line"]["collapsed"] and out["line"]["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert out["line"]["top_singular_share"] == pytest.approx(1.0, abs=1e-6)
    assert out["full"]["top_singular_share"] < 0.05


def test_effective_rank_of_k_equal_directions_is_k():
    h = jnp.concatenate([jnp.eye(8), -jnp.eye(8)]) @ jax.random.orthogonal(jax.random.key(1), 8)[:, :]
    np.testing.assert_allclose(collapse.effective_rank(collapse.spectrum(h)), 8.0, rtol=1e-5)
    h3 = jnp.concatenate([jnp.eye(3), -jnp.eye(3)]) * 2.0  # 3 equal directions of 3
    np.testing.assert_allclose(collapse.effective_rank(collapse.spectrum(h3)), 3.0, rtol=1e-5)

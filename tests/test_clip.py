import numpy as np
import pytest

import seqkit

torch = pytest.importorskip("torch")


def test_clip_works_on_tensors_and_matches_torch():
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(3, 4)) * 10, "b": rng.normal(size=5) * 10}
    tensors = {k: torch.tensor(v) for k, v in arrays.items()}
    clipped, norm = seqkit.clip_grad_norm(tensors, 1.0)
    params = [torch.zeros_like(t, requires_grad=True) for t in tensors.values()]
    for p, t in zip(params, tensors.values()):
        p.grad = t.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    assert norm == pytest.approx(float(torch_norm))
    for p, c in zip(params, clipped.values()):
        torch.testing.assert_close(p.grad, c, rtol=1e-6, atol=1e-12)
    by_value = seqkit.clip_grad_value(tensors, 0.5)
    assert all(float(t.abs().max()) <= 0.5 for t in by_value.values())


def test_non_finite_norm_is_reported_not_hidden():
    clipped, norm = seqkit.clip_grad_norm({"a": np.array([np.inf, 1.0])}, 1.0)
    assert not np.isfinite(norm)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_thresholds(bad):
    with pytest.raises(ValueError, match="max_norm"):
        seqkit.clip_grad_norm({"a": np.ones(2)}, bad)
    with pytest.raises(ValueError, match="threshold"):
        seqkit.clip_grad_value({"a": np.ones(2)}, bad)

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from reelforge.evaluate.metrics import (
    bootstrap_fd,
    bootstrap_mean,
    clip_style_score,
    feature_stats,
    frechet_distance,
    frechet_distance_features,
)


def test_caption_match_ignores_words_every_prompt_shares():
    from reelforge.evaluate.metrics import caption_match

    prompts = ["a red circle moves left", "a blue square moves up"]
    assert caption_match(["a red circle moves left", "a red circle moves left"], prompts) == 0.5
    assert caption_match(["a green square moves down", "a green triangle moves down"], prompts) == 0.0
    assert np.isclose(caption_match(["red", "square up"], prompts), (1 / 3 + 2 / 3) / 2)


def test_bootstrap_intervals_bracket_the_estimate_and_shrink_with_n():
    rng = np.random.default_rng(0)
    small_r, small_g = rng.normal(size=(40, 4)), rng.normal(0.5, 1, size=(40, 4))
    big_r, big_g = rng.normal(size=(400, 4)), rng.normal(0.5, 1, size=(400, 4))
    lo_s, hi_s = bootstrap_fd(small_r, small_g, n=200, seed=0)
    lo_b, hi_b = bootstrap_fd(big_r, big_g, n=200, seed=0)
    assert lo_b <= frechet_distance(*feature_stats(big_r), *feature_stats(big_g)) <= hi_b
    assert hi_b - lo_b < hi_s - lo_s
    assert bootstrap_fd(small_r, small_g, n=50, seed=3) == bootstrap_fd(small_r, small_g, n=50, seed=3)
    lo, hi = bootstrap_mean(np.arange(100.0), n=500, seed=0)
    assert lo < 49.5 < hi and hi - lo < 15


def test_closed_form_mean_and_scaled_identity():
    # ||mu||^2 = 30; tr(4I + I - 2*2I) = 4  ->  34
    assert frechet_distance([1, 2, 3, 4], 4 * np.eye(4), np.zeros(4), np.eye(4)) == pytest.approx(
        34, abs=1e-9
    )


def test_closed_form_diagonal():
    # sum (sqrt(a) - sqrt(b))^2 = (1-2)^2 + (2-1)^2 + (3-4)^2 = 3
    d = frechet_distance(np.zeros(3), np.diag([1, 4, 9]), np.zeros(3), np.diag([4, 1, 16]))
    assert d == pytest.approx(3, abs=1e-9)


def test_non_commuting_covariances_match_the_definition():
    s1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    s2 = np.array([[1.0, 0.0], [0.0, 3.0]])
    # Reference: tr sqrt(S1 S2) = tr sqrt(S2^1/2 S1 S2^1/2), a symmetric PSD matrix.
    r = linalg.sqrtm(s2)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(r @ s1 @ r)).real
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(expected, rel=1e-10)
    # eigvalsh of the non-symmetric product (a known trap) gives a different, wrong answer.
    wrong = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ s2), 0, None)).sum()
    assert abs(wrong - expected) > 1e-3


def test_agrees_with_scipy_on_random_64d():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 64)), rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.1
    (m1, s1), (m2, s2) = feature_stats(a), feature_stats(b)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-8)


def test_shift_by_constant_is_squared_norm_and_accepts_torch():
    x = torch.randn(300, 8, dtype=torch.float32)
    c = torch.arange(8, dtype=torch.float32) / 4
    d = frechet_distance(*feature_stats(x), *feature_stats(x + c))
    assert d == pytest.approx(float((c.double() ** 2).sum()), rel=1e-5)


def test_rank_deficient_covariances_are_finite():
    x = np.random.default_rng(1).normal(size=(10, 32))  # N < D
    y = np.random.default_rng(2).normal(size=(10, 32))
    assert np.isfinite(frechet_distance(*feature_stats(x), *feature_stats(y)))


def test_float32_accumulation_trap_is_avoided():
    # Large offset + small spread: float32 moments lose the variance, float64 keeps it.
    rng = np.random.default_rng(0)
    x = (1e4 + rng.normal(size=(20000, 2))).astype(np.float32)
    mu, sigma = feature_stats(x)
    assert np.allclose(np.diag(sigma), 1.0, atol=0.05)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_clip_style_score_is_clamped_cosine_times_100():
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    assert clip_style_score(v, t).tolist() == pytest.approx([100.0, 0.0, 100 / np.sqrt(2)])


def test_too_few_features_is_a_clear_error():
    with pytest.raises(ValueError, match="N>=2"):
        feature_stats(np.zeros((1, 4)))


def test_paired_bootstrap_of_two_models_on_the_same_samples():
    from reelforge.evaluate.metrics import paired_fd_deltas, paired_mean_deltas

    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 3))
    same = paired_fd_deltas(real, real[:20], real[:20].copy(), 50, seed=1)
    assert np.all(same == 0)  # identical models: every paired resample ties
    closer = paired_fd_deltas(real, real[:20], real[:20] + 3.0, 50, seed=1)
    # b's mean is shifted by 3 in each of 3 dimensions: its distance is larger by |(3, 3, 3)|^2 = 27
    assert np.all(closer < 0) and np.isclose(np.median(closer), -27.0, rtol=0.1)
    a, b = rng.standard_normal(30), rng.standard_normal(30)
    d = paired_mean_deltas(a + 1.0, a, 100, seed=2)
    assert np.allclose(d, 1.0)  # a constant paired difference has no variance
    assert abs(paired_mean_deltas(a, b, 500, seed=2).mean() - (a - b).mean()) < 0.1


@pytest.mark.parametrize(("n1", "n2", "d"), [(17, 17, 400), (35, 24, 400), (12, 30, 64), (300, 200, 16)])
def test_fd_from_features_matches_the_moments_and_sqrtm_route(n1, n2, d):
    """Fewer clips than dimensions (the demo) takes the N1 x N2 SVD route; it must agree with sqrtm of the
    D x D product (full rank here once a tiny offset is added, as frechet_distance does when singular)."""
    rng = np.random.default_rng(n1 + d)
    x = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    y = rng.normal(0.3, 1.0, size=(n2, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(0) - y.mean(0)
    exact = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(linalg.sqrtm(s1 @ s2)))
    assert frechet_distance_features(x, y) == pytest.approx(exact, rel=1e-6, abs=1e-6)
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)

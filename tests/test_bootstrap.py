"""Bootstrap intervals over images: coverage on pairs of known correlation, pairing, the model-free table's CIs."""

import numpy as np

from cl_features.augment import image_sets
from cl_features.measure import bootstrap as B
from cl_features.measure import correlation as C
from cl_features.measure import model_free as MF


def _pairs(rng, n, rho, k=1):
    z1, z2 = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    return z1, rho * z1 + np.sqrt(1 - rho**2) * z2


def test_95_interval_covers_a_known_correlation_in_at_least_90_of_100_repeats():
    rng, rho, covered = np.random.default_rng(0), 0.5, 0
    for repeat in range(100):
        a, b = _pairs(rng, 200, rho)
        lo, hi = B.interval(B.correlation_replicates(a, b, B.resample_counts(200, 1000, seed=repeat)))
        covered += lo <= rho <= hi
    assert covered >= 90, covered


def test_unit_counts_give_the_point_estimate_and_constant_dims_are_left_out():
    rng = np.random.default_rng(1)
    a, b = _pairs(rng, 300, 0.7, k=3)
    a[:, 1] = b[:, 1] = 2.0  # a constant dimension has no correlation
    point = C.summary(C.cross_view_correlation(a, b))["mean"]
    rep = B.correlation_replicates(a, b, np.ones((2, 300)))
    np.testing.assert_allclose(rep, point, rtol=1e-12)


def test_replicates_average_like_the_numbers_on_shared_resamples():
    rng = np.random.default_rng(2)
    counts = B.resample_counts(250, 50, seed=0)
    (a1, b1), (a2, b2) = _pairs(rng, 250, 0.3), _pairs(rng, 250, 0.8)
    both = B.correlation_replicates(np.hstack([a1, a2]), np.hstack([b1, b2]), counts)
    mean = (B.correlation_replicates(a1, b1, counts) + B.correlation_replicates(a2, b2, counts)) / 2
    np.testing.assert_allclose(both, mean, rtol=1e-12)
    assert np.all(counts.sum(1) == 250) and not np.array_equal(counts[0], counts[1])


def test_interval_is_the_central_percentiles():
    np.testing.assert_allclose(B.interval(np.arange(1001.0)), [25.0, 975.0])
    assert np.isnan(B.interval([np.nan])).all()


def test_view_table_reports_intervals_around_its_means():
    rng = np.random.default_rng(3)
    x = rng.random((64, 12, 12, 3)).astype(np.float32)
    v2 = np.clip(x + 0.2 * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
    d = MF.fit_dictionaries(x, ["luminance"], patch_size=4, n_atoms=4, n_patches=400, iters=3)
    t = MF.view_table(x, v2, d, k=3, stride=2, counts=B.resample_counts(64, 200, seed=0))
    assert t["num_images"] == 64
    lo, hi = t["dense_mean_ci"]
    assert lo < t["dense_mean"] < hi < 1
    lo, hi = t["sparse_mean_ci"]["luminance"]
    assert lo < t["sparse_mean"]["luminance"] < hi
    assert t["replicates"]["dense_mean"].shape == (200,)
    assert "corr_mean_ci" in t["stats"]["mean_colour"] and "dense_mean_ci" not in MF.view_table(x, v2, d, k=3)


def test_each_op_alone_switches_on_that_op_only():
    for op in image_sets.SINGLE_OPS:
        assert [o for o in image_sets.DEFAULTS if image_sets.named_set(op)[o].enabled] == [op]


def test_seed_averaged_table_holds_the_means_spread_and_seed_averaged_intervals():
    rng = np.random.default_rng(4)
    x = rng.random((48, 12, 12, 3)).astype(np.float32)
    d = MF.fit_dictionaries(x, ["luminance"], patch_size=4, n_atoms=4, n_patches=400, iters=3)
    counts = B.resample_counts(48, 100, seed=0)
    tables = []
    for noise in (0.1, 0.3):
        v2 = np.clip(x + noise * rng.standard_normal(x.shape).astype(np.float32), 0, 1)
        tables.append(MF.view_table(x, v2, d, k=3, stride=2, counts=counts))
    one = MF.combine_seeds(tables[:1], [0])
    assert one["dense_mean"] == tables[0]["dense_mean"] and one["dense_mean_ci"] == tables[0]["dense_mean_ci"]
    both = MF.combine_seeds(tables, [0, 1])
    dense = [t["dense_mean"] for t in tables]
    assert both["dense_mean"] == np.mean(dense)
    assert both["seeds"]["sd"]["dense_mean"] == np.std(dense, ddof=1) > 0
    expected = B.interval((tables[0]["replicates"]["dense_mean"] + tables[1]["replicates"]["dense_mean"]) / 2)
    assert both["dense_mean_ci"] == expected
    assert both["sparse_mean"]["luminance"] == np.mean([t["sparse_mean"]["luminance"] for t in tables])
    assert "replicates" not in both and both["num_images"] == 48


def test_t_interval_across_seeds_is_students_and_covers_the_mean():
    from cl_features.measure import seeds as S

    s = S.summary([1.0, 2.0, 3.0])
    assert (s["mean"], s["sd"]) == (2.0, 1.0)
    assert np.allclose(s["ci"], [2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)], atol=1e-6)
    assert S.summary([0.5])["ci"] is None and S.summary([0.5, float("nan")])["mean"] == 0.5
    rng = np.random.default_rng(0)
    covered = sum(lo <= 1.0 <= hi for lo, hi in (S.summary(rng.normal(1.0, 0.3, 3))["ci"] for _ in range(400)))
    assert 0.92 * 400 <= covered <= 0.98 * 400, covered  # 95% +- 3 binomial sd
    entries = [
        {"train_set": "crop", "scores": {"knn": v, "steps": 10}, "layers": {"stem": {"channels": 8, "density": v}}}
        for v in (0.2, 0.4)
    ]
    entries[0]["scores"]["tsne_separation"] = 0.7  # measured on the first seed only
    a = S.across_seeds(entries, [0, 1])
    assert a["scores"]["tsne_separation"] == 0.7 and a["scores_ci"]["tsne_separation"] is None
    assert np.isclose(a["scores"]["knn"], 0.3)
    assert a["scores"]["steps"] == 10 and a["layers"]["stem"]["channels"] == 8
    assert np.isclose(a["scores_sd"]["knn"], np.std([0.2, 0.4], ddof=1)) and a["seeds"] == [0, 1]

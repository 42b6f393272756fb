"""stats: the intervals and the paired test the reports print, against known values."""
import numpy as np
import pytest

from rt_jax.core import stats


def test_wilson_and_clopper_pearson_match_known_intervals():
  lo, hi = stats.wilson(0, 10)
  assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
  lo, hi = stats.wilson(45, 32_768)
  assert (lo, hi) == (pytest.approx(0.001026, rel=1e-3), pytest.approx(0.001838, rel=1e-3))
  # Clopper-Pearson at k = 0 is 1 - 0.025 ** (1 / n): the "rule of three" region.
  assert stats.clopper_pearson(0, 100_000)[1] == pytest.approx(1 - 0.025 ** (1 / 100_000))
  lo, hi = stats.clopper_pearson(7, 32_768)
  assert lo < 7 / 32_768 < hi and hi - lo > stats.wilson(7, 32_768)[1] - stats.wilson(7, 32_768)[0]
  assert stats.wilson(0, 0) == (0.0, 1.0) and stats.clopper_pearson(0, 0) == (0.0, 1.0)
  with pytest.raises(ValueError):
    stats.wilson(5, 4)


def test_clustered_interval_widens_with_correlated_samples_only():
  independent = stats.wilson(32, 64)
  # 16 instances x 4 samples; all-or-nothing per instance: only 16 independent observations.
  lumped = stats.clustered([4] * 8 + [0] * 8, 4)
  assert lumped == pytest.approx(stats.wilson(8, 16), abs=1e-6)
  assert lumped[1] - lumped[0] > independent[1] - independent[0]
  # Counts that vary within instances as binomial noise would: no widening beyond rounding.
  rng = np.random.default_rng(0)
  noisy = rng.binomial(4, 0.5, size=400)
  spread = stats.clustered(noisy, 4)
  plain = stats.wilson(int(noisy.sum()), 1600)
  assert spread[1] - spread[0] == pytest.approx(plain[1] - plain[0], rel=0.15)
  assert stats.clustered([1, 0, 1], 1) == stats.wilson(2, 3)


def test_paired_sign_test_counts_rises_and_falls_on_common_instances():
  before = {'1': 0, '2': 0, '3': 1, '4': 0, '5': 1}
  after = {'1': 1, '2': 1, '3': 1, '4': 1, '6': 1}
  test = stats.paired(before, after)
  assert (test['instances'], test['up'], test['down']) == (4, 3, 0)
  assert test['p'] == pytest.approx(0.25)  # 2 * 0.5 ** 3
  assert stats.paired(before, before)['p'] == 1.0
  many = stats.paired({str(i): 0 for i in range(20)}, {str(i): 1 for i in range(20)})
  assert many['p'] == pytest.approx(2 * 0.5 ** 20)

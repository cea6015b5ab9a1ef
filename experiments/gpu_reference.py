r"""Every table of the reference study in one GPU session, as much as fits a time budget.

    python experiments/gpu_reference.py --out=results/gpu --budget_s=540 \
        --data_parts=.data/cifar10_parts --wikitext_dir=.data/wikitext2_gpt1
    python experiments/gpu_reference.py --tiny --out=/tmp/gpu_tiny    # the same plan on a CPU

Runs, in this order, until the budget is spent:

1. the seven reference ViTs (experiments/reference_vit.py), seed 0;
2. the same seven with seeds 1 and 2;
3. the six reference LSTM language models (experiments/reference_lstm.py) on the study's own
   WikiText-2 tokens (GPT-1 ids, vocabulary 40,479, `tokens_npz`). The study froze GPT-1's
   pretrained embedding table, which is not available offline: these runs learn their embeddings;
4. the CNN baselines of configs/cnn.py, 10 epochs (experiments/reference_vs_cnn.py's protocol);
5. the ViT recipe (configs/vit_recipe.py).

Each run is one train.py process. All of them share one persistent XLA compilation cache, so runs
of one shape (seeds 1 and 2, the optimizer rows at two layers) reuse the first one's compiled
programs and the grid costs its training time, not a compilation per run. A run is started only
while its estimated time (the last measured run of its family, else a guess) fits the remaining
budget, and it gets the remaining time as `stopping.max_train_seconds`, so it ends as `time_budget` rather
than being killed. For each finished run, its `config.json`, `history.jsonl` and `summary.json`
(no checkpoints) are copied to OUT/<stage>/<name>/seed_<K>/ with a RUN.md naming the device,
command, commit and date; OUT/NOT_RUN.md lists what did not fit, OUT/plan.json the whole plan;
then report.py writes OUT/report/ with the study's published figures beside ours.

CIFAR-10's prepared copy (140 MB) cannot travel in one call: `--data_parts` takes the parts made
by `python -m curvelab.data_parts split ../shared/tensorflow_datasets/cifar10 DIR --max_mib=60`,
verifies every checksum and reassembles them before anything trains (one clear line and exit 1 on a
missing or corrupted part).

`--tiny`: the same stages and bookkeeping with every run shrunk to seconds on scikit-learn digits
and random tokens, so the script is proven end to end on a CPU (tests/test_gpu_reference.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# pylint: disable=g-import-not-at-top,wrong-import-position
from curvelab import data_parts
from sweeps import experiments as experiments_lib
from sweeps import publish
from sweeps import runner

GPT1_VOCAB = 40_479
# First guesses of a run's seconds on an H200 (compilation included), until one of its family
# has been measured in this session.
GUESS_S = {'vit': 45.0, 'lstm': 60.0, 'cnn': 60.0, 'recipe': 120.0}
CNN_EPOCHS = 10
STAGES = ('vit_seed0', 'vit_seeds12', 'lstm', 'cnn', 'recipe')


@dataclasses.dataclass
class Item:
  """One planned train.py run."""
  stage: str
  name: str
  family: str
  config: str
  seed: int
  overrides: dict = dataclasses.field(default_factory=dict)


def _experiment_runs(path: str) -> list:
  return experiments_lib.load_experiment_set(REPO / path).runs


def plan(wikitext_dir: str) -> list[Item]:
  """The stages in order of importance."""
  vits = _experiment_runs('experiments/reference_vit.py')
  items = [Item('vit_seed0', r.name, 'vit', r.config, 0, dict(r.overrides)) for r in vits]
  items += [Item('vit_seeds12', r.name, 'vit', r.config, s, dict(r.overrides))
            for s in (1, 2) for r in vits]
  tokens = {f'dataset.{role}_path': str(pathlib.Path(wikitext_dir) / f'wiki.{split}.npz')
            for role, split in (('train', 'train'), ('val', 'validation'), ('test', 'test'))}
  for run in _experiment_runs('experiments/reference_lstm.py'):
    items.append(Item('lstm', run.name, 'lstm', run.config + ',dataset=tokens_npz', 0,
                      {**dict(run.overrides), **tokens, 'dataset.vocab_size': GPT1_VOCAB}))
  for arch in ('resnet', 'preact_resnet', 'googlenet', 'densenet', 'resnet18'):
    items.append(Item('cnn', f'cnn_{arch}', 'cnn', f'configs/cnn.py:arch={arch}', 0,
                      {'loop.num_epochs': CNN_EPOCHS}))
  items.append(Item('recipe', 'vit_recipe', 'recipe', 'configs/vit_recipe.py', 0))
  return items


def tiny(item: Item, token_dir: pathlib.Path) -> Item:
  """The item shrunk to seconds on a CPU: digits for images, random tokens for text."""
  small = {'loop.num_epochs': 1, 'doctor.enabled': False}
  if item.family == 'lstm':
    tokens = {f'dataset.{role}_path': str(token_dir / f'{role}.npz')
              for role in ('train', 'val', 'test')}
    # The tiny LM variant reads text files; these runs keep the study's pre-tokenised ids.
    return dataclasses.replace(item, config=item.config + ',tiny=True', overrides={
        **tokens, 'dataset.name': 'tokens_npz', 'dataset.vocab_size': 97, **small})
  config = item.config + (',tiny=True' if ':' in item.config else ':tiny=True')
  return dataclasses.replace(item, config=config, overrides={
      **small, 'dataset.train_split': 'train[:256]', 'loop.batch_size': 32})


def _write_tiny_tokens(folder: pathlib.Path) -> None:
  import numpy as np  # Only the tiny mode needs numpy here.
  rng = np.random.default_rng(0)
  folder.mkdir(parents=True, exist_ok=True)
  for role, n in (('train', 4000), ('val', 600), ('test', 600)):
    np.savez(folder / f'{role}.npz', tokens=rng.integers(0, 97, n).astype(np.uint16))


def _command(item: Item, workdir: pathlib.Path, budget_s: float) -> list[str]:
  args = [sys.executable, str(REPO / 'train.py'), f'--config={item.config}',
          f'--workdir={workdir}', f'--config.seed={item.seed}',
          f'--config.stopping.max_train_seconds={max(int(budget_s), 1)}']
  args += [f'--config.{k}={v}' for k, v in item.overrides.items()]
  return args


def _publish(item: Item, workdir: pathlib.Path, out: pathlib.Path, command: list[str]) -> str:
  """Copies the run files (no checkpoints) to OUT/<stage>/<name>/seed_K with a RUN.md."""
  target = out / item.stage / item.name / f'seed_{item.seed}'
  return str(publish.publish_run(workdir, target, command=publish.shown_command(command, REPO),
                                 commit=runner.code_version(REPO),
                                 date=datetime.datetime.now().isoformat(timespec='seconds')))


def _prepare_data(args) -> dict:
  """Reassembles and verifies the CIFAR-10 parts; the environment train.py then reads it with."""
  env = {}
  if args.data_parts:
    dest = pathlib.Path(args.data_dir or tempfile.mkdtemp(prefix='tfds-'))
    folder = data_parts.join(args.data_parts, str(dest))
    print(f'data: {folder} reassembled and verified', flush=True)
    if not args.tiny:
      env['TFDS_DATA_DIR'] = str(dest)
  return env


def run_plan(args) -> int:
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
  env.update(_prepare_data(args))
  cache = args.cache_dir or str(out.parent / '.jax_cache')
  env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  work_root = pathlib.Path(args.work_root or tempfile.mkdtemp(prefix='gpu-reference-'))
  items = plan(args.wikitext_dir)
  if args.stages:
    items = [i for i in items if i.stage in args.stages]
  if args.per_stage:
    counts: dict[str, int] = {}
    kept = []
    for item in items:
      counts[item.stage] = counts.get(item.stage, 0) + 1
      if counts[item.stage] <= args.per_stage:
        kept.append(item)
    items = kept
  if args.tiny:
    _write_tiny_tokens(work_root / 'tokens')
    items = [tiny(i, work_root / 'tokens') for i in items]
  deadline = time.monotonic() + args.budget_s
  measured: dict[str, float] = {}
  records, not_run = [], []
  for item in items:
    left = deadline - time.monotonic()
    estimate = measured.get(item.family, GUESS_S[item.family] * (0.1 if args.tiny else 1.0))
    if estimate > left:
      not_run.append((item, f'estimated {estimate:.0f} s, {max(left, 0):.0f} s left'))
      continue
    workdir = work_root / item.stage / item.name / f'seed_{item.seed}'
    command = _command(item, workdir, left)
    print(f'run {item.stage}/{item.name} seed {item.seed} ({left:.0f} s left)', flush=True)
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    measured[item.family] = seconds
    record = {'stage': item.stage, 'name': item.name, 'seed': item.seed, 'seconds': seconds,
              'returncode': done.returncode}
    if done.returncode == 0:
      record['files'] = _publish(item, workdir, out, command)
      record['status'] = json.loads((workdir / 'summary.json').read_text()).get('status')
    else:
      record['error'] = (done.stderr.strip().splitlines() or ['(no output)'])[-1]
      print(f'  failed: {record["error"]}', flush=True)
    records.append(record)
  _write_bookkeeping(out, records, not_run, args)
  if not any(r['returncode'] == 0 for r in records):
    print(f'no run finished; nothing to report ({len(not_run)} not run, see '
          f'{out / "NOT_RUN.md"})', flush=True)
    return 1 if records else 0
  report = subprocess.run([sys.executable, str(REPO / 'report.py'), str(out),
                           f'--out={out / "report"}'] + (
                               ['--published=experiments/reference_published.py']
                               if (REPO / 'experiments/reference_published.py').exists() else []),
                          cwd=REPO, env=env, capture_output=True, text=True)
  if report.returncode != 0:
    print(f'report.py failed: {report.stderr.strip()[-500:]}', flush=True)
  failed = [r for r in records if r['returncode'] != 0]
  print(f'{len(records) - len(failed)} runs done, {len(failed)} failed, {len(not_run)} not run '
        f'(see {out / "NOT_RUN.md"})', flush=True)
  return 1 if failed or report.returncode != 0 else 0


def _write_bookkeeping(out: pathlib.Path, records: list, not_run: list, args) -> None:
  (out / 'plan.json').write_text(json.dumps(
      {'budget_s': args.budget_s, 'tiny': args.tiny, 'runs': records,
       'not_run': [{'stage': i.stage, 'name': i.name, 'seed': i.seed, 'why': why}
                   for i, why in not_run]}, indent=1))
  lines = ['# Runs of the plan that did not fit the budget', '',
           f'Budget {args.budget_s:.0f} s (experiments/gpu_reference.py). Nothing here was run; '
           'no number stands in for them.', '']
  lines += [f'- {i.stage}/{i.name} seed {i.seed}: {why}' for i, why in not_run] or ['- none']
  (out / 'NOT_RUN.md').write_text('\n'.join(lines) + '\n')


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--out', required=True, help='where the run files and report go')
  parser.add_argument('--budget_s', type=float, default=540.0,
                      help='seconds for the whole grid (default 540: 9 minutes)')
  parser.add_argument('--data_parts', default='',
                      help='folder of CIFAR-10 parts from `python -m curvelab.data_parts split`')
  parser.add_argument('--data_dir', default='', help='where to reassemble them (default: temp)')
  parser.add_argument('--wikitext_dir', default=str(REPO.parent / 'shared/data/wikitext2_gpt1'),
                      help='folder with wiki.{train,validation,test}.npz (GPT-1 ids)')
  parser.add_argument('--cache_dir', default='', help='XLA compilation cache shared by the runs')
  parser.add_argument('--work_root', default='', help='workdirs with checkpoints (default: temp)')
  parser.add_argument('--tiny', action='store_true', help='every run shrunk to seconds on a CPU')
  parser.add_argument('--stages', default='',
                      help=f'comma-separated stages to run (default all: {", ".join(STAGES)})')
  parser.add_argument('--per_stage', type=int, default=0,
                      help='at most this many runs of each stage (default 0: all)')
  args = parser.parse_args(argv)
  args.stages = [s for s in args.stages.split(',') if s]
  unknown = sorted(set(args.stages) - set(STAGES))
  if unknown:
    parser.error(f'--stages: unknown {", ".join(unknown)}; allowed: {", ".join(STAGES)}')
  if args.per_stage < 0:
    parser.error(f'--per_stage must be 0 or more, got {args.per_stage}')
  if args.budget_s <= 0:
    parser.error(f'--budget_s must be positive, got {args.budget_s}')
  if not args.tiny:
    missing = [f'wiki.{s}.npz' for s in ('train', 'validation', 'test')
               if not (pathlib.Path(args.wikitext_dir) / f'wiki.{s}.npz').is_file()]
    if missing:
      parser.error(f'--wikitext_dir={args.wikitext_dir} lacks {", ".join(missing)}')
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    return run_plan(args)
  except data_parts.PartsError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())

"""The end of a run: the test split evaluated, ``summary.json`` written."""

import jax
import numpy as np

from curvelab import checkpoint as ckpt_lib
from curvelab import console
from curvelab import evaluation
from curvelab import runfiles
from curvelab.epoch_end import Run

log = console.logger()


def test_metrics(run: Run) -> tuple[dict, dict]:
  """``(best checkpoint's, final model's)`` test metrics; both empty without a best or in sanity.

  ``test_*`` are the best-validation checkpoint's (curvelab's protocol), ``last_test_*`` the final
  epoch's model (the reference study's): the same numbers when the last epoch was the best.
  """
  state, meta = run.position.state, run.position.meta
  best_step = meta.get('best_step')
  if best_step is None or run.sanity is not None:
    return {}, {}

  def on_test(s):
    return evaluation.evaluate(run.setup, run.eval_step, s, run.splits['test'], run.empty_eval,
                               prefix='test')

  last = {}
  if best_step != int(state.step):
    last = on_test(state)
    state, _, _, _ = run.checkpointer.restore(best_step, ckpt_lib.abstract(state))
  best = on_test(state)
  return best, last or best


def failed_sanity(run: Run) -> dict | None:
  """A sanity run that never memorised its examples: how far it got."""
  if run.setup.config.sanity.examples <= 0 or run.sanity is not None:
    return run.sanity
  last = run.history[-1] if run.history else {}
  return {'passed': False, 'epochs': len(run.history), 'train_loss': last.get('train_loss')}


def finish(run: Run, *, num_params: int, num_train: int, compile_s: float, plan: dict,
           total_s: float) -> dict:
  """Evaluates on the test split and writes ``summary.json``; returns the summary."""
  setup, meta, history = run.setup, run.position.meta, run.history
  run.sanity = failed_sanity(run)
  test, last_test = test_metrics(run)
  best_row = next((r for r in history if r['epoch'] == meta.get('best_epoch')), {})
  summary = {
      'num_params': num_params,
      'num_train_examples': num_train,
      'best_epoch': meta.get('best_epoch'),
      'best_step': meta.get('best_step'),
      'best_metric': setup.best_metric,
      'best_mode': setup.best_mode,
      'epochs_run': len(history),
      'status': run.status,
      'total_time_s': total_s,
      'compile_time_s': compile_s,
      'device_kind': jax.devices()[0].device_kind,
      'device_count': jax.device_count(),
      'plan': plan,  # The speed choices the run executed (curvelab/plan.py).
      'config': setup.config.to_dict(),
  }
  for key in ('val_loss',) + tuple(f'val_{m}' for m in setup.task.metric_names):
    summary[f'best_{key}'] = best_row.get(key)
  rates = [r['tokens_per_s'] for r in history if r.get('tokens_per_s')]
  if rates:
    summary['tokens_per_s'] = float(np.median(rates))
  summary.update(test)
  summary.update({f'last_{k}': v for k, v in last_test.items()})
  if last_test:
    summary['last_epoch'] = history[-1]['epoch'] if history else None
  if run.sanity is not None:
    summary['sanity'] = sanity = run.sanity
    log.info('sanity: %s in %d epochs%s', 'passed' if sanity['passed'] else 'failed',
             sanity['epochs'], '' if sanity['passed'] else
             f' (training loss reached {sanity.get("train_loss")})')
  runfiles.write_json(run.workdir / runfiles.SUMMARY, summary)
  return summary

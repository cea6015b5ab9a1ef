"""Rules on what a run logs besides its curves: model size, predictions and gradients.

capacity_vs_data needs summary.json's num_params and num_train_examples; degenerate_predictions
reads decoding statistics, sample predictions or the predicted-class histogram; gradient_problem
reads the (per-layer) gradient norms. Each returns None when its inputs were not logged.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from diagnostics import curves
from diagnostics import thresholds as T
from diagnostics.advice import Advice, scaled
from diagnostics.common import describe, make, num
from diagnostics.finding import ERROR, WARNING, Finding
from diagnostics.history import History

# --- capacity_vs_data ---------------------------------------------------------------------------


def capacity_vs_data(h: History, found: set) -> Finding | None:
  """Parameters per training example, reported next to over- or underfitting it may explain."""
  params, examples = h.info.num_params, h.info.num_train_examples
  if not params or not examples or examples <= 0:
    return None
  ratio = float(params) / float(examples)
  numbers = {"num_params": int(params), "num_train_examples": int(examples),
             "params_per_example": ratio}
  if "overfitting" in found and ratio >= T.CAPACITY_HIGH_PARAMS_PER_EXAMPLE:
    text = (f"The model has {num(ratio)} parameters per training example ({params:,} for "
            f"{examples:,} examples) and overfits: it is large for this data.")
    alternatives = [
        Advice({}, "Use a smaller model (fewer layers or units), or more training data."),
        Advice({"model.dropout": 0.3,
                "optimizer.weight_decay": scaled(h.config_float("optimizer.weight_decay"), 10.0,
                                                             1e-3)},
               "Or keep the size and regularise harder (dropout, weight decay, augmentation)."),
    ]
    return make(h, "capacity_vs_data", WARNING, [], text, numbers, alternatives)
  if "underfitting" in found and ratio <= T.CAPACITY_LOW_PARAMS_PER_EXAMPLE:
    text = (f"The model has only {num(ratio)} parameters per training example ({params:,} for "
            f"{examples:,} examples) and underfits: it is small for this data.")
    alternatives = [Advice({}, "Use a larger model (more layers or units).")]
    return make(h, "capacity_vs_data", WARNING, [], text, numbers, alternatives)
  return None


# --- degenerate_predictions ---------------------------------------------------------------------


def _tokens(text: str, by_char: bool) -> list[str]:
  return list(text.replace(" ", "")) if by_char else text.split()


def sample_stats(samples: Sequence[dict]) -> dict | None:
  """Empty share, output/target length ratio and repetition rate of logged sample predictions.

  Texts without spaces (character-level tasks) are split into characters, others into words. The
  repetition rate is the share of token bigrams that already occurred earlier in the same
  prediction ("the cat the cat the cat" -> 0.6).
  """
  pairs = [(str(s.get("target", "")), str(s.get("prediction", ""))) for s in samples
           if isinstance(s, dict) and "prediction" in s]
  if not pairs:
    return None
  by_char = not any(" " in t.strip() for t, _ in pairs)
  empty = sum(1 for _, p in pairs if not p.strip())
  out_len = in_len = bigrams = repeats = 0
  for target, prediction in pairs:
    tokens = _tokens(prediction, by_char)
    out_len += len(tokens)
    in_len += len(_tokens(target, by_char))
    seen = set()
    for bigram in zip(tokens, tokens[1:]):
      bigrams += 1
      repeats += bigram in seen
      seen.add(bigram)
  stats = {"num_samples": len(pairs), "empty_share": empty / len(pairs),
           "repetition_rate": repeats / bigrams if bigrams else 0.0}
  if in_len:
    stats["length_ratio"] = out_len / in_len
  return stats


_CHECKS: dict[str, tuple[Callable[[float], bool], str]] = {
    "val_blank_share": (lambda v: v >= T.DEGENERATE_BLANK_SHARE,
                        f"≥ {T.DEGENERATE_BLANK_SHARE:g} of output frames are blank"),
    "val_empty_share": (lambda v: v >= T.DEGENERATE_EMPTY_SHARE,
                        f"≥ {T.DEGENERATE_EMPTY_SHARE:g} of outputs are empty"),
    "val_length_ratio": (lambda v: v < T.DEGENERATE_MIN_LENGTH_RATIO,
                         f"outputs are shorter than {T.DEGENERATE_MIN_LENGTH_RATIO:g} of the "
                         "target"),
    "val_repetition_rate": (lambda v: v >= T.DEGENERATE_REPETITION_RATE,
                            f"≥ {T.DEGENERATE_REPETITION_RATE:g} of output bigrams are repeats"),
}


def _too_long(value: float) -> bool:
  return value > T.DEGENERATE_MAX_LENGTH_RATIO


def _since(values: np.ndarray, bad: Callable[[float], bool]) -> int:
  """Index where the final run of values satisfying `bad` began."""
  i = len(values) - 1
  while i > 0 and bad(values[i - 1]):
    i -= 1
  return i


def _decoding_problems(h: History) -> list[tuple[str, float, object, str]]:
  """(key, last value, since-epoch, what) for each decoding statistic that is degenerate now."""
  problems = []
  for key, (bad, what) in _CHECKS.items():
    curve = h.finite(key)
    if curve is None:
      continue
    last = float(curve.raw[-1])
    checks = [(bad, what)]
    if key == "val_length_ratio":
      checks.append((_too_long, f"outputs are longer than {T.DEGENERATE_MAX_LENGTH_RATIO:g} × the "
                                "target"))
    for check, text in checks:
      if check(last):
        problems.append((key, last, curve.epoch(_since(curve.raw, check)), text))
  return problems


def _sample_problems(h: History) -> list[tuple[str, float, object, str]]:
  """Degenerate statistics of the last logged val_samples."""
  for i in range(len(h.rows) - 1, -1, -1):
    samples = h.rows[i].get("val_samples")
    if isinstance(samples, list) and samples:
      stats = sample_stats(samples)
      break
  else:
    return []
  if stats is None:
    return []
  epoch = h.epoch_of_row(i)
  problems = []
  for name in ("empty_share", "length_ratio", "repetition_rate"):
    if name not in stats:
      continue
    key = f"val_{name}"
    bad, what = _CHECKS[key]
    if bad(stats[name]):
      problems.append((f"samples_{name}", stats[name], epoch, what))
    elif name == "length_ratio" and _too_long(stats[name]):
      problems.append((f"samples_{name}", stats[name], epoch, "outputs are too long"))
  return problems


def _top_share(row: dict) -> tuple[int, float] | None:
  """(class, share) of the most predicted class in a row's pred_class_hist."""
  hist = row.get("pred_class_hist")
  if not isinstance(hist, (list, tuple)) or len(hist) < 2:
    return None
  shares = np.array([curves.to_float(v) or 0.0 for v in hist], dtype=float)
  if shares.sum() <= 0:
    return None
  shares = shares / shares.sum()
  return int(shares.argmax()), float(shares.max())


def _class_collapse(h: History) -> tuple[str, float, object, str] | None:
  """A classifier predicting (nearly) one class, with accuracy no better than that explains."""
  logged = [(i, t) for i, t in ((i, _top_share(r)) for i, r in enumerate(h.rows)) if t]
  if not logged:
    return None
  last_row, (cls, top) = logged[-1]
  if top < T.CLASS_COLLAPSE_SHARE:
    return None
  acc = h.finite("val_accuracy")
  if acc is not None:
    frac = float(acc.raw[-1]) / (100.0 if acc.raw[-1] > 1.0 else 1.0)
    # On a balanced validation set such predictions score at most 1/C + (1 - top share). Higher
    # accuracy means the set itself is imbalanced and the skew is right, not a collapse.
    n_classes = len(h.rows[last_row]["pred_class_hist"])
    if frac > 1.0 / n_classes + (1.0 - top) + T.CLASS_COLLAPSE_ACC_MARGIN:
      return None
  since = last_row
  for i, (_, share) in reversed(logged[:-1]):
    if share < T.CLASS_COLLAPSE_SHARE:
      break
    since = i
  what = f"class {cls} takes {top:.0%} of the predictions"
  del last_row
  return ("pred_class_top_share", top, h.epoch_of_row(since), what)


def degenerate_predictions(h: History, found: set) -> Finding | None:
  """Sequence outputs that are mostly blank, empty, too short/long or repetitive; class collapse."""
  del found
  if len(h) < T.DEGENERATE_MIN_EPOCHS:
    return None  # early CTC models emit only blanks for a while; that is not yet a problem
  problems = _decoding_problems(h) + _sample_problems(h)
  sequence_outputs = bool(problems)
  collapse = _class_collapse(h)
  if collapse:
    problems.append(collapse)
  if not problems:
    return None
  numbers = {key: value for key, value, _, _ in problems}
  entropy = h.finite("pred_entropy")
  if entropy is not None:
    numbers["pred_entropy"] = float(entropy.raw[-1])
  since = min(float(epoch) for _, _, epoch, _ in problems)
  numbers["since_epoch"] = curves.as_label(since)
  details = "; ".join(f"{what} ({key} = {num(value)})" for key, value, _, what in problems)
  text = (f"Degenerate predictions at epoch {h.last_epoch} (since epoch "
          f"{numbers['since_epoch']}): {details}.")
  severity = ERROR if any(k.endswith("empty_share") and v >= 0.9 for k, v, _, _ in problems) \
      else WARNING
  young = ("CTC models emit only blanks for the first epochs." if sequence_outputs else
           "a classifier can favour one class for its first epochs.")
  alternatives = [Advice({}, f"Train longer first if the run is young: {young}"),
                  Advice({"optimizer.learning_rate":
                            scaled(h.config_float("optimizer.learning_rate"), 0.3, 3e-4)},
                         "If it persists, lower the learning rate and check that targets are not "
                         "empty and that input lengths exceed target lengths.")]
  if any("repetition" in k or "length_ratio" in k for k, _, _, _ in problems):
    alternatives.append(Advice({}, "For repetition or over-long outputs use a length penalty, "
                               "repetition penalty or coverage in decoding."))
  return make(h, "degenerate_predictions", severity,
              [numbers["since_epoch"], h.last_epoch], text, numbers, alternatives)


# --- gradient_problem ---------------------------------------------------------------------------


def _exploding(h: History) -> dict | None:
  """Global gradient norm non-finite or grown to GRAD_EXPLODE_FACTOR times its early median."""
  curve = h.curve("grad_norm")
  if curve is None or len(curve) < T.GRAD_MIN_EPOCHS:
    return None
  bad = ~np.isfinite(curve.raw)
  if bad.any():
    i = int(np.argmax(bad))
    return {"kind": "exploding", "epoch": curve.epoch(i), "grad_norm": float(curve.raw[i]),
            "what": f"the gradient norm is {curve.raw[i]} at epoch {curve.epoch(i)}"}
  early_n = min(3, len(curve) - 1)
  early = float(np.median(curve.raw[:early_n]))
  if early <= 0:
    return None
  over = np.nonzero(curve.raw[early_n:] >= T.GRAD_EXPLODE_FACTOR * early)[0]
  if not over.size:
    return None
  i = int(over[0]) + early_n
  return {"kind": "exploding", "epoch": curve.epoch(i), "grad_norm": float(curve.raw[i]),
          "early_grad_norm": early,
          "what": f"the gradient norm grew from {num(early)} to {num(curve.raw[i])} by epoch "
                  f"{curve.epoch(i)}"}


def _spiky(h: History) -> dict | None:
  """Epochs whose largest gradient norm dwarfs the epoch mean."""
  mean, peak = h.finite("grad_norm"), h.finite("grad_norm_max")
  if mean is None or peak is None:
    return None
  for i, epoch in enumerate(peak.epochs):
    m = h.value_at(mean, epoch)
    if m and m > 0 and peak.raw[i] >= T.GRAD_SPIKE_FACTOR * m:
      return {"kind": "spikes", "epoch": peak.epoch(i), "grad_norm_max": float(peak.raw[i]),
              "grad_norm": m,
              "what": f"at epoch {peak.epoch(i)} the largest gradient norm {num(peak.raw[i])} was "
                      f"{peak.raw[i] / m:.0f}× the epoch mean"}
  return None


def _layer_norms(row: dict) -> dict[str, float] | None:
  norms = row.get("layer_grad_norms")
  if not isinstance(norms, dict) or len(norms) < 2:
    return None
  values = {str(k): curves.to_float(v) for k, v in norms.items()}
  values = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
  return values if len(values) >= 2 else None


def _vanishing_layers(h: History) -> dict | None:
  """Layers whose gradient norm is a tiny fraction of the largest layer's, in the last 2 logs."""
  logged = [(i, n) for i, n in ((i, _layer_norms(r)) for i, r in enumerate(h.rows)) if n]
  if not logged:
    return None
  hits = []
  for i, norms in logged[-2:]:
    top = max(norms.values())
    if top <= 0:
      return None
    small = {k: v for k, v in norms.items() if v < T.GRAD_VANISH_LAYER_RATIO * top}
    if not small:
      return None
    hits.append((i, norms, small, top))
  i, norms, small, top = hits[-1]
  worst = min(small, key=small.get)
  return {"kind": "vanishing", "epoch": h.epoch_of_row(i), "layers": sorted(small),
          "smallest_layer": worst, "smallest_norm": float(small[worst]), "largest_norm": float(top),
          "what": f"{len(small)} of {len(norms)} layers get less than "
                  f"{T.GRAD_VANISH_LAYER_RATIO:g} of the largest layer's gradient norm "
                  f"(smallest: {worst}, {num(small[worst])} vs {num(top)})"}


def _vanishing_global(h: History) -> dict | None:
  """Global gradient norm collapsed while the training loss is still near where it started."""
  grad, train = h.finite("grad_norm"), h.train
  if grad is None or train is None or len(grad) < 3 or train.bad[0] <= 0:
    return None
  peak = float(np.max(grad.raw))
  if peak <= 0 or grad.raw[-1] > T.GRAD_VANISH_DROP * peak:
    return None
  if train.bad[-1] < T.UNDERFIT_NEAR_START_FRACTION * train.bad[0]:
    return None  # the loss fell: small gradients just mean a fitted model
  return {"kind": "vanishing", "epoch": grad.epoch(-1), "grad_norm": float(grad.raw[-1]),
          "peak_grad_norm": peak,
          "what": f"the gradient norm fell to {num(grad.raw[-1])} from {num(peak)} while "
                  f"{describe(train.key)} stayed at {num(train.raw[-1])}"}


def gradient_problem(h: History, found: set) -> Finding | None:
  """Exploding (growth, spikes, NaN) or vanishing (per-layer or global) gradient norms."""
  del found
  if len(h) < T.GRAD_MIN_EPOCHS:
    return None
  problem = _exploding(h) or _spiky(h) or _vanishing_layers(h) or _vanishing_global(h)
  if problem is None:
    return None
  what = problem.pop("what")
  epoch = problem["epoch"]
  if problem["kind"] == "vanishing":
    text = f"Vanishing gradients: {what}."
    alternatives = [Advice({}, "Add residual connections or normalisation layers, use ReLU-family "
                           "activations and a scaled initialisation (He/Glorot)."),
                    Advice({"schedule.warmup_epochs": 5},
                           "Warm up the learning rate so early layers are not frozen out.")]
  else:
    text = f"Exploding gradients: {what}."
    alternatives = [Advice({"optimizer.grad_clip_norm": 1.0}, "Clip the global gradient norm at 1.0."),
                    Advice({"optimizer.learning_rate":
                            scaled(h.config_float("optimizer.learning_rate"), 0.3, 3e-4)},
                           "Lower the learning rate about threefold.")]
  return make(h, "gradient_problem", WARNING, [epoch], text, problem, alternatives)

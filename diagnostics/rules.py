"""Rules on the loss/metric/learning-rate curves: one function per finding id.

Each rule takes the History and the ids found so far (rules run in a fixed order so that, e.g.,
underfitting can defer to no_learning) and returns a Finding when its evidence holds, else None.
Every threshold is a named constant in diagnostics.thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from diagnostics import curves
from diagnostics import thresholds as T
from diagnostics.advice import Advice, round_epochs, scaled
from diagnostics.common import describe, make, num, pct
from diagnostics.finding import ERROR, INFO, WARNING, Finding
from diagnostics.history import History

_TINY = 1e-12


def _level(value: float) -> float:
  """A strictly positive scale for relative comparisons."""
  return max(abs(value), _TINY)


def _lr_now(h: History) -> float | None:
  """The configured learning rate, else the peak logged one (the rate a user would scale)."""
  configured = h.config_float("optimizer.learning_rate")
  if configured:
    return configured
  lr = h.finite("learning_rate")
  return float(np.max(lr.raw)) if lr is not None else None


def _to(h: History, value: float) -> str:
  """' (to 3e-4)' when the run's learning rate is known; '' when the value would be invented.

  Without a configured or logged learning rate the factor is all the log supports.
  """
  return f" (to {value:g})" if _lr_now(h) is not None else ""


# --- diverged -----------------------------------------------------------------------------------


def _first_nonfinite(h: History) -> tuple[int, str] | None:
  """(row index, what) of the first NaN/Inf loss or `nonfinite` flag."""
  hits = []
  for key in ("train_loss", "val_loss", h.train_key, h.val_key):
    curve = h.curve(key) if key else None
    if curve is not None:
      bad = ~np.isfinite(curve.raw)
      if bad.any():
        i = int(np.argmax(bad))
        hits.append((int(curve.rows[i]), f"{describe(key)} is {curve.raw[i]}"))
  for i, row in enumerate(h.rows):
    if row.get("nonfinite") is True:
      hits.append((i, "a NaN/Inf loss was flagged during training"))
      break
  return min(hits) if hits else None


def _explosion(h: History) -> tuple[int, float, float, str] | None:
  """(row index, value, limit, what the limit is) of the first loss that exploded past its limit.

  A training loss explodes when it exceeds DIVERGED_INITIAL_FACTOR times its first-epoch value (and,
  when C is known, is worse than guessing), or DIVERGED_CHANCE_FACTOR * ln(C). A validation loss may
  legitimately triple while overfitting, so it is judged by the chance limit only.
  """
  chance = h.chance_loss
  limits = []  # (limit, description); the lowest applicable limit is the one that counts
  curve = h.finite("train_loss")
  if curve is not None and len(curve) >= 2:
    if curve.raw[0] > 0:
      initial = T.DIVERGED_INITIAL_FACTOR * float(curve.raw[0])
      if chance and chance > initial:
        limits.append((chance, f"chance ln({h.num_classes}) (and > {T.DIVERGED_INITIAL_FACTOR:g}x "
                               "the first epoch's loss)"))
      else:
        limits.append((initial, f"{T.DIVERGED_INITIAL_FACTOR:g}x the first epoch's loss"))
  else:
    curve = h.finite("val_loss")
    if curve is None or len(curve) < 2:
      return None
  if chance:
    limits.append((T.DIVERGED_CHANCE_FACTOR * chance,
                   f"{T.DIVERGED_CHANCE_FACTOR:g}x chance ln({h.num_classes})"))
  if not limits:
    return None
  limit, what = min(limits)
  over = np.nonzero(curve.raw[1:] > limit)[0]
  hits = [int(over[0]) + 1] if over.size else []
  median = float(np.median(curve.raw))
  absurd = T.DIVERGED_MEDIAN_FACTOR * median
  if median > 0:
    blown = np.nonzero(curve.raw > absurd)[0]  # The first epoch too: no baseline is needed.
    if blown.size and (not hits or int(blown[0]) < hits[0]):
      hits = [int(blown[0])]
      limit, what = absurd, f"{T.DIVERGED_MEDIAN_FACTOR:g}x the run's median {describe(curve.key)}"
  if not hits:
    return None
  i = hits[0]
  return int(curve.rows[i]), float(curve.raw[i]), float(limit), what


def diverged(h: History, found: set) -> Finding | None:
  """NaN/Inf losses or a loss explosion; reports the epoch where it happened."""
  del found
  nonfinite = _first_nonfinite(h)
  explosion = _explosion(h)
  if nonfinite is None and explosion is None:
    if h.info.status != "diverged":
      return None
    return make(h, "diverged", ERROR, [h.last_epoch],
                "The run's summary says it diverged.", {"status": "diverged"}, _diverged_advice(h))
  if nonfinite is not None and (explosion is None or nonfinite[0] <= explosion[0]):
    row, what = nonfinite
    epoch = h.epoch_of_row(row)
    text = f"Diverged at epoch {epoch}: {what}."
    numbers = {"epoch": epoch, "kind": "nonfinite"}
  else:
    row, value, limit, what = explosion
    epoch = h.epoch_of_row(row)
    text = f"Loss exploded at epoch {epoch}: {num(value)}, above {num(limit)} = {what}."
    numbers = {"epoch": epoch, "kind": "explosion", "loss": value, "limit": limit}
  numbers["epochs_after"] = len(h) - 1 - row
  return make(h, "diverged", ERROR, [epoch], text, numbers, _diverged_advice(h))


def _diverged_advice(h: History) -> list[Advice]:
  lr = scaled(_lr_now(h), 0.1, 1e-4)
  return [
      Advice({"optimizer.learning_rate": lr, "optimizer.grad_clip_norm": 1.0},
             f"Lower the learning rate about tenfold{_to(h, lr)} and clip the gradient norm at "
             "1.0."),
      Advice({"schedule.warmup_epochs": 5}, "Warm the learning rate up over the first ~5 epochs."),
      Advice({}, "Check the loss for log(0) or division by zero and the inputs for NaN/Inf."),
  ]


# --- no_learning --------------------------------------------------------------------------------


def _chance_accuracy_limit(num_classes: int) -> float:
  chance = 1.0 / num_classes
  return min(chance * (1 + T.NO_LEARNING_ACC_REL_MARGIN), chance + T.NO_LEARNING_ACC_ABS_MARGIN)


def _accuracy_fraction(curve) -> np.ndarray:
  """Accuracies as fractions (logs in percent are divided by 100)."""
  raw = curve.raw
  return raw / 100.0 if np.nanmax(raw) > 1.0 else raw


def _at_chance(h: History) -> dict | None:
  """Evidence that the loss or accuracy sits at chance for the last epochs, when C is known."""
  if not h.num_classes:
    return None
  window = T.NO_LEARNING_WINDOW
  out = {}
  loss = h.finite("train_loss") or h.finite("val_loss")
  if loss is not None and len(loss) >= max(window, T.NO_LEARNING_MIN_EPOCHS):
    last = loss.raw[-window:]
    if np.all(np.abs(last - h.chance_loss) <= T.NO_LEARNING_CHANCE_TOL * h.chance_loss):
      out.update(loss_key=loss.key, loss_last=float(loss.raw[-1]), chance_loss=h.chance_loss)
  acc = h.finite("val_accuracy") or h.finite("train_accuracy")
  acc_at_chance = None
  if acc is not None and len(acc) >= max(window, T.NO_LEARNING_MIN_EPOCHS):
    limit = _chance_accuracy_limit(h.num_classes)
    frac = _accuracy_fraction(acc)
    acc_at_chance = bool(np.all(frac[-window:] <= limit))
    if acc_at_chance:
      out.update(accuracy_key=acc.key, accuracy_last=float(frac[-1]), chance_accuracy_limit=limit)
  entropy = h.finite("pred_entropy")
  if entropy is not None and len(entropy) >= max(window, T.NO_LEARNING_MIN_EPOCHS):
    # Mean predictive entropy near ln(C): the model predicts (nearly) uniform probabilities.
    if np.all(entropy.raw[-window:] >= (1 - T.NO_LEARNING_CHANCE_TOL) * h.chance_loss):
      out.update(pred_entropy_last=float(entropy.raw[-1]), chance_loss=h.chance_loss)
  # A loss at ln(C) with clearly better-than-chance accuracy is over-confidence, not chance.
  if acc_at_chance is False:
    return None
  # A loss still falling steadily near ln(C) is learning slowly (lr_too_low), not stuck at chance.
  if loss is not None and len(loss) >= window:
    drop = -curves.recent_slope(loss, min(T.TREND_WINDOW, len(loss)))
    steady = np.all(np.diff(loss.raw[-window:]) < 0)
    if steady and drop >= T.LR_LOW_MIN_REL_SLOPE * float(loss.raw[0]):
      return None
  return out or None


def _does_not_move(h: History) -> dict | None:
  """Evidence that the loss has not moved at all since the first epoch."""
  loss = h.train or h.val
  if loss is None or len(loss) < T.NO_LEARNING_FLAT_MIN_EPOCHS:
    return None
  for curve in (h.train, h.val):
    if curve is None:
      continue
    mean = float(np.mean(curve.bad))
    if mean <= 1e-6 or np.ptp(curve.bad) > T.NO_LEARNING_FLAT_REL * mean:
      return None
  # A flat loss next to a clearly learned accuracy is a logging oddity, not a model that learns
  # nothing: accuracy above chance (C known) or above NO_LEARNING_FITTED_ACCURACY vetoes.
  for key in ("train_accuracy", "val_accuracy"):
    acc = h.finite(key)
    if acc is None:
      continue
    last = float(_accuracy_fraction(acc)[-1])
    if last >= T.NO_LEARNING_FITTED_ACCURACY or (
        h.num_classes and last > _chance_accuracy_limit(h.num_classes)):
      return None
  return {"loss_key": loss.key, "relative_range": float(np.ptp(loss.bad) / np.mean(loss.bad)),
          "loss_first": float(loss.raw[0]), "loss_last": float(loss.raw[-1])}


def _frozen_predictions(h: History) -> dict | None:
  """Evidence that validation accuracy never moved, first epoch included, on a flat loss."""
  acc = h.finite("val_accuracy")
  if acc is None or len(acc) < T.NO_LEARNING_FLAT_MIN_EPOCHS:
    return None
  frac = _accuracy_fraction(acc)
  if np.ptp(frac) > T.NO_LEARNING_FROZEN_ACC or float(frac[-1]) >= T.NO_LEARNING_FITTED_ACCURACY:
    return None
  # As for a flat loss: accuracy clearly above chance, when C is known, is a logging oddity.
  if h.num_classes and float(frac[-1]) > _chance_accuracy_limit(h.num_classes):
    return None
  loss = h.finite("val_loss")
  if loss is not None:
    mean = float(np.mean(loss.bad))
    if mean <= 1e-6 or np.ptp(loss.bad) > T.NO_LEARNING_FLAT_REL * mean:
      return None
  return {"accuracy_first": float(frac[0]), "accuracy_last": float(frac[-1]),
          "accuracy_range": float(np.ptp(frac)),
          **({"val_loss_range_rel": float(np.ptp(loss.bad) / np.mean(loss.bad))}
             if loss is not None else {})}


def no_learning(h: History, found: set) -> Finding | None:
  """Loss at chance level (ln C) or chance accuracy, a loss that does not move at all, or a
  validation accuracy that never changes."""
  if "diverged" in found:
    return None
  chance = _at_chance(h)
  flat = _does_not_move(h)
  frozen = None if chance or flat else _frozen_predictions(h)
  if frozen:
    acc = h.finite("val_accuracy")
    loss_part = (f" and validation loss moves {frozen['val_loss_range_rel'] * 100:.2g}%"
                 if "val_loss_range_rel" in frozen else "")
    text = (f"Validation accuracy is frozen at {num(frozen['accuracy_last'])} (range "
            f"{num(frozen['accuracy_range'])} over all {len(acc)} epochs){loss_part}: the "
            "predictions do not change, as a model predicting one class would score.")
    return make(h, "no_learning", ERROR, [acc.epoch(0), acc.epoch(-1)], text, frozen,
                _no_learning_advice(h))
  if not chance and not flat:
    return None
  n_window = min(T.NO_LEARNING_WINDOW, len(h))
  epochs = [h.epoch_of_row(i) for i in range(len(h) - n_window, len(h))]
  if chance:
    parts = []
    if "loss_last" in chance:
      parts.append(f"{describe(chance['loss_key'])} {num(chance['loss_last'])} ≈ "
                   f"ln({h.num_classes}) = {num(chance['chance_loss'])}")
    if "accuracy_last" in chance:
      parts.append(f"{describe(chance['accuracy_key'])} {num(chance['accuracy_last'])} ≤ "
                   f"{num(chance['chance_accuracy_limit'])} (chance 1/{h.num_classes})")
    if "pred_entropy_last" in chance:
      parts.append(f"mean predictive entropy {num(chance['pred_entropy_last'])} nats ≈ ln("
                   f"{h.num_classes}) (uniform predictions)")
    text = (f"The model is at chance for the last {n_window} epochs: " + "; ".join(parts) + ".")
    numbers = dict(chance, num_classes=h.num_classes)
    for key in ("loss_key", "accuracy_key"):
      numbers.pop(key, None)
  else:
    text = (f"{describe(flat['loss_key']).capitalize()} does not move: it varies by "
            f"{flat['relative_range'] * 100:.2g}% over all {len(h)} epochs "
            f"({num(flat['loss_first'])} -> {num(flat['loss_last'])}).")
    numbers = {k: v for k, v in flat.items() if k != "loss_key"}
  lr = h.finite("learning_rate")
  if lr is not None:
    numbers["learning_rate_last"] = float(lr.raw[-1])
    if float(np.max(lr.raw)) <= 0:
      text = text[:-1] + "; the learning rate is 0."
  return make(h, "no_learning", ERROR, epochs, text, numbers, _no_learning_advice(h))


def _no_learning_advice(h: History) -> list[Advice]:
  lr = _lr_now(h)
  down, up = scaled(lr, 0.1, 1e-4), scaled(lr, 10.0, 1e-2)
  return [
      Advice({}, "Check that labels match inputs (shuffling them together), that inputs are "
             "normalised and that the loss gets the model's logits."),
      Advice({"optimizer.learning_rate": down}, "If the loss jumped up in the first epoch, lower the "
             f"learning rate about tenfold{_to(h, down)}."),
      Advice({"optimizer.learning_rate": up},
             f"If it never moved, raise the learning rate about tenfold{_to(h, up)}."),
  ]


# --- lr_too_high --------------------------------------------------------------------------------


def _restart_rows(h: History) -> set[int]:
  """Rows where a cyclic schedule restarted (the rate jumped up after decreasing)."""
  lr = h.finite("learning_rate")
  out = set()
  if lr is None:
    return out
  for i in range(2, len(lr)):
    if lr.raw[i] > 1.5 * lr.raw[i - 1] and lr.raw[i - 1] < lr.raw[i - 2]:
      out.update({int(lr.rows[i]), int(lr.rows[i]) + 1})
  return out


def lr_too_high(h: History, found: set) -> Finding | None:
  """Training loss oscillating or spiking more than its trend moves, or rising above chance early.
  """
  curve = h.train or h.val
  if curve is None:
    return None
  numbers, reasons, epochs = {}, [], []
  chance = h.chance_loss
  early_rise = chance and curve.key == "train_loss" and (
      curve.raw[0] >= T.LR_HIGH_CHANCE_FACTOR * chance or (
          curve.raw[0] >= T.LR_HIGH_EARLY_FACTOR * chance
          and curve.raw[-1] >= T.LR_HIGH_STUCK_FRACTION * chance
          and len(curve) >= 2
          and curve.raw[0] - float(np.min(curve.raw[1:])) >= T.LR_HIGH_EARLY_DROP * curve.raw[0]))
  if early_rise:
    numbers.update(first_epoch_loss=float(curve.raw[0]), chance_loss=chance,
                   last_loss=float(curve.raw[-1]))
    reasons.append(f"the first epoch's mean {describe(curve.key)} {num(curve.raw[0])} is above "
                   f"chance ln({h.num_classes}) = {num(chance)}, so the loss rose during epoch "
                   f"{curve.epoch(0)}, and it ends at {num(curve.raw[-1])}, still near chance")
    epochs.append(curve.epoch(0))
  if len(curve) >= T.LR_HIGH_MIN_EPOCHS and "no_learning" not in found:
    restarts = _restart_rows(h)
    skip = [i for i in range(1, len(curve)) if int(curve.rows[i]) in restarts]
    rises = curves.sum_of_rises(curve.bad, skip)
    top = float(np.max(np.abs(curve.bad)))
    net = float(curve.bad[0] - curve.bad[-1])
    spikes = None
    if rises > 0 and rises >= T.LR_HIGH_MIN_UP_REL * top and \
        rises >= T.LR_HIGH_OSC_RATIO * max(net, 0.0):
      diffs = np.diff(curve.bad)
      spikes = [curve.epoch(i + 1) for i in np.nonzero(diffs >= T.LR_HIGH_MIN_UP_REL * top)[0]
                if i + 1 not in skip]
      if _validation_unharmed(h, curve, spikes):
        spikes = None
    if spikes is not None:
      numbers.update(sum_of_rises=rises, net_decrease=net, largest_value=top,
                     largest_rise=float(np.max(diffs)), rise_epochs=spikes)
      trend = (f"its net decrease over the run is only {num(net)}" if net > 0 else
               f"it ends {num(-net)} higher than it started")
      reasons.append(f"{describe(curve.key)} rose by {num(rises)} in total, epoch over epoch, "
                     f"while {trend}")
      epochs.extend(spikes)
  if not reasons:
    return None
  severity = ERROR if curve.bad[-1] > curve.bad[0] else WARNING
  text = "Learning rate too high: " + "; ".join(reasons) + "."
  return make(h, "lr_too_high", severity, sorted(set(epochs)), text, numbers, _lr_high_advice(h))


def _validation_unharmed(h: History, curve, spike_epochs: list) -> bool:
  """True when the validation curve improved at every epoch the training curve spiked, and overall.

  A step the learning rate makes too large throws validation off too. Training losses that rise
  while validation improves epoch after epoch come from the training objective itself changing (a
  detector's warm-up and mosaic augmentation from scratch), not from the optimizer.
  """
  val = h.val
  if val is None or val.key == curve.key or not spike_epochs or len(val) < 2:
    return False
  if float(val.bad[-1]) >= float(val.bad[0]):
    return False
  for epoch in spike_epochs:
    hits = np.nonzero(val.epochs == float(epoch))[0]
    if not hits.size or hits[0] == 0 or val.bad[hits[0]] > val.bad[hits[0] - 1]:
      return False
  return True


def _lr_high_advice(h: History) -> list[Advice]:
  lr = scaled(_lr_now(h), 0.3, 3e-4)
  alternatives = [Advice({"optimizer.learning_rate": lr},
                         f"Lower the learning rate about threefold{_to(h, lr)}.")]
  if not h.config_float("schedule.warmup_epochs"):
    alternatives.append(Advice({"schedule.warmup_epochs": 5},
                               "Warm the learning rate up linearly over the first ~5 epochs."))
  if not h.config_float("optimizer.grad_clip_norm"):
    alternatives.append(Advice({"optimizer.grad_clip_norm": 1.0}, "Clip the global gradient norm at 1.0."))
  return alternatives


# --- lr_too_low ---------------------------------------------------------------------------------


def lr_too_low(h: History, found: set) -> Finding | None:
  """A smooth, steady (not decelerating) and slow decrease of the training loss."""
  if found & {"no_learning", "underfitting", "lr_collapsed", "lr_too_high", "diverged"}:
    return None
  curve = h.train
  if curve is None or len(curve) < T.LR_LOW_MIN_EPOCHS or curve.bad[0] <= 0:
    return None
  first, last = float(curve.bad[0]), float(curve.bad[-1])
  net = first - last
  per_epoch = net / max(float(np.ptp(curve.epochs)), 1.0)
  if net <= 0 or not T.LR_LOW_MIN_REL_SLOPE * first <= per_epoch <= T.LR_LOW_MAX_REL_SLOPE * first:
    return None
  if net > T.LR_LOW_MAX_TOTAL_DROP * first:
    return None
  if curves.sum_of_rises(curve.bad) > T.LR_LOW_MAX_UP_FRACTION * net:
    return None
  half = len(curve) // 2
  early = curves.slope(curve.epochs[: half + 1], curve.bad[: half + 1])
  late = curves.slope(curve.epochs[half:], curve.bad[half:])
  if early >= 0:
    return None
  linearity = late / early
  if not T.LR_LOW_MIN_LINEARITY <= linearity <= T.LR_LOW_MAX_LINEARITY:
    return None
  text = (f"{describe(curve.key).capitalize()} falls slowly and steadily: {num(first)} -> "
          f"{num(last)} ({pct(-net / first)}) over {len(curve)} epochs at about {num(per_epoch)} "
          f"per epoch, without the slow-down of a well-tuned run (late/early slope "
          f"{linearity:.2f}).")
  numbers = {"first": first, "last": last, "total_drop_rel": net / first,
             "drop_per_epoch": per_epoch, "late_over_early_slope": linearity}
  lr = scaled(_lr_now(h), 3.0, 1e-3)
  alternatives = [Advice({"optimizer.learning_rate": lr},
                         f"Raise the learning rate about threefold{_to(h, lr)}; try tenfold too.")]
  return make(h, "lr_too_low", WARNING, [curve.epoch(0), curve.epoch(-1)], text, numbers,
              alternatives)


# --- lr_collapsed -------------------------------------------------------------------------------


def _val_improving_before(h: History, row: int) -> tuple[bool, float | None]:
  """Whether validation improved over the epochs before `row`, and the relative gain."""
  val = h.val
  if val is None:
    return False, None
  upto = np.nonzero(val.rows <= row)[0]
  if upto.size < 2:
    return False, None
  window = upto[-(T.LR_COLLAPSE_LOOKBACK + 1):]
  before, at = float(val.bad[window[0]]), float(val.bad[window[-1]])
  gain = (before - at) / _level(at)
  return gain >= T.LR_COLLAPSE_MIN_IMPROVE_REL, gain


def lr_collapsed(h: History, found: set) -> Finding | None:
  """The learning rate fell below 1% of its peak too early or while validation still improved."""
  del found
  lr = h.finite("learning_rate")
  if lr is None or len(lr) < T.LR_COLLAPSE_MIN_EPOCHS:
    return None
  peak = np.maximum.accumulate(lr.raw)
  below = (peak > 0) & (lr.raw < T.LR_COLLAPSE_FRACTION * peak)
  if not below.any():
    return None
  c = int(np.argmax(below))
  row = int(lr.rows[c])
  total = len(h)
  tail = total - row  # epochs run with the collapsed rate, the collapse epoch included
  early = row + 1 <= T.LR_COLLAPSE_EARLY_FRACTION * total
  improving, gain = _val_improving_before(h, row)
  if not early and not (improving and tail >= T.LR_COLLAPSE_MIN_TAIL_FRACTION * total):
    return None
  epoch = lr.epoch(c)
  numbers = {"collapse_epoch": epoch, "peak_lr": float(peak[c]), "lr_at_collapse": float(lr.raw[c]),
             "lr_last": float(lr.raw[-1]), "epochs_collapsed": tail,
             "fraction_of_run": tail / total}
  why = f"within the first {T.LR_COLLAPSE_EARLY_FRACTION:.0%} of the run" if early else ""
  if gain is not None:
    numbers["val_gain_before_rel"] = gain
    if improving:
      why = (why + " and " if why else "") + (
          f"while {describe(h.val_key)} was still improving ({gain:.1%} better over the "
          f"{T.LR_COLLAPSE_LOOKBACK} epochs before)")
  text = (f"The learning rate fell to {num(lr.raw[c])} (< {T.LR_COLLAPSE_FRACTION:.0%} of its peak "
          f"{num(peak[c])}) at epoch {epoch}, {why}; {tail} of {total} epochs ran at that rate.")
  alternatives = [
      Advice({"schedule.name": "cosine"},
             "Decay the learning rate over the whole run (e.g. cosine) instead of cutting it "
             "early."),
      Advice({}, "If a reduce-on-plateau scheduler is used, give it more patience (≥ 5 epochs) "
             f"and a floor (min_lr ≈ {num(peak[c] * T.LR_COLLAPSE_FRACTION)})."),
  ]
  return make(h, "lr_collapsed", WARNING, [epoch, lr.epoch(-1)], text, numbers, alternatives)


# --- overfitting --------------------------------------------------------------------------------


def _gap(h: History, val_key: str, epoch_label: float, val_bad: float) -> float | None:
  """Validation minus training value of the same metric at an epoch (lower-better units)."""
  partner = h.partner(val_key)
  if partner is None:
    return None
  other = h.value_at(h.finite(partner), epoch_label)
  return None if other is None else val_bad - other


def overfitting(h: History, found: set) -> Finding | None:
  """Validation has passed its best (beyond noise) while training keeps improving."""
  if found & {"diverged", "no_learning"}:
    return None
  val, train = h.val, h.train
  if val is None or train is None or len(val) < T.OVERFIT_MIN_EPOCHS:
    return None
  b = int(np.argmin(val.bad))
  smooth = curves.smooth3(val.bad)
  b_smooth = int(np.argmin(smooth))
  past = len(val) - 1 - b
  past_smooth = len(val) - 1 - b_smooth
  if min(past, past_smooth) < T.OVERFIT_MIN_EPOCHS_PAST_BEST:
    return None
  best = float(val.bad[b])
  # The rise is measured from the smoothed best level: the raw minimum of a noisy plateau is an
  # outlier by construction and would make any plateau look like a rise.
  best_level = float(smooth[b_smooth])
  recent = float(np.mean(val.bad[-min(3, past_smooth):]))
  rise = recent - best_level
  sigma = curves.noise_sigma(val.bad) or 0.0
  if rise < T.OVERFIT_MIN_RISE_REL * _level(best_level) or rise < T.NOISE_MULT * sigma:
    return _memorising(h, val, train, b)
  best_epoch = val.epochs[b]
  train_at_best = h.value_at(train, best_epoch)
  train_now = float(train.bad[-1])
  if train_at_best is None:
    return None
  train_gain = train_at_best - train_now
  if train_gain < T.OVERFIT_MIN_TRAIN_IMPROVE_REL * _level(train_at_best):
    return None
  rise_rel = rise / _level(best_level)
  numbers = {
      "best_epoch": val.epoch(b), "last_epoch": val.epoch(-1), "epochs_past_best": past,
      "val_best": float(val.raw[b]), "val_last": float(val.raw[-1]),
      "val_recent_mean": val.to_raw(recent), "val_best_smoothed": val.to_raw(best_level),
      "val_rise_rel": rise_rel, "noise": sigma,
      "train_at_best": float(train.raw[np.nonzero(train.epochs == best_epoch)[0][0]]),
      "train_last": float(train.raw[-1]),
  }
  gap_text = ""
  gap_best = _gap(h, val.key, best_epoch, best)
  gap_now = _gap(h, val.key, val.epochs[-1], float(val.bad[-1]))
  if gap_best is not None and gap_now is not None:
    growth = (gap_now - gap_best) / max(past, 1)
    numbers.update(gap_at_best=gap_best, gap_last=gap_now, gap_growth_per_epoch=growth)
    gap_text = (f"; the validation-training gap grew from {num(gap_best)} to {num(gap_now)} "
                f"({num(growth)} per epoch)")
  text = (f"{describe(val.key).capitalize()} was best at epoch {val.epoch(b)} ({num(val.raw[b])}) "
          f"and is {rise_rel:.0%} worse over the last epochs (now {num(val.raw[-1])}) while "
          f"{describe(train.key)} kept improving ({num(numbers['train_at_best'])} -> "
          f"{num(train.raw[-1])}){gap_text}.")
  metric_note = _metric_still_improving(h)
  if metric_note:
    numbers["val_metric_best_epoch"] = metric_note
    text = text[:-1] + f"; {describe(h.val_metric_key)} still peaked late (epoch {metric_note})."
  severity = ERROR if rise_rel >= T.OVERFIT_SEVERE_RISE_REL else WARNING
  return make(h, "overfitting", severity, [val.epoch(b), val.epoch(-1)], text, numbers,
              _overfitting_advice(h, val.epoch(b)))


def _memorising(h: History, val, train, b: int) -> Finding | None:
  """Overfitting without a rise: training loss near zero while validation stalls far above it."""
  if val.key != "val_loss" or train.key != "train_loss":
    return None
  past = len(val) - 1 - b
  if past < T.OVERFIT_MEMORISE_STALL_EPOCHS:
    return None
  train_last, val_last = float(train.raw[-1]), float(val.raw[-1])
  if train_last > T.OVERFIT_MEMORISE_GAP_RATIO * val_last:
    return None
  train_acc, val_acc = h.finite("train_accuracy"), h.finite("val_accuracy")
  if train_acc is not None and val_acc is not None:
    if float(train_acc.raw[-1]) - float(val_acc.raw[-1]) < T.OVERFIT_MEMORISE_ACC_GAP:
      return None
  elif train_last > T.OVERFIT_MEMORISE_GAP_RATIO_NO_ACC * val_last:
    return None
  train_at_best = h.value_at(train, val.epochs[b])
  if train_at_best is None or train_at_best - train_last < (
      T.OVERFIT_MIN_TRAIN_IMPROVE_REL * _level(train_at_best)):
    return None
  ratio = val_last / max(train_last, _TINY)
  numbers = {"best_epoch": val.epoch(b), "last_epoch": val.epoch(-1), "epochs_past_best": past,
             "val_best": float(val.raw[b]), "val_last": val_last,
             "train_at_best": float(train_at_best), "train_last": train_last,
             "gap_at_best": float(val.raw[b]) - float(train_at_best),
             "gap_last": val_last - train_last, "val_to_train_ratio": ratio}
  text = (f"Memorising: {describe(val.key)} has not improved since epoch {val.epoch(b)} "
          f"({num(val.raw[b])}; now {num(val_last)}) while {describe(train.key)} fell from "
          f"{num(train_at_best)} to {num(train_last)}, {ratio:.0f}x below it; the gap grew from "
          f"{num(numbers['gap_at_best'])} to {num(numbers['gap_last'])}.")
  return make(h, "overfitting", WARNING, [val.epoch(b), val.epoch(-1)], text, numbers,
              _overfitting_advice(h, val.epoch(b)))


def _metric_still_improving(h: History) -> int | float | None:
  """Best epoch of the main validation metric when the loss overfits but the metric peaks last."""
  key = h.val_metric_key
  if h.val_key != "val_loss" or key is None:
    return None
  metric = h.finite(key)
  if metric is None:
    return None
  b = int(np.argmin(metric.bad))
  return metric.epoch(b) if b >= len(metric) - 2 else None


def _overfitting_advice(h: History, best_epoch) -> list[Advice]:
  dropout = h.config_float("model.dropout") or 0.0
  new_dropout = round(min(0.5, max(0.3, dropout + 0.2)), 2)
  wd = scaled(h.config_float("optimizer.weight_decay"), 10.0, 1e-3)
  patience = h.info.patience or T.DEFAULT_PATIENCE
  alternatives = [
      Advice({"model.dropout": new_dropout, "optimizer.weight_decay": wd},
             f"Regularise: dropout about {new_dropout:g} and weight decay about {wd:g}."),
      Advice({"stopping.patience": patience},
             f"Stop early on the validation metric (patience {patience}); the best epoch was "
             f"{best_epoch}."),
  ]
  if h.num_classes and not h.config_float("task.label_smoothing"):
    alternatives.append(Advice({"task.label_smoothing": 0.1}, "Use label smoothing of 0.1."))
  alternatives.append(Advice({}, "Get more training data or use data augmentation."))
  return alternatives


# --- not_converged ------------------------------------------------------------------------------


def _not_converged_short(h: History) -> Finding | None:
  """A run of one or two epochs whose last epoch was still improving fast within the epoch."""
  train, val = h.finite("train_loss"), h.finite("val_loss")
  if train is None or val is None or len(val) != len(train):
    return None
  mean_train, end_val = float(train.raw[-1]), float(val.raw[-1])
  if mean_train <= 0 or end_val > (1 - T.NOT_CONVERGED_WITHIN_EPOCH_DROP) * mean_train:
    return None
  drop = 1 - end_val / mean_train
  severity = WARNING
  numbers = {"key": "val_loss", "epochs": len(val), "epoch_mean_train_loss": mean_train,
             "end_of_epoch_val_loss": end_val, "within_epoch_drop": drop}
  text = (f"Only {len(val)} epoch(s): the validation loss at the end ({end_val:.3g}) is "
          f"{100 * drop:.0f}% below the epoch's mean training loss ({mean_train:.3g}), so the model "
          "was still improving fast when training stopped.")
  return make(h, "not_converged", severity, [val.epoch(-1)], text, numbers,
              _not_converged_advice(h, None, False))


def not_converged(h: History, found: set) -> Finding | None:
  """Validation (and training) still improving at the last epoch; estimates epochs to a plateau."""
  if found & {"diverged", "no_learning", "overfitting"}:
    return None
  curve = h.val or h.train
  if curve is None:
    return None
  if len(curve) < T.NOT_CONVERGED_MIN_EPOCHS:
    return _not_converged_short(h)
  n = len(curve)
  window = min(T.TREND_WINDOW, n)
  if int(np.argmin(curve.bad)) < n - 2:
    return None
  slope, why = _significant_descent(curve, window)
  if why == "noise" and int(np.argmin(curve.bad)) == n - 1 and n // 2 > window:
    # A noisy curve (a detector's validation loss) hides a sizeable descent in five epochs; best
    # at the last epoch and falling significantly over the recent half, it is still improving.
    # (A descent too small over five epochs is a plateau, whatever the longer window says.)
    window = n // 2
    slope, why = _significant_descent(curve, window)
    # And the recent half made a real share of the run's progress; a curve levelling off
    # (most of its descent early, a tail left) is not held to be still improving.
    travelled = float(np.max(curve.bad) - np.min(curve.bad))
    if slope is not None and -slope * (window - 1) < T.NOT_CONVERGED_NOISY_SHARE * travelled:
      slope = None
  if slope is None:
    return None
  rel = -slope / _level(float(curve.bad[-1]))
  train = h.train
  if train is not None and train.key != curve.key and len(train) >= 2:
    if curves.recent_slope(train, min(window, len(train))) >= 0:
      return None
  numbers = {"key": curve.key, "last_value": float(curve.raw[-1]), "slope_per_epoch": -slope,
             "rel_slope_per_epoch": rel, "window": window}
  extra, capped, gain = _plateau_estimate(h, curve)
  numbers.update(epochs_to_plateau=extra, estimate_capped=capped)
  if gain is not None:
    numbers["expected_gain_rel"] = gain
  if extra is None:
    # Short run: a steep recent improvement alone says training stopped too soon.
    severity = WARNING if rel >= T.NOT_CONVERGED_WARN_GAIN_REL else INFO
    estimate = f"{n} epochs are too few to estimate when it plateaus"
  else:
    big = capped or gain >= T.NOT_CONVERGED_WARN_GAIN_REL
    severity = WARNING if big and rel >= T.NOT_CONVERGED_WARN_REL_SLOPE else INFO
    estimate = (f"an exponential fit reaches a plateau after {'more than' if capped else 'about'} "
                f"{extra} further epochs")
  text = (f"{describe(curve.key).capitalize()} is still improving at epoch {curve.epoch(-1)} "
          f"({rel * 100:.2g}% per epoch over the last {window} epochs); {estimate}.")
  stalled = _metric_stalled(h, curve.key, window)
  if stalled is not None:
    # The loss still improves but the metric people report does not: calibration, not skill.
    severity = INFO
    numbers["metric_best_epoch"] = stalled
    text = text[:-1] + (f", but {describe(h.val_metric_key)} has not improved since epoch "
                        f"{stalled}.")
  return make(h, "not_converged", severity, [curve.epoch(-1)], text, numbers,
              _not_converged_advice(h, extra, capped))


def _metric_stalled(h: History, curve_key: str, window: int) -> int | float | None:
  """Best epoch of the main validation metric when it set no new best in the last `window` epochs
  (only when the curve judged is the validation loss and such a metric is logged)."""
  key = h.val_metric_key
  if curve_key != "val_loss" or key is None or key == curve_key:
    return None
  metric = h.finite(key)
  if metric is None or len(metric) <= window:
    return None
  before = float(np.min(metric.bad[:-window]))
  if float(np.min(metric.bad[-window:])) < before:
    return None
  return metric.epoch(int(np.argmin(metric.bad)))


def _significant_descent(curve, window: int) -> tuple[float | None, str]:
  """(slope, "") of the last `window` points when it is a real, sizeable descent, else
  (None, "size") or (None, "noise") for why it is not.

  Real: NOISE_MULT standard errors below zero (noise from the recent half of the curve), or every
  step down where the noise cannot be estimated. Sizeable: at least NOT_CONVERGED_MIN_REL_SLOPE of
  the current level per epoch, and a noticeable share of the distance the curve has come (a loss
  creeping towards zero keeps a large relative slope forever).
  """
  slope = curves.recent_slope(curve, window)
  if -slope / _level(float(curve.bad[-1])) < T.NOT_CONVERGED_MIN_REL_SLOPE:
    return None, "size"
  travelled = float(np.max(curve.bad) - np.min(curve.bad))
  if -slope < T.NOT_CONVERGED_MIN_RANGE_SLOPE * travelled:
    return None, "size"
  part = curve.take(slice(-window, None))
  # Noise from the recent half: the early bend of the curve would inflate it.
  sigma = curves.noise_sigma(curve.bad[-max(len(curve) // 2, 4):])
  if sigma is not None:
    # The slope must be NOISE_MULT standard errors from zero (slope s.e. = noise / sqrt(Sxx)).
    sxx = float(np.sum((part.epochs - part.epochs.mean()) ** 2))
    if -slope < T.NOISE_MULT * sigma / math.sqrt(max(sxx, _TINY)):
      return None, "noise"
  elif not np.all(np.diff(part.bad) < 0):
    return None, "noise"
  return slope, ""


def _plateau_estimate(h: History, curve) -> tuple[int | None, bool, float | None]:
  """(further epochs to a plateau, capped, expected relative gain) from an exponential fit.

  A three-parameter fit to fewer than NOT_CONVERGED_MIN_FIT_POINTS points would pass through every
  point and say nothing, so short curves get no estimate (None).
  """
  if len(curve) < T.NOT_CONVERGED_MIN_FIT_POINTS:
    return None, False, None
  cap = int(T.NOT_CONVERGED_MAX_EXTRA_FACTOR * max(float(h.epochs_run), 1))
  # Real curves have heavier tails than one exponential; fitting the recent half predicts the tail.
  tail = curve.take(slice(-max(T.NOT_CONVERGED_MIN_FIT_POINTS, len(curve) // 2), None))
  fit = curves.fit_exponential(tail.epochs, tail.bad)
  if fit is None:
    return cap, True, None
  extra, capped = curves.epochs_to_plateau(fit, float(curve.epochs[-1]), T.PLATEAU_REL_SLOPE, cap)
  last = float(curve.bad[-1])
  gain = max(last - fit.asymptote, 0.0) / _level(last)
  return max(extra, 1), capped, gain


def _not_converged_advice(h: History, extra: int | None, capped: bool) -> list[Advice]:
  # Without an estimate, doubling the budget is the smallest step that tells more. Budgets are
  # in epochs, whatever a row of the log is (an evaluation, an epoch logged every few).
  run = float(h.epochs_run)
  total = round_epochs(run + (extra if extra is not None else run))
  alternatives = [Advice({"loop.num_epochs": total}, f"Train longer: about {total} epochs in total "
                         f"instead of {curves.as_label(round(run, 1))}.")]
  if capped:
    lr = scaled(_lr_now(h), 3.0, 1e-3)
    alternatives.append(Advice({"optimizer.learning_rate": lr}, "Or raise the learning rate about "
                               f"threefold{_to(h, lr)} to converge sooner."))
  return alternatives


# --- underfitting -------------------------------------------------------------------------------


def underfitting(h: History, found: set) -> Finding | None:
  """Training loss high and flat: near where it started, or far above chance when C is known."""
  # A collapsed learning rate also leaves the loss high and flat, but a bigger model would not help.
  if found & {"diverged", "no_learning", "lr_collapsed"}:
    return None
  train = h.train
  if train is None or len(train) < T.UNDERFIT_MIN_EPOCHS or train.bad[0] <= 0:
    return None
  window = min(T.TREND_WINDOW, len(train))
  last = float(train.bad[-1])
  rel = abs(curves.recent_slope(train, window)) / _level(last)
  if rel >= T.UNDERFIT_FLAT_REL_SLOPE:
    return None
  numbers = {"train_first": float(train.raw[0]), "train_last": float(train.raw[-1]),
             "rel_slope_per_epoch": rel}
  if h.chance_loss and train.key == "train_loss":
    # With a known chance level it is the better baseline than the first epoch's mean.
    if last < T.UNDERFIT_CHANCE_FRACTION * h.chance_loss:
      return None
    numbers["chance_loss"] = h.chance_loss
    why = f"{last / h.chance_loss:.0%} of chance ln({h.num_classes}) = {num(h.chance_loss)}"
  else:
    ratio = last / float(train.bad[0])
    if ratio < T.UNDERFIT_NEAR_START_FRACTION:
      return None
    numbers["last_over_first"] = ratio
    why = f"{ratio:.0%} of its first-epoch value"
  val = h.val
  if val is not None and len(val) >= 2:
    if -curves.recent_slope(val, min(window, len(val))) / _level(float(val.bad[-1])) >= \
        T.NOT_CONVERGED_MIN_REL_SLOPE:
      return None
    gap = _gap(h, val.key, val.epochs[-1], float(val.bad[-1]))
    if gap is not None:
      if gap > T.UNDERFIT_MAX_GAP_REL * _level(last):
        return None
      numbers["val_minus_train"] = gap
  text = (f"{describe(train.key).capitalize()} is high and flat: {num(train.raw[-1])} at epoch "
          f"{train.epoch(-1)}, {why}, changing {rel * 100:.2g}% per epoch; the model cannot fit "
          f"even its training data.")
  return make(h, "underfitting", WARNING, [train.epoch(0), train.epoch(-1)], text, numbers,
              _underfitting_advice(h))


def _underfitting_advice(h: History) -> list[Advice]:
  lr = scaled(_lr_now(h), 3.0, 1e-3)
  alternatives = [Advice({}, "Use a larger model (more layers or units); capacity is the usual "
                         "limit when even the training loss stays high.")]
  regularised = {}
  if h.config_float("model.dropout"):
    regularised["model.dropout"] = 0.0
  if h.config_float("optimizer.weight_decay"):
    regularised["optimizer.weight_decay"] = 0.0
  if regularised or not h.info.is_curvelab:
    alternatives.append(Advice(regularised or {"model.dropout": 0.0},
                               "Remove regularisation (dropout, weight decay)."))
  alternatives.append(Advice({"optimizer.learning_rate": lr}, "Raise the learning rate about "
                             f"threefold{_to(h, lr)} or train longer."))
  return alternatives


# --- early_stopping -----------------------------------------------------------------------------


def _simulate_stop(bad: np.ndarray, patience: int) -> tuple[int, int] | None:
  """(best index, stop index) of patience-based early stopping, or None if it never stops."""
  best, best_i, wait = math.inf, 0, 0
  for i, value in enumerate(bad):
    if value < best:
      best, best_i, wait = value, i, 0
      continue
    wait += 1
    if wait >= patience:
      return best_i, i
  return None


def _monitor(h: History):
  """The curve early stopping would watch: the run's own best_metric, else the validation curve."""
  if h.info.monitor:
    curve = h.finite(h.info.monitor)
    if curve is not None:
      return curve
  return h.val


def _stop_for(curve, patience: int) -> tuple[int, int, float] | None:
  """(best index, stop index, regret) of early stopping with `patience`; regret is how much better
  (lower-better units) the run got after the stop; None when it never stops."""
  stop = _simulate_stop(curve.bad, patience)
  if stop is None:
    return None
  best_i, stop_i = stop
  regret = float(curve.bad[best_i] - np.min(curve.bad[stop_i + 1:])) if stop_i + 1 < len(
      curve) else 0.0
  return best_i, stop_i, regret


def _acceptable_patience(curve, patience: int) -> tuple[int, tuple[int, int, float] | None]:
  """The smallest patience >= `patience` whose stop loses nothing beyond EARLY_STOP_REGRET_REL."""
  for p in range(patience, len(curve)):
    stop = _stop_for(curve, p)
    if stop is None:
      return p, None
    if stop[2] <= T.EARLY_STOP_REGRET_REL * _level(float(curve.bad[stop[0]])):
      return p, stop
  return len(curve), None


def early_stopping(h: History, found: set) -> Finding | None:
  """The epoch patience-based early stopping would stop at, and the epochs/time spent after it.

  When the given patience would have stopped before a real later improvement, the finding names the
  patience that would not have, if that one still saves epochs.
  """
  del found
  patience = h.info.patience or T.DEFAULT_PATIENCE
  curve = _monitor(h)
  if curve is None or len(curve) <= patience + 1:
    return None
  first = _stop_for(curve, patience)
  if first is None:
    return None
  needed, stop = _acceptable_patience(curve, patience)
  if stop is None:
    return None  # every patience that keeps the best stops too late to save anything
  best_i, stop_i, _ = stop
  saved = len(curve) - 1 - stop_i
  if saved < max(T.EARLY_STOP_MIN_SAVED_EPOCHS, T.EARLY_STOP_MIN_SAVED_FRACTION * len(curve)):
    return None
  stop_row = int(curve.rows[stop_i])
  saved_rows = len(h) - 1 - stop_row
  # In epochs, not rows: they differ when the log evaluates several times per epoch.
  saved_epochs = curves.as_label(round(float(h.last_epoch) - float(curve.epoch(stop_i)), 2))
  numbers = {"patience": needed, "requested_patience": patience, "monitor": curve.key,
             "best_epoch": curve.epoch(best_i), "stop_epoch": curve.epoch(stop_i),
             "epochs_after_stop": saved_epochs, "rows_after_stop": saved_rows,
             "fraction_of_run": saved_rows / len(h),
             "best_value": float(curve.raw[best_i])}
  time_text = ""
  if h.elapsed is not None and math.isfinite(h.elapsed[-1]) and math.isfinite(h.elapsed[stop_row]):
    seconds = float(h.elapsed[-1] - h.elapsed[stop_row])
    numbers["seconds_after_stop"] = seconds
    time_text = f" ({seconds:.4g} s)"
  text = (f"Early stopping on {describe(curve.key)} with patience {needed} would have stopped at "
          f"epoch {curve.epoch(stop_i)} keeping the best epoch {curve.epoch(best_i)} "
          f"({num(curve.raw[best_i])}); the {saved_epochs} epochs after it{time_text} found "
          "nothing better.")
  if needed != patience:
    premature = curve.epoch(first[1])
    numbers["premature_stop_epoch"] = premature
    text += (f" Patience {patience} would have stopped too early, at epoch "
                        f"{premature}, before a later improvement.")
  budget = round_epochs(float(curve.epoch(stop_i)))
  alternatives = [
      Advice({"stopping.patience": needed},
             f"Stop when {describe(curve.key)} has not improved for {needed} epochs "
             f"(early stopping that restores the best epoch)."),
      Advice({"loop.num_epochs": budget}, f"Or budget about {budget} epochs."),
  ]
  return make(h, "early_stopping", INFO, [curve.epoch(best_i), curve.epoch(stop_i)], text,
              numbers, alternatives)

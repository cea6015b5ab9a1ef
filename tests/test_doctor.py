"""Tests of the doctor's findings on fabricated histories: each finding fires on a history that has
the problem and stays quiet on near misses; healthy histories get no problem finding."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from diagnostics import FINDING_IDS, Finding, OnlineDoctor, diagnose_history
from diagnostics import synthetic as S
from diagnostics import thresholds

DOCS = Path(__file__).resolve().parents[1] / "docs" / "doctor.md"


def ids(rows, **kwargs) -> set:
  return {f.id for f in diagnose_history(rows, **kwargs)}


def problems(rows, **kwargs) -> set:
  return {f.id for f in diagnose_history(rows, **kwargs) if f.severity in ("warning", "error")}


def get(rows, fid, **kwargs) -> Finding:
  found = [f for f in diagnose_history(rows, **kwargs) if f.id == fid]
  assert found, f"{fid} not found in {ids(rows, **kwargs)}"
  return found[0]


def rows_from(train=None, val=None, **columns) -> list:
  """Rows with epoch 1..n from per-key lists (None entries are left out)."""
  data = dict(columns)
  if train is not None:
    data["train_loss"] = train
  if val is not None:
    data["val_loss"] = val
  n = max(len(v) for v in data.values())
  rows = []
  for i in range(n):
    row = {"epoch": i + 1}
    for key, values in data.items():
      if i < len(values) and values[i] is not None:
        row[key] = values[i]
    rows.append(row)
  return rows


# --- healthy histories and short or incomplete ones --------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_healthy_decaying_curves_have_no_problem(seed, schedule):
  rows = S.healthy(n=40, seed=seed, noise=0.03, schedule=schedule)
  assert problems(rows, num_classes=10) == set()
  assert "healthy" in ids(rows, num_classes=10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converged_run_with_long_plateau_has_no_problem(seed):
  rows = S.healthy(n=80, seed=seed, tau=3.0, noise=0.04)
  found = diagnose_history(rows)
  assert {f.id for f in found if f.is_problem} == set()
  # It may advise stopping earlier, but only as information.
  assert all(f.severity == "info" for f in found)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_language_model_with_perplexity_has_no_problem(seed):
  assert problems(S.healthy_lm(seed=seed)) == set()
  assert "healthy" in ids(S.healthy_lm(seed=seed))


def test_language_model_logging_only_perplexity_is_healthy():
  rows = [{"epoch": r["epoch"], "train_perplexity": r["train_perplexity"],
           "val_perplexity": r["val_perplexity"]} for r in S.healthy_lm()]
  assert problems(rows) == set()


@pytest.mark.parametrize("maker", [S.healthy, S.overfitting, S.lr_too_high, S.underfitting,
                                   S.no_learning, S.lr_too_low, S.lr_collapsed])
@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_epochs_say_nothing(maker, n):
  assert diagnose_history(maker()[:n], num_classes=10) == []


def test_three_epochs_of_steep_learning_only_say_not_converged():
  found = diagnose_history(S.healthy(tau=4.0)[:3], num_classes=10)
  assert {f.id for f in found} == {"not_converged"}
  assert found[0].evidence["epochs_to_plateau"] is None  # too few points for an estimate


def test_empty_and_keyless_histories():
  assert diagnose_history([]) == []
  assert diagnose_history([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}, {"epoch": 4}]) == []
  assert diagnose_history([{}, {"foo": "bar"}, {"train_loss": None}]) == []


def test_missing_keys_are_tolerated():
  rows = S.overfitting()
  for i, row in enumerate(rows):
    if i % 3 == 0:
      del row["val_loss"]  # validation every few epochs only
    del row["learning_rate"], row["elapsed_s"]
  assert "overfitting" in ids(rows)
  train_only = [{"epoch": r["epoch"], "train_loss": r["train_loss"]} for r in S.healthy()]
  assert problems(train_only) == set()


# --- overfitting --------------------------------------------------------------------------------


def test_overfitting_found_with_best_epoch_and_gap():
  f = get(S.overfitting(turn=12, rate=0.03), "overfitting")
  ev = f.evidence
  assert 10 <= ev["best_epoch"] <= 14
  assert ev["gap_last"] > ev["gap_at_best"] > 0
  assert ev["gap_growth_per_epoch"] > 0
  assert ev["val_rise_rel"] >= thresholds.OVERFIT_MIN_RISE_REL
  assert f.epochs == [ev["best_epoch"], 40]
  assert any("--config.model.dropout=" in r and "--config.optimizer.weight_decay=" in r
             for r in f.recommendations)
  assert isinstance(ev["text"], str) and str(ev["best_epoch"]) in ev["text"]


def test_mild_overfitting_is_found():
  assert "overfitting" in ids(S.overfitting(rate=0.01))


def test_overfitting_on_accuracy_only_logs():
  rows = S.overfitting(rate=0.04)
  acc_rows = [{"epoch": r["epoch"], "train_accuracy": 1 - r["train_loss"] / 3,
               "val_accuracy": 1 - r["val_loss"] / 3} for r in rows]
  assert "overfitting" in ids(acc_rows)


def test_noisy_plateau_is_not_overfitting():
  rng = np.random.default_rng(5)
  e = np.arange(1, 41)
  train = 0.05 + 2 * np.exp(-e / 4)
  val = (0.3 + 1.9 * np.exp(-e / 4)) * (1 + 0.03 * rng.standard_normal(40))
  assert "overfitting" not in ids(rows_from(train.tolist(), val.tolist()))


def test_small_rise_below_threshold_is_not_overfitting():
  e = np.arange(1, 31)
  train = 0.05 + 2 * np.exp(-e / 4)
  val = 0.3 + 1.9 * np.exp(-e / 4) + 0.0004 * np.clip(e - 15, 0, None)  # +2% by the end
  assert "overfitting" not in ids(rows_from(train.tolist(), val.tolist()))


def test_validation_rising_with_training_also_worsening_is_not_overfitting():
  e = np.arange(1, 21)
  train = 0.5 + 2 * np.exp(-e / 3) + 0.02 * np.clip(e - 10, 0, None)
  val = 0.6 + 2 * np.exp(-e / 3) + 0.03 * np.clip(e - 10, 0, None)
  assert "overfitting" not in ids(rows_from(train.tolist(), val.tolist()))


# --- not_converged ------------------------------------------------------------------------------


def test_not_converged_with_estimate_and_epoch_budget():
  f = get(S.not_converged(n=15), "not_converged")
  assert f.severity == "warning"
  assert f.evidence["rel_slope_per_epoch"] >= thresholds.NOT_CONVERGED_MIN_REL_SLOPE
  assert f.evidence["epochs_to_plateau"] >= 5
  budget = int(re.search(r"--config.loop.num_epochs=(\d+)", f.recommendations[0]).group(1))
  assert budget >= 15 + f.evidence["epochs_to_plateau"]


def test_not_converged_in_plain_words_for_other_frameworks():
  f = get(S.not_converged(), "not_converged", is_curvelab=False)
  assert not any("--config" in r for r in f.recommendations)
  assert "epochs" in f.recommendations[0]


def test_converged_curve_is_not_not_converged():
  assert "not_converged" not in ids(S.healthy(n=40, tau=3.0))


def test_loss_creeping_to_zero_without_validation_is_not_not_converged():
  e = np.arange(1, 41)
  train = 2.0 * np.exp(-e / 3)  # keeps falling by a constant fraction, but has arrived
  assert "not_converged" not in ids(rows_from(train.tolist()))


def test_improving_loss_with_stalled_accuracy_is_only_info():
  rows = S.not_converged(n=20)
  for row in rows:
    row["val_accuracy"] = 0.9 if row["epoch"] > 8 else 0.5 + 0.05 * row["epoch"]
  f = get(rows, "not_converged")
  assert f.severity == "info" and f.evidence["metric_best_epoch"] <= 10


# --- underfitting -------------------------------------------------------------------------------


def test_underfitting_found_near_start_and_against_chance():
  assert "underfitting" in problems(S.underfitting())
  f = get(S.underfitting(), "underfitting", num_classes=10)
  assert f.evidence["chance_loss"] == pytest.approx(math.log(10), rel=1e-3)


def test_low_flat_training_loss_is_not_underfitting():
  assert "underfitting" not in ids(S.healthy(n=40), num_classes=10)


def test_flat_loss_far_below_chance_is_not_underfitting():
  # 0.9 is 72% of the first epoch (would count as "near the start") but far below ln(10).
  train = [1.25, 1.0, 0.92, 0.905, 0.9, 0.9, 0.9, 0.9]
  rows = rows_from(train, [t + 0.05 for t in train])
  assert "underfitting" in ids(rows)
  assert "underfitting" not in ids(rows, num_classes=10)


def test_high_but_falling_loss_is_not_underfitting():
  assert "underfitting" not in ids(S.lr_too_low())


def test_large_generalisation_gap_is_not_underfitting():
  train = [2.0, 1.7, 1.6, 1.6, 1.6, 1.6]
  val = [2.3, 2.2, 2.2, 2.2, 2.2, 2.2]
  assert "underfitting" not in ids(rows_from(train, val))


# --- no_learning --------------------------------------------------------------------------------


def test_no_learning_at_chance_with_known_classes():
  f = get(S.no_learning(), "no_learning", num_classes=10)
  assert f.severity == "error"
  assert f.evidence["chance_loss"] == pytest.approx(math.log(10), rel=1e-3)
  assert f.evidence["accuracy_last"] <= f.evidence["chance_accuracy_limit"]


def test_no_learning_from_class_histogram_length():
  rows = S.no_learning()
  for row in rows:
    row["pred_class_hist"] = [0.1] * 10
  assert get(rows, "no_learning").evidence["num_classes"] == 10


def test_no_learning_from_uniform_predictive_entropy():
  rows = S.healthy(n=8)
  rows = [{"epoch": r["epoch"], "pred_entropy": 2.29, "pred_class_hist": [0.1] * 10}
          for r in rows]
  assert get(rows, "no_learning").evidence["pred_entropy_last"] == 2.29
  for row in rows:
    row["pred_entropy"] = 0.4
  assert "no_learning" not in ids(rows)


def test_no_learning_without_classes_uses_does_not_move():
  f = get(S.no_learning(), "no_learning")
  assert f.evidence["relative_range"] <= thresholds.NO_LEARNING_FLAT_REL


def test_delayed_start_is_not_no_learning():
  train = [2.30, 2.30, 2.29, 1.8, 1.2, 0.8, 0.6, 0.5, 0.45, 0.42]
  rows = rows_from(train, [t + 0.05 for t in train])
  assert "no_learning" not in ids(rows, num_classes=10)


def test_slow_steady_descent_near_chance_is_lr_too_low_not_no_learning():
  train = list(np.linspace(2.45, 2.2, 20))
  rows = rows_from(train, [t + 0.01 for t in train])
  assert "no_learning" not in ids(rows, num_classes=10)
  assert "lr_too_low" in ids(rows, num_classes=10)


def test_confident_but_accurate_model_is_not_at_chance():
  rows = S.no_learning()
  for row in rows:
    row["val_accuracy"] = 0.8
  assert "no_learning" not in ids(rows, num_classes=10)


# --- lr_too_high --------------------------------------------------------------------------------


def test_lr_too_high_from_oscillation():
  f = get(S.lr_too_high(), "lr_too_high")
  assert f.evidence["sum_of_rises"] >= thresholds.LR_HIGH_OSC_RATIO * f.evidence["net_decrease"]
  assert f.evidence["rise_epochs"]
  assert any("--config.optimizer.learning_rate=" in r for r in f.recommendations)


def test_lr_too_high_from_early_rise():
  train = [2.3, 2.6, 2.5, 2.45, 2.4]
  f = get(rows_from(train, [t + 0.1 for t in train]), "lr_too_high")
  assert f.severity == "error"  # ends worse than it started


def test_lr_too_high_from_first_epoch_above_chance():
  train = [18.7, 2.37, 2.39, 2.40, 2.41, 2.40]
  found = ids(rows_from(train, [2.37] * 6), num_classes=10)
  assert {"lr_too_high", "no_learning"} <= found


def test_small_bumps_in_a_healthy_curve_are_not_lr_too_high():
  train = [2.1, 1.2, 0.8, 0.62, 0.64, 0.5, 0.45, 0.46, 0.4, 0.38]
  assert "lr_too_high" not in ids(rows_from(train, [t + 0.1 for t in train]))


def test_warm_restarts_are_not_lr_too_high():
  rows = S.healthy(n=30, tau=3.0)
  for row in rows:
    cycle = (row["epoch"] - 1) % 10
    row["learning_rate"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * cycle / 10))
    if cycle == 0 and row["epoch"] > 1:
      row["train_loss"] *= 1.5  # a restart knocks the loss up
  assert "lr_too_high" not in ids(rows)


# --- lr_too_low ---------------------------------------------------------------------------------


def test_lr_too_low_found():
  f = get(S.lr_too_low(), "lr_too_low")
  ev = f.evidence
  assert ev["total_drop_rel"] <= thresholds.LR_LOW_MAX_TOTAL_DROP
  assert thresholds.LR_LOW_MIN_LINEARITY <= ev["late_over_early_slope"]
  assert f.recommendations == ["--config.optimizer.learning_rate=3e-5"]  # 3x the logged 1e-5


def test_healthy_exponential_descent_is_not_lr_too_low():
  assert "lr_too_low" not in ids(S.healthy(n=20, tau=5.0))


def test_fast_linear_descent_is_not_lr_too_low():
  train = list(np.linspace(2.3, 0.9, 8))  # 8% per epoch: short, not slow
  assert "lr_too_low" not in ids(rows_from(train, [t + 0.1 for t in train]))


# --- lr_collapsed -------------------------------------------------------------------------------


def test_lr_collapsed_by_plateau_scheduler():
  f = get(S.lr_collapsed(at=6), "lr_collapsed")
  ev = f.evidence
  assert ev["lr_at_collapse"] < thresholds.LR_COLLAPSE_FRACTION * ev["peak_lr"]
  assert ev["collapse_epoch"] == 8  # 1e-3 -> 1e-4 -> 1e-5 -> 1e-6 < 1% of 1e-3
  assert ev["val_gain_before_rel"] >= thresholds.LR_COLLAPSE_MIN_IMPROVE_REL
  assert "--config.schedule.name=cosine" in f.recommendations


def test_lr_collapsed_within_first_tenth():
  rows = S.healthy(n=40)
  for row in rows:
    row["learning_rate"] = 1e-3 if row["epoch"] <= 2 else 1e-8
  assert "lr_collapsed" in ids(rows)


def test_cosine_and_step_schedules_are_not_lr_collapsed():
  assert "lr_collapsed" not in ids(S.healthy(n=40, schedule="cosine"))
  rows = S.not_converged(n=40, tau=20)  # still improving when the steps come
  for row in rows:
    row["learning_rate"] = 0.1 * 0.1 ** ((row["epoch"] > 20) + (row["epoch"] > 30))
  assert "lr_collapsed" not in ids(rows)


def test_warmup_is_not_lr_collapsed():
  rows = S.healthy(n=30)
  for row in rows:
    row["learning_rate"] = 1e-3 * min(1.0, row["epoch"] / 5)
  assert "lr_collapsed" not in ids(rows)


# --- diverged -----------------------------------------------------------------------------------


def test_diverged_on_nan_with_epoch():
  f = get(S.diverged(at=6), "diverged")
  assert f.severity == "error" and f.epochs == [6]
  assert f.evidence["kind"] == "nonfinite" and f.evidence["epochs_after"] == 4
  json.dumps(f.to_json(), allow_nan=False)


def test_diverged_on_explosion_and_on_flag():
  train = [2.0, 1.0, 0.8, 7.5, 50.0]
  f = get(rows_from(train, [t + 0.1 for t in train]), "diverged")
  assert f.evidence["kind"] == "explosion" and f.epochs == [4]
  rows = S.healthy(n=10)
  rows[7]["nonfinite"] = True
  assert get(rows, "diverged").epochs == [8]


def test_overfitting_validation_loss_tripling_is_not_diverged():
  assert "diverged" not in ids(S.overfitting(rate=0.06), num_classes=10)


def test_a_doubling_spike_is_not_diverged():
  train = [2.0, 1.0, 0.8, 1.6, 0.7, 0.6]
  assert "diverged" not in ids(rows_from(train, [t + 0.1 for t in train]))


def test_status_diverged_in_summary():
  assert "diverged" in ids(S.healthy(n=5), status="diverged")


# --- early_stopping -----------------------------------------------------------------------------


def test_early_stopping_epoch_and_time_saved():
  rows = S.overfitting(turn=12)
  f = get(rows, "early_stopping")
  ev = f.evidence
  assert f.severity == "info"
  assert ev["stop_epoch"] == ev["best_epoch"] + thresholds.DEFAULT_PATIENCE
  assert ev["epochs_after_stop"] == 40 - ev["stop_epoch"]
  assert ev["seconds_after_stop"] == pytest.approx(2.0 * ev["epochs_after_stop"])
  assert "--config.stopping.patience=5" in f.recommendations


def test_early_stopping_patience_override():
  f = get(S.overfitting(turn=12), "early_stopping", patience=10)
  assert f.evidence["patience"] == 10
  assert f.evidence["stop_epoch"] == f.evidence["best_epoch"] + 10


def test_early_stopping_suggests_longer_patience_when_the_given_one_is_premature():
  val = [2.0, 1.5, 1.2, 1.21, 1.22, 1.23, 1.0, 0.8, 0.79, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1]
  train = list(np.linspace(2.0, 0.2, len(val)))
  f = get(rows_from(train, val), "early_stopping", patience=3)
  assert f.evidence["premature_stop_epoch"] == 6
  assert f.evidence["patience"] == 4 and f.evidence["best_epoch"] == 9


def test_no_early_stopping_while_still_improving():
  assert "early_stopping" not in ids(S.not_converged())


# --- capacity_vs_data ---------------------------------------------------------------------------


def test_capacity_vs_data_next_to_overfitting():
  f = get(S.overfitting(), "capacity_vs_data", num_params=1_000_000, num_train_examples=1_000)
  assert f.evidence["params_per_example"] == 1000


def test_capacity_vs_data_next_to_underfitting():
  f = get(S.underfitting(), "capacity_vs_data", num_params=200, num_train_examples=1_437)
  assert f.evidence["params_per_example"] < 1


def test_no_capacity_finding_without_the_behaviour():
  assert "capacity_vs_data" not in ids(S.healthy(), num_params=10**7, num_train_examples=10**3)
  assert "capacity_vs_data" not in ids(S.overfitting(), num_params=5_000, num_train_examples=10**4)


# --- degenerate_predictions ---------------------------------------------------------------------


def _ctc_rows(blank, n=8, **extra):
  rows = S.healthy(n=n)
  for i, row in enumerate(rows):
    row["val_blank_share"] = blank[i] if isinstance(blank, list) else blank
    row.update({k: v[i] if isinstance(v, list) else v for k, v in extra.items()})
  return rows


def test_degenerate_blank_and_empty_outputs():
  f = get(_ctc_rows(0.995, val_empty_share=0.95), "degenerate_predictions")
  assert f.severity == "error"
  assert "CTC models emit only blanks" in " ".join(f.recommendations)
  assert f.evidence["val_blank_share"] == 0.995 and f.evidence["since_epoch"] == 1


def test_healthy_ctc_blank_share_is_not_degenerate():
  assert "degenerate_predictions" not in ids(_ctc_rows(0.85, val_length_ratio=0.95))


def test_blanks_in_the_first_epochs_are_normal():
  assert "degenerate_predictions" not in ids(_ctc_rows(0.999, n=2))
  blank = [0.999, 0.999, 0.99, 0.9, 0.85, 0.84, 0.83, 0.82]
  assert "degenerate_predictions" not in ids(_ctc_rows(blank))


def test_degenerate_from_sample_predictions():
  rows = S.healthy(n=6)
  rows[-1]["val_samples"] = [{"target": "the cat sat", "prediction": "the the the the the the"},
                             {"target": "a dog ran", "prediction": "a a a a a a a"}]
  f = get(rows, "degenerate_predictions")
  assert f.evidence["samples_repetition_rate"] > 0.5
  rows[-1]["val_samples"] = [{"target": "the cat sat", "prediction": ""},
                             {"target": "a dog ran", "prediction": ""}]
  assert get(rows, "degenerate_predictions").evidence["samples_empty_share"] == 1.0
  rows[-1]["val_samples"] = [{"target": "the cat sat", "prediction": "the cat sat"},
                             {"target": "a dog ran", "prediction": "a dog ran fast"}]
  assert "degenerate_predictions" not in ids(rows)


def test_classifier_collapsing_to_one_class():
  rows = S.no_learning()
  for row in rows:
    row["pred_class_hist"] = [0.95] + [0.05 / 9] * 9
  assert "degenerate_predictions" in ids(rows)
  advice = " ".join(get(rows, "degenerate_predictions").recommendations)
  assert "classifier" in advice and "CTC" not in advice
  for row in rows:
    row["val_accuracy"] = 0.99  # imbalanced validation set, predicted well
  assert "degenerate_predictions" not in ids(rows)


# --- gradient_problem ---------------------------------------------------------------------------


def test_exploding_gradients():
  rows = S.healthy(n=10)
  for i, row in enumerate(rows):
    row["grad_norm"] = 1.0 * 2.0**i
  f = get(rows, "gradient_problem")
  assert f.evidence["kind"] == "exploding"
  assert "--config.optimizer.grad_clip_norm=1" in " ".join(f.recommendations)


def test_gradient_spikes():
  rows = S.healthy(n=10)
  for row in rows:
    row["grad_norm"], row["grad_norm_max"] = 1.0, 2.0
  rows[6]["grad_norm_max"] = 500.0
  assert get(rows, "gradient_problem").evidence["kind"] == "spikes"


def test_vanishing_layer_gradients():
  rows = S.healthy(n=6)
  for row in rows:
    row["layer_grad_norms"] = {"dense_0": 1e-7, "dense_1": 1e-3, "head": 0.5}
  f = get(rows, "gradient_problem")
  assert f.evidence["kind"] == "vanishing" and f.evidence["smallest_layer"] == "dense_0"


def test_ordinary_gradient_norms_are_fine():
  rows = S.healthy(n=10)
  for i, row in enumerate(rows):
    row["grad_norm"] = 2.0 + 0.5 * math.sin(i)
    row["grad_norm_max"] = 6.0
    row["layer_grad_norms"] = {"dense_0": 0.01, "dense_1": 0.1, "head": 0.5}
  assert "gradient_problem" not in ids(rows)


# --- API, schema, documentation -----------------------------------------------------------------


ALL_MAKERS = [S.healthy, S.healthy_lm, S.overfitting, S.not_converged, S.underfitting,
              S.no_learning, S.lr_too_high, S.lr_too_low, S.lr_collapsed, S.diverged]


@pytest.mark.parametrize("maker", ALL_MAKERS)
def test_findings_are_well_formed_json(maker):
  for finding in diagnose_history(maker(), num_classes=10, num_params=10**6,
                                  num_train_examples=1000):
    data = finding.to_json()
    json.dumps(data, allow_nan=False)
    assert data["id"] in FINDING_IDS
    assert data["severity"] in ("info", "warning", "error")
    assert isinstance(data["epochs"], list) and isinstance(data["recommendations"], list)
    assert isinstance(data["evidence"]["text"], str) and data["evidence"]["text"]
    for rec in data["recommendations"]:
      assert isinstance(rec, str) and rec


@pytest.mark.parametrize("maker", ALL_MAKERS)
def test_other_frameworks_get_plain_words(maker):
  for finding in diagnose_history(maker(), is_curvelab=False, num_classes=10):
    assert not any("--config" in r for r in finding.recommendations)
    assert "overrides" not in finding.to_json()


def test_recommendations_scale_the_current_config():
  config = {"optimizer": {"name": "adam", "learning_rate": 0.01}, "schedule": {"warmup_epochs": 0}}
  f = get(S.lr_too_high(), "lr_too_high", config=config)
  assert f.recommendations[0] == "--config.optimizer.learning_rate=3e-3"
  assert f.overrides[0] == {"optimizer.learning_rate": 0.003}
  # A config.json of an earlier version (top-level learning_rate) gives the same advice.
  old = get(S.lr_too_high(), "lr_too_high", config={"learning_rate": 0.01, "warmup_epochs": 0})
  assert old.recommendations == f.recommendations


def test_online_doctor_stops_on_persistent_overfitting():
  rows = S.overfitting(turn=12)
  doc = OnlineDoctor(stop_on=("diverged", "overfitting"), patience=3)
  reported, stop_epoch = [], None
  for n in range(1, len(rows) + 1):
    for finding in doc.update(rows[:n]):
      reported.append(finding.id)
    if doc.should_stop and stop_epoch is None:
      stop_epoch = n
  assert len(reported) == len(set(reported))  # each id reported once
  assert "overfitting" in reported
  assert stop_epoch is not None and 12 < stop_epoch < 30
  assert doc.stop_reason.startswith("overfitting")
  data = doc.to_json()
  assert set(data) >= {"path", "findings"} and data["should_stop"] is True
  json.dumps(data, allow_nan=False)


def test_online_doctor_does_not_stop_a_healthy_run_and_counts_epochs_once():
  rows = S.healthy(n=40)
  doc = OnlineDoctor(patience=2)
  for n in range(1, len(rows) + 1):
    doc.update(rows[:n])
    doc.update(rows[:n])  # repeated calls for one epoch must not advance the streak
  assert not doc.should_stop and doc.stop_reason is None


def test_online_doctor_stops_on_divergence():
  doc = OnlineDoctor(stop_on=("diverged",), patience=1)
  rows = S.diverged(at=4)
  doc.update(rows[:3])
  assert not doc.should_stop
  doc.update(rows[:4])
  assert doc.should_stop and "diverged" in doc.stop_reason


def test_every_threshold_is_documented():
  text = DOCS.read_text()
  names = [n for n in vars(thresholds) if n.isupper()]
  assert names
  missing = [n for n in names if f"`{n}`" not in text]
  assert not missing, f"thresholds not documented in docs/doctor.md: {missing}"

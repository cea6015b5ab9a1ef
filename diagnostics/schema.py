"""Canonical history keys, their aliases in other frameworks, and metric directions.

curvelab's own keys (docs/run_files.md) are the canonical names. Logs from Keras, PyTorch Lightning,
Hugging Face or hand-written loops use other spellings; `canonical_key` maps a column or tag name
onto the canonical key or returns None so the reader can list it as ignored.
"""

from __future__ import annotations

import re

# Metrics where larger is better; every other metric (loss, perplexity, wer, cer) is lower-better.
HIGHER_IS_BETTER = frozenset({"accuracy", "bleu", "map", "map50", "precision", "recall", "f1",
                              "auc", "iou", "dice", "top5"})

# Metric name spellings -> canonical metric name (without the split prefix).
_METRIC_ALIASES = {
    "loss": "loss",
    "nll": "loss",
    "xent": "loss",
    "cross_entropy": "loss",
    "ce_loss": "loss",
    "acc": "accuracy",
    "accuracy": "accuracy",
    "top1": "accuracy",
    "top_1": "accuracy",
    "top1_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "categorical_accuracy": "accuracy",
    "binary_accuracy": "accuracy",
    "perplexity": "perplexity",
    "ppl": "perplexity",
    "wer": "wer",
    "cer": "cer",
    "bleu": "bleu",
    "sacrebleu": "bleu",
    "blank_share": "blank_share",
    "empty_share": "empty_share",
    "length_ratio": "length_ratio",
    "len_ratio": "length_ratio",
    "repetition_rate": "repetition_rate",
    "samples": "samples",
    # Detection (YOLO's columns are read by layouts.yolo), segmentation, retrieval.
    "map": "map",
    "map_0_5_0_95": "map",
    "map50_95": "map",
    "map50_95_b": "map",  # Ultralytics' '(B)' marks box metrics.
    "map_50_95": "map",
    "map50": "map50",
    "map50_b": "map50",
    "map_0_5": "map50",
    "map_50": "map50",
    "precision": "precision",
    "recall": "recall",
    "f1": "f1",
    "f1_score": "f1",
    "auc": "auc",
    "roc_auc": "auc",
    "iou": "iou",
    "miou": "iou",
    "dice": "dice",
    "top5": "top5",
    "top_5": "top5",
    # Lower is better.
    "error_rate": "error_rate",
    "err": "error_rate",
    "error": "error_rate",
    "top1_err": "error_rate",
    "mae": "mae",
    "mse": "mse",
    "rmse": "rmse",
}

# Metrics that are normally measured on validation data only, so an unprefixed column is validation.
_VALIDATION_BY_DEFAULT = frozenset({
    "wer", "cer", "bleu", "blank_share", "empty_share", "length_ratio", "repetition_rate", "samples"
})

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "trn": "train",
    "tr": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "evaluation": "val",
    "dev": "val",
    "test": "test",
}

# Keys that are not split/metric pairs, with their spellings.
_PLAIN_ALIASES = {
    "epoch": "epoch",
    "epochs": "epoch",
    "ep": "epoch",
    "step": "step",
    "steps": "step",
    "global_step": "step",
    "trainer_global_step": "step",
    "learning_rate": "learning_rate",
    "lr": "learning_rate",
    "epoch_learning_rate": "learning_rate",
    "epoch_lr": "learning_rate",
    "epoch_time_s": "epoch_time_s",
    "epoch_time": "epoch_time_s",
    "time_per_epoch": "epoch_time_s",
    "epoch_duration": "epoch_time_s",
    "duration": "epoch_time_s",
    "train_time": "epoch_time_s",
    "train_runtime": "epoch_time_s",
    "eval_time_s": "eval_time_s",
    "eval_time": "eval_time_s",
    "val_time": "eval_time_s",
    "eval_runtime": "eval_time_s",
    "elapsed_s": "elapsed_s",
    "elapsed": "elapsed_s",
    "elapsed_time": "elapsed_s",
    "time_elapsed": "elapsed_s",
    "wall_time": "elapsed_s",
    "walltime": "elapsed_s",
    "total_time": "elapsed_s",
    "cumulative_time": "elapsed_s",
    # Ambiguous: per-epoch or cumulative; readers.resolve_time decides from the values.
    "time": "time",
    "time_s": "time",
    "examples_per_s": "examples_per_s",
    "samples_per_second": "examples_per_s",
    "tokens_per_s": "tokens_per_s",
    "peak_memory_bytes": "peak_memory_bytes",
    "grad_norm": "grad_norm",
    "gradient_norm": "grad_norm",
    "global_grad_norm": "grad_norm",
    "grad_norm_max": "grad_norm_max",
    "max_grad_norm": "grad_norm_max",
    "update_ratio": "update_ratio",
    "param_norm": "param_norm",
    "layer_grad_norms": "layer_grad_norms",
    "pred_entropy": "pred_entropy",
    "val_pred_entropy": "pred_entropy",
    "pred_class_hist": "pred_class_hist",
    "val_pred_class_hist": "pred_class_hist",
    "nonfinite": "nonfinite",
    # Per-row counts that weight a row's training values (aggregate.py), and Hugging Face's
    # cumulative token counter (weights are its differences).
    "weight": "weight",
    "num_examples": "weight",
    "n_examples": "weight",
    "num_samples": "weight",
    "n_samples": "weight",
    "num_tokens": "weight",
    "n_tokens": "weight",
    "ntokens": "weight",
    "tokens_seen": "tokens_seen",
    "num_input_tokens_seen": "tokens_seen",
}

# Canonical keys that carry a non-scalar value (dict or list) in a row.
STRUCTURED_KEYS = frozenset({"layer_grad_norms", "pred_class_hist", "val_samples"})


def normalize_name(name: str) -> str:
  """Lower-cases a column name and turns separators ('/', '-', '.', ' ') into underscores."""
  text = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower())
  return text.strip("_")


def _strip_decorations(name: str) -> str | None:
  """Removes per-epoch decorations; returns None for per-step columns that must be ignored.

  Lightning logs `train_loss_step` (one batch) next to `train_loss_epoch` (epoch mean); Keras'
  TensorBoard callback writes `epoch_loss`. Only epoch-level values belong in a history.
  """
  if name.endswith("_step") and name not in _PLAIN_ALIASES:
    return None
  if name.endswith("_epoch") and name != "epoch":
    name = name[: -len("_epoch")]
  if name.startswith("epoch_") and name not in _PLAIN_ALIASES:
    name = name[len("epoch_"):]
  return name


def _split_metric(name: str) -> tuple[str | None, str] | None:
  """Splits 'val_loss', 'loss_val' or 'loss' into (split or None, canonical metric)."""
  if name in _METRIC_ALIASES:
    return None, _METRIC_ALIASES[name]
  head, _, tail = name.partition("_")
  if head in _SPLIT_ALIASES and tail in _METRIC_ALIASES:
    return _SPLIT_ALIASES[head], _METRIC_ALIASES[tail]
  head, _, tail = name.rpartition("_")
  if tail in _SPLIT_ALIASES and head in _METRIC_ALIASES:
    return _SPLIT_ALIASES[tail], _METRIC_ALIASES[head]
  return None


def _is_learning_rate(name: str) -> bool:
  """Recognises learning-rate spellings such as lr, lr_0, lr_adam (Lightning), learning_rate_1."""
  return bool(re.fullmatch(r"(lr|learning_rate)(_[0-9a-z_]+)?|[0-9a-z_]*_lr", name))


def canonical_key(name: str, prefix: str | None = None) -> str | None:
  """Maps a column or tag name to its canonical history key.

  Args:
    name: the column name as written by any framework ("val_acc", "train/loss", "lr-Adam").
    prefix: the split implied by where the value came from (TensorBoard's `train/` or `validation/`
      sub-directory), used when the name itself has no split.

  Returns:
    The canonical key ("val_accuracy", "train_loss", "learning_rate", ...), "test_<metric>" for
    test-split metrics (the reader promotes them when no validation metrics exist), or None when
    the name is unknown.
  """
  norm = normalize_name(name)
  if norm in _PLAIN_ALIASES:
    return _PLAIN_ALIASES[norm]
  if norm == "val_samples" or norm == "samples":
    return "val_samples"
  stripped = _strip_decorations(norm)
  if stripped is None:
    return None
  if stripped in _PLAIN_ALIASES:
    return _PLAIN_ALIASES[stripped]
  if _is_learning_rate(stripped):
    return "learning_rate"
  parts = _split_metric(stripped)
  if parts is None:
    return None
  split, metric = parts
  if split is None and prefix is not None:
    split = _SPLIT_ALIASES.get(normalize_name(prefix))
  if split is None:
    split = "val" if metric in _VALIDATION_BY_DEFAULT else "train"
  return f"{split}_{metric}"


def is_bare_metric(name: str) -> bool:
  """True for a metric name without a split ('accuracy', 'mAP50-95'), False for 'train_loss'."""
  return normalize_name(name) in _METRIC_ALIASES


def metric_of(key: str) -> str:
  """Returns the metric part of a canonical key: 'val_accuracy' -> 'accuracy'."""
  for split in ("train_", "val_", "test_"):
    if key.startswith(split):
      return key[len(split):]
  return key


def higher_is_better(key: str) -> bool:
  """True for metrics where a larger value is better (accuracy, bleu)."""
  return metric_of(key) in HIGHER_IS_BETTER

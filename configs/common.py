"""Shared pieces of every config: the base ConfigDict and the variant-argument parser.

A config module's ``get_config(arg)`` receives the text after the colon of
``--config=configs/NAME.py:layers=6,optimizer=adamw``; :func:`parse_args` turns it into typed
values and refuses unknown keys with the allowed ones.
"""

import ml_collections

from curvelab import errors


def parse_args(arg: str | None, defaults: dict) -> dict:
  """Parses ``key=value,key=value`` against ``defaults`` (which fixes the keys and types).

  Args:
    arg: the variant string, possibly empty or None.
    defaults: allowed keys and their default values; values are cast to the default's type.

  Returns:
    ``defaults`` updated with the parsed values.
  """
  values = dict(defaults)
  if not arg:
    return values
  for item in arg.split(','):
    if not item.strip():
      continue
    if '=' not in item:
      raise errors.ConfigError(f'config argument {item!r} must look like key=value.')
    key, raw = (s.strip() for s in item.split('=', 1))
    if key not in defaults:
      raise errors.ConfigError(
          f'config argument {key!r} is unknown; allowed: {", ".join(sorted(defaults))}.')
    kind = type(defaults[key])
    try:
      if kind is bool:
        values[key] = raw.lower() in ('1', 'true', 'yes')
      else:
        values[key] = kind(raw)
    except ValueError as e:
      raise errors.ConfigError(f'config argument {key}={raw!r} is not a {kind.__name__}.') from e
  return values


def base_config() -> ml_collections.ConfigDict:
  """Fields every run has, with the reference study's defaults where it fixes them."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameter init, dropout, shuffling and augmentation.

  # ---- model (sections filled by each config) -----------------------------------------------
  c.model = ml_collections.ConfigDict()
  c.model.name = 'vit'  # Registered model name (models/__init__.py).

  # ---- task -----------------------------------------------------------------------------------
  c.task = ml_collections.ConfigDict()
  c.task.name = 'classification'  # classification (more in tasks/).
  c.label_smoothing = 0.0  # Label smoothing of the classification targets (0 = off).

  # ---- data -----------------------------------------------------------------------------------
  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'cifar10'  # digits or synthetic_cifar10 (built in), or a TFDS image dataset.
  c.dataset.data_dir = ''  # TFDS data dir; '' = $TFDS_DATA_DIR, else ../shared/tensorflow_datasets.
  c.dataset.train_split = 'train[:45000]'  # TFDS split strings, slicing allowed.
  c.dataset.val_split = 'train[45000:]'
  c.dataset.test_split = 'test'
  c.dataset.mean = (0.4914, 0.4822, 0.4465)  # Per-channel normalisation, [0, 1] units.
  c.dataset.std = (0.2470, 0.2435, 0.2616)
  c.dataset.augment = ml_collections.ConfigDict()
  c.dataset.augment.flip = True  # Random horizontal flip (training only).
  c.dataset.augment.crop = True  # Random resized crop back to the input size (training only).
  c.dataset.augment.crop_scale = (0.8, 1.0)  # Area fraction range of the crop.
  c.dataset.augment.crop_ratio = (0.9, 1.1)  # Aspect-ratio range of the crop (log-uniform).
  c.dataset.augment.pad_crop = 0  # Random crop after zero padding of this many pixels per side (0 = off).
  c.dataset.augment.randaugment_ops = 0  # RandAugment: ops applied to each image (N; 0 = off).
  c.dataset.augment.randaugment_magnitude = 9.0  # RandAugment strength M in [0, 10].
  c.dataset.augment.mixup_alpha = 0.0  # Mixup Beta(alpha, alpha) concentration (0 = off).
  c.dataset.augment.cutmix_alpha = 0.0  # CutMix Beta(alpha, alpha) concentration (0 = off).
  c.dataset.augment.mix_prob = 1.0  # Probability that a training batch is mixed at all.
  c.dataset.augment.mix_switch_prob = 0.5  # With mixup and CutMix both on: probability of CutMix.

  # ---- optimisation ---------------------------------------------------------------------------
  c.optimizer = 'adam'  # adam | adamw | sgd | momentum (PyTorch semantics, see curvelab/optim.py).
  c.learning_rate = 3e-4  # Peak learning rate.
  c.weight_decay = 5e-4  # adamw: decoupled; sgd/momentum: L2 added to the gradient; adam: unused.
  c.weight_decay_on = 'all'  # all (the reference) | matrices (skip biases, norms, embeddings' 1-D).
  c.momentum = 0.9  # Momentum of the `momentum` optimizer.
  c.nesterov = False  # momentum: Nesterov's variant (torch.optim.SGD(nesterov=True): g + m * buf).
  c.lr_schedule = 'constant'  # constant | cosine | linear (decay after warmup).
  c.warmup_epochs = 0.0  # Linear warmup length in epochs (fractions allowed).
  c.final_lr_ratio = 0.0  # End of the cosine/linear decay as a fraction of learning_rate.
  c.grad_clip_norm = 0.0  # Clip gradients to this global L2 norm (0 = off).
  c.grad_accum_steps = 1  # Split each batch into this many micro-batches (same update, less memory).
  c.concurrent_microbatches = 0  # Micro-batches run side by side within each accumulation step
  #   (independent passes a CPU runs one per core; same update). 0 = automatic: 2 on a CPU unless
  #   the model has BatchNorm statistics or the batch does not split, 1 on GPUs and TPUs.
  c.cpu_microbatch_size = 0  # On CPUs, also split each batch into sequential micro-batches of at
  #   least this many examples per device, so activations stay in the caches (same update; dropout
  #   masks are drawn per micro-batch; 0 = off; GPUs, TPUs and BatchNorm models ignore it). Model
  #   configs set what measured fastest (benchmarks/microbatch_sweep.py).
  c.batch_size = 128  # Global batch size (all devices together).
  c.eval_batch_size = 0  # Evaluation batch size; 0 = batch_size.
  c.num_epochs = 10  # Training epochs.
  c.compute_dtype = 'float32'  # float32 | bfloat16 (parameters and optimizer state stay float32).
  c.input_mode = 'host'  # host (grain + numpy augmentation) | device (split on the device, batches
  #                        gathered and augmented inside the compiled step; in-memory images only).
  c.steps_per_call = 1  # Optimizer steps per compiled call (lax.scan): fewer dispatches, same result.

  # ---- selection and stopping -------------------------------------------------------------------
  c.best_metric = ''  # History key choosing the best checkpoint; '' = the task's (val_accuracy...).
  c.early_stopping_patience = 0  # Stop after this many epochs without improvement (0 = off).
  c.early_stopping_min_delta = 0.0  # Smallest change of best_metric that counts as improvement.
  c.max_train_seconds = 0.0  # Stop after the epoch that reaches this much train+eval time (0 = off).

  # ---- cadence and bookkeeping --------------------------------------------------------------------
  c.log_every_steps = 50  # Console progress (steps/s, ETA) every this many steps (0 = off) ...
  c.log_every_seconds = 10.0  # ... and whenever this long has passed since the last line (0 = off).
  c.eval_every_epochs = 1  # Validation cadence in epochs (the last epoch always evaluates).
  c.checkpoint_every_epochs = 1  # Checkpoint cadence in epochs (the last epoch always saves).
  c.checkpoint_keep_latest = 1  # Newest checkpoints kept besides the best (a damaged newest one
  #                               falls back to the previous one: keep 2 on unreliable storage).

  c.metric_writer = 'clu'  # clu (CLU writers: TensorBoard + logging) | events (same files, no TF).
  c.nan_policy = 'stop'  # stop | rollback (to the last good checkpoint with a lower learning rate).
  c.nan_lr_factor = 0.5  # rollback: multiply the learning rate by this on each rollback.
  c.nan_max_rollbacks = 3  # rollback: give up (stop) after this many.

  # ---- the training doctor -----------------------------------------------------------------------
  c.doctor = ml_collections.ConfigDict()
  c.doctor.enabled = True  # Diagnose the history after every epoch into diagnosis.json.
  c.doctor.stop_on = ''  # Comma-separated finding ids that stop the run (e.g. diverged,overfitting).
  c.doctor.patience = 3  # Epochs a stop_on finding must persist before the run stops.

  # ---- sanity mode ----------------------------------------------------------------------------------
  c.sanity_examples = 0  # >0: memorise this many training examples (no aug/dropout/decay) and stop.
  c.sanity_loss_threshold = 0.01  # Training loss that counts as memorised.
  c.sanity_max_epochs = 500  # Give up (sanity: failed) after this many epochs.
  return c

"""Shared pieces of every config: the base ConfigDict, its sections, and the variant arguments.

A config module's ``get_config(arg)`` receives the text after the colon of
``--config=configs/NAME.py:layers=6,optimizer=adamw``; :func:`parse_args` turns it into typed
values and refuses unknown keys with the allowed ones. Every config also takes the variants of
:data:`COMMON_ARGS` (``sanity=5``), applied by :func:`finish` so that what they change shows in
``config.json``.

The fields are grouped in sections, each validated in one place (``curvelab/validate.py``):
``model``, ``task``, ``dataset`` (the data), ``optimizer``, ``schedule``, ``loop`` (sizes and
cadence), ``speed`` (choices that change how fast a run goes, not what it computes), ``stopping``,
``doctor`` and ``sanity``. Their defaults are here and nowhere else. Names that earlier versions
kept at the top level are read from old ``config.json`` files through
``curvelab/configdicts.py``'s ``ALIASES``.
"""

import ml_collections

from curvelab import errors

# Variant arguments every config takes, besides its own (``configs/vit_prenorm.py:sanity=5``).
COMMON_ARGS = {
    'sanity': 0,  # >0: the memorisation check on this many training examples (sanity_variant).
}

def parse_args(arg: str | None, defaults: dict) -> dict:
  """Parses ``key=value,key=value`` against ``defaults`` (which fixes the keys and types).

  Args:
    arg: the variant string, possibly empty or None.
    defaults: allowed keys and their default values; values are cast to the default's type.

  Returns:
    ``defaults`` and :data:`COMMON_ARGS` updated with the parsed values.
  """
  defaults = {**COMMON_ARGS, **defaults}
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
  """Every run's fields, in their sections, with the reference study's defaults where it has one."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameter init, dropout, shuffling and augmentation.

  # ---- model (filled by each config) ------------------------------------------------------------
  c.model = ml_collections.ConfigDict()
  c.model.name = 'vit'  # Registered model name (models/__init__.py).

  # ---- task -------------------------------------------------------------------------------------
  c.task = ml_collections.ConfigDict()
  c.task.name = 'classification'  # classification (more in tasks/).
  c.task.label_smoothing = 0.0  # Label smoothing of the classification targets (0 = off).

  # ---- data -------------------------------------------------------------------------------------
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

  # ---- optimizer (curvelab/optim.py) ------------------------------------------------------------
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adam'  # adam | adamw | sgd | momentum (PyTorch semantics).
  c.optimizer.learning_rate = 3e-4  # Peak learning rate.
  c.optimizer.weight_decay = 5e-4  # adamw: decoupled; sgd/momentum: L2 on the gradient; adam: unused.
  c.optimizer.weight_decay_on = 'all'  # all (the reference) | matrices (skip biases, norms, 1-D).
  c.optimizer.momentum = 0.9  # Momentum of the `momentum` optimizer.
  c.optimizer.nesterov = False  # momentum: Nesterov's variant (torch.optim.SGD(nesterov=True)).
  c.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global L2 norm (0 = off).

  # ---- learning-rate schedule (curvelab/optim.py) -----------------------------------------------
  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = 'constant'  # constant | cosine | linear (decay after warmup).
  c.schedule.warmup_epochs = 0.0  # Linear warmup length in epochs (fractions allowed).
  c.schedule.final_lr_ratio = 0.0  # End of the cosine/linear decay, a fraction of the peak.

  # ---- loop: sizes and cadence (curvelab/durations.py) ------------------------------------------
  c.loop = ml_collections.ConfigDict()
  c.loop.batch_size = 128  # Global batch size (all devices together).
  c.loop.eval_batch_size = 0  # Evaluation batch size; 0 = batch_size.
  c.loop.num_epochs = 10  # Training epochs.
  c.loop.log_every_steps = 50  # Console progress (steps/s, ETA) every this many steps (0 = off) ...
  c.loop.log_every_seconds = 10.0  # ... and whenever this long passed since the last line (0 = off).
  c.loop.eval_every_epochs = 1  # Validation cadence in epochs (the last epoch always evaluates).
  c.loop.checkpoint_every_epochs = 1  # Checkpoint cadence in epochs (the last epoch always saves).
  c.loop.checkpoint_keep_latest = 1  # Newest checkpoints kept besides the best (a damaged newest
  #   one falls back to the previous one: keep 2 on unreliable storage).
  c.loop.metric_writer = 'clu'  # clu (CLU: TensorBoard + logging) | events (same files, no TF).

  # ---- speed: how fast a run goes, not what it computes (curvelab/plan.py) ----------------------
  c.speed = ml_collections.ConfigDict()
  c.speed.compute_dtype = 'float32'  # float32 | bfloat16 (parameters, optimizer state stay float32).
  c.speed.input_mode = 'host'  # host (grain + numpy augmentation) | device (split on the device,
  #   batches gathered and augmented inside the compiled step; in-memory images only).
  c.speed.steps_per_call = 1  # Optimizer steps per compiled call (lax.scan): fewer dispatches.
  c.speed.grad_accum_steps = 1  # Split each batch into this many micro-batches (less memory).
  c.speed.concurrent_microbatches = 0  # Micro-batches side by side within each accumulation step
  #   (independent passes a CPU runs one per core; same update). 0 = automatic: 2 on a CPU unless
  #   the model has BatchNorm statistics or the batch does not split, 1 on GPUs and TPUs.
  c.speed.cpu_microbatch_size = 0  # On CPUs, also split each batch into sequential micro-batches of
  #   at least this many examples per device, so activations stay in the caches (same update;
  #   dropout masks are drawn per micro-batch; 0 = off; GPUs, TPUs and BatchNorm models ignore it).
  #   Model configs set what measured fastest (benchmarks/microbatch_sweep.py).

  # ---- selection and stopping (curvelab/epoch_end.py) -------------------------------------------
  c.stopping = ml_collections.ConfigDict()
  c.stopping.best_metric = ''  # History key choosing the best checkpoint; '' = the task's.
  c.stopping.patience = 0  # Early stopping after this many epochs without improvement (0 = off).
  c.stopping.min_delta = 0.0  # Smallest change of best_metric that counts as improvement.
  c.stopping.max_train_seconds = 0.0  # Stop after the epoch reaching this train+eval time (0 = off).
  c.stopping.nan_policy = 'stop'  # stop | rollback (last good checkpoint, lower learning rate).
  c.stopping.nan_lr_factor = 0.5  # rollback: multiply the learning rate by this on each rollback.
  c.stopping.nan_max_rollbacks = 3  # rollback: give up (stop) after this many.

  # ---- the training doctor ----------------------------------------------------------------------
  c.doctor = ml_collections.ConfigDict()
  c.doctor.enabled = True  # Diagnose the history after every epoch into diagnosis.json.
  c.doctor.stop_on = ''  # Comma-separated finding ids that stop the run (e.g. diverged,overfitting).
  c.doctor.patience = 3  # Epochs a stop_on finding must persist before the run stops.

  # ---- sanity: the memorisation check (set by the ':sanity=N' variant, sanity_variant) ----------
  c.sanity = ml_collections.ConfigDict()
  c.sanity.examples = 0  # >0: memorise this many training examples, then stop.
  c.sanity.loss_threshold = 0.01  # Training loss that counts as memorised.
  return c


# Epochs a sanity run may take before it gives up (sanity: failed); --config.loop.num_epochs after
# the variant changes it.
SANITY_EPOCHS = 500

# Fields that must stand between nothing and the sanity examples, with the values the sanity
# variant gives them (curvelab/validate.py refuses a sanity run that overrides one of them).
SANITY_FIELDS = {
    'dataset.augment.flip': False, 'dataset.augment.crop': False,
    'dataset.augment.pad_crop': 0, 'dataset.augment.randaugment_ops': 0,
    'dataset.augment.mixup_alpha': 0.0, 'dataset.augment.cutmix_alpha': 0.0,
    'model.dropout': 0.0, 'model.drop_path': 0.0,
    'optimizer.weight_decay': 0.0, 'task.label_smoothing': 0.0,
    'speed.grad_accum_steps': 1, 'stopping.patience': 0,
    'schedule.name': 'constant', 'schedule.warmup_epochs': 0.0,
}


def sanity_variant(c: ml_collections.ConfigDict, examples: int) -> ml_collections.ConfigDict:
  """Turns ``c`` into the memorisation check: can the model fit ``examples`` training examples?

  Nothing may stand between the model and its examples (no augmentation, dropout, weight decay,
  label smoothing, warmup or decay); one batch holds them all; the run goes on until the training
  loss reaches ``sanity.loss_threshold`` or ``loop.num_epochs`` (:data:`SANITY_EPOCHS`) pass, and
  saves only at the end. Validation is on the same examples (train.py).
  """
  c.sanity.examples = examples
  for dotted, value in SANITY_FIELDS.items():
    *parents, leaf = dotted.split('.')
    node = c
    for part in parents:
      node = node.get(part, {})
    if leaf in node:  # Models and datasets without the field (no dropout, no augment) skip it.
      node[leaf] = value
  c.loop.batch_size = min(c.loop.batch_size, examples)
  c.loop.eval_batch_size = c.loop.batch_size
  c.loop.num_epochs = SANITY_EPOCHS
  c.loop.checkpoint_every_epochs = c.loop.num_epochs
  c.loop.log_every_steps = 0
  return c


def finish(c: ml_collections.ConfigDict, args: dict) -> ml_collections.ConfigDict:
  """Applies the :data:`COMMON_ARGS` variants; every ``get_config`` returns through it."""
  if args['sanity'] < 0:
    raise errors.ConfigError(f'config argument sanity={args["sanity"]} must be >= 0 '
                             '(0 = off; N = memorise N training examples).')
  if args['sanity']:
    sanity_variant(c, args['sanity'])
  return c

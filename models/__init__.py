"""Model registry: configs name a model, the loop never imports one directly.

Each entry is a keyword-only factory ``build(model_config, *, num_outputs, dtype)`` returning a
Linen module whose ``__call__(..., *, train)`` takes the arrays the task feeds it. Factories of
models with dot-product attention also take ``attention_fn`` (models/attention.py: ``kernel``),
which they hand to every attention layer, as Flax's ``MultiHeadDotProductAttention`` takes it.
"""

from typing import Callable

import flax.linen as nn

from curvelab import errors
from curvelab import registry

# Importing these modules runs their @register decorators (curvelab/registry.py).
REGISTRY = registry.Registry('model.name', modules=tuple(f'models.{m}' for m in (
    'cnn', 'cnn_densenet', 'cnn_fast', 'cnn_googlenet', 'captioner', 'ctc', 'lstm_lm',
    'transformer_lm', 'seq2seq', 'vit')))


def register(name: str, *, validator: Callable[..., None] | None = None,
             takes_attention: bool = False):
  """Decorator adding a factory (and its config validator) to the registry under ``name``.

  Args:
    name: the ``model.name`` value.
    validator: ``validator(model_config, *, example_shape)`` raising ConfigError for settings
      that cannot work with the data.
    takes_attention: the factory takes ``attention_fn``, the attention kernel :func:`build` is
      asked for.
  """
  return REGISTRY.register(name, validator=validator, takes_attention=takes_attention)


def check_init(model_config) -> str:
  """``model.init`` is one of models/inits.py's schemes; configs without the field get ``flax``.

  Raises:
    ConfigError: naming the field, the value and the allowed ones.
  """
  from models import inits  # pylint: disable=g-import-not-at-top
  value = model_config.get('init', 'flax')
  if value not in inits.SCHEMES:
    raise errors.ConfigError(
        f'model.init={value!r} is unknown; allowed: {", ".join(inits.SCHEMES)}.')
  return value


def choose_by_backend(implementation: str, allowed: tuple[str, ...], *, what: str, cpu: str,
                      accelerator: str, backend: str | None = None) -> str:
  """The kernel ``implementation`` stands for: itself, or for ``'auto'`` the backend's default.

  Every backend-specific kernel (models/attention.py, models/conv.py) chooses this way, and
  curvelab/plan.py asks each once per run.

  Args:
    implementation: one of ``allowed`` (which holds ``'auto'``).
    allowed: the kernel's implementations.
    what: the kernel's name, for the error message.
    cpu: the ``'auto'`` choice on CPUs.
    accelerator: the ``'auto'`` choice on GPUs and TPUs.
    backend: 'cpu', 'gpu' or 'tpu'; default: JAX's default backend.

  Raises:
    ValueError: naming the kernel, the value and the allowed ones.
  """
  if implementation not in allowed:
    raise ValueError(f'{what} implementation {implementation!r}: choose from '
                     f'{", ".join(allowed)}')
  if implementation != 'auto':
    return implementation
  import jax  # pylint: disable=g-import-not-at-top
  return cpu if (backend or jax.default_backend()) == 'cpu' else accelerator


def check_positive_ints(model_config, field: str) -> tuple[int, ...]:
  """``model.<field>`` (an int, or a non-empty tuple of ints) as a tuple of positive ints.

  Every model's validator uses this one check. Booleans are refused (``True`` is an ``int`` to
  Python).

  Raises:
    ConfigError: naming the field and the value it got.
  """
  value = model_config[field]
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  if not values or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
    what = 'positive integers' if isinstance(value, (tuple, list)) else 'a positive integer'
    raise errors.ConfigError(f'model.{field} must be {what}, got {value!r}.')
  return values


def validate(model_config, *, example_shape: tuple) -> None:
  """Checks a model config against the data before anything is built."""
  validator = REGISTRY.facts(model_config.name)['validator']
  if validator is not None:
    try:
      validator(model_config, example_shape=example_shape)
    except (KeyError, AttributeError) as e:
      raise errors.ConfigError(
          f'model.name={model_config.name!r} needs the field model.{_missing_field(e)}, which the '
          f'config does not have: start from a config written for {model_config.name!r}.') from e


def names() -> tuple[str, ...]:
  return REGISTRY.names()


def build(model_config, *, num_outputs: int, dtype: str = 'float32',
          attention: str = 'auto') -> nn.Module:
  """Builds the model named by ``model_config.name``.

  Args:
    model_config: the config's ``model`` section.
    num_outputs: classes (classification) or vocabulary size (language models).
    dtype: compute dtype name, ``float32`` or ``bfloat16`` (parameters stay float32).
    attention: the attention implementation every attention layer runs (models/attention.py's
      ``IMPLEMENTATIONS``); a run passes its plan's (curvelab/plan.py). ``'auto'`` chooses for
      JAX's default backend now. Models without dot-product attention ignore it.

  Returns:
    A Linen module.

  Raises:
    ValueError: ``attention`` is not one of the implementations (the message names them).
  """
  from models import attention as attention_lib  # pylint: disable=g-import-not-at-top
  name = model_config.name
  factory = REGISTRY.get(name)
  # Checked for every model, so a misspelt name fails even where no layer would use it.
  attention_fn = attention_lib.kernel(attention)
  extra = {'attention_fn': attention_fn} if REGISTRY.facts(name)['takes_attention'] else {}
  try:
    return factory(model_config, num_outputs=num_outputs, dtype=dtype, **extra)
  except (KeyError, AttributeError) as e:
    # A model section written for another model (e.g. model.name=resnet with ViT fields).
    raise errors.ConfigError(
        f'model.name={name!r} needs the field model.{_missing_field(e)}, which the config does not '
        f'have: start from a config written for {name!r}.') from e


def _missing_field(e: Exception) -> str:
  text = str(e).strip('"\'')
  return text.split("'")[1] if "'" in text else text

"""The loop's state: one pytree that is jitted, sharded, donated and checkpointed whole."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: optimizer steps taken so far.
    params: the model's ``params`` collection.
    model_state: the model's other variable collections (e.g. ``batch_stats``); empty for
      stateless models.
    opt_state: optimizer state.
    rng: PRNG key (raw uint32 data, so it checkpoints like any array); per-step keys are
      ``fold_in(rng, step)``, which makes a resumed run draw the same numbers.
    lr_scale: multiplies every update (i.e. the learning rate); 1 unless a non-finite loss made
      the loop roll back with a reduced rate (``nan_policy=rollback``).
  """
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  rng: jax.Array
  lr_scale: jax.Array


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def init_variables(model, example_inputs: dict, rng: jax.Array) -> dict:
  """Initialises a model's variables from one example batch (shapes only matter)."""
  params_rng, dropout_rng = jax.random.split(rng)
  return model.init({'params': params_rng, 'dropout': dropout_rng}, **example_inputs, train=False)


def create(model, tx: optax.GradientTransformation, example_inputs: dict,
           rng: jax.Array) -> TrainState:
  """Builds the initial state (call under ``jax.jit`` with replicated out_shardings)."""
  init_rng, state_rng = jax.random.split(rng)
  variables = dict(init_variables(model, example_inputs, init_rng))
  params = variables.pop('params')
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                    opt_state=tx.init(params), rng=state_rng, lr_scale=jnp.ones((), jnp.float32))

"""Command-line plumbing shared by train.py, eval.py and the other thin CLIs.

Flag parsing errors (an unknown ``--config.FIELD``, a config file that refuses its arguments) are
turned into one ``error:`` line and exit status 2 instead of absl's usage dump or a traceback.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from curvelab import configdicts
from curvelab import console
from curvelab import errors


def define_config_flags() -> None:
  config_flags.DEFINE_config_file('config', None, 'Config file, with optional :args.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Folder the run writes to (and resumes from).')
  flags.DEFINE_bool('multihost', False, 'Initialise jax.distributed from the environment (TPU VM, '
                    'SLURM, or the three flags below).')
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
  flags.DEFINE_integer('process_id', None, 'This process (multi-process runs).')


def init_distributed() -> None:
  """Starts JAX's multi-controller runtime when asked (before any device is touched).

  With ``--coordinator_address/--num_processes/--process_id`` it connects explicitly; with
  ``--multihost`` alone ``jax.distributed.initialize()`` reads the cluster from the environment
  (TPU VM metadata, SLURM variables, or JAX_COORDINATOR_ADDRESS & co.).
  """
  f = flags.FLAGS
  if not (f.multihost or f.coordinator_address):
    return
  import jax  # pylint: disable=g-import-not-at-top
  # CPU processes exchange collectives through gloo (GPU and TPU use their own interconnects).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if f.coordinator_address:
    missing = [n for n in ('num_processes', 'process_id') if getattr(f, n) is None]
    if missing:
      raise errors.ConfigError(f'--coordinator_address needs --{" and --".join(missing)}.')
    jax.distributed.initialize(coordinator_address=f.coordinator_address,
                               num_processes=f.num_processes, process_id=f.process_id)
  else:
    jax.distributed.initialize()


def _one_line(exc: BaseException) -> str:
  text = str(exc)
  # absl wraps config errors as "flag --config=...: <reason>"; keep the reason, drop trailing lines.
  cause = exc.__cause__ or exc.__context__
  while cause is not None and isinstance(cause, errors.CurvelabError) is False and cause.__cause__:
    cause = cause.__cause__
  if isinstance(cause, errors.CurvelabError):
    return str(cause)
  lines = [l for l in text.splitlines() if l.strip()]
  return lines[0] if lines else type(exc).__name__


def parse_or_exit(argv: list[str]) -> list[str]:
  """Parses absl flags; bad flags exit 2 with one line naming the problem."""
  for arg in argv[1:]:
    # Earlier versions' top-level names: say where the field went, not just that it is unknown.
    moved = arg.startswith('--config.') and configdicts.alias_message(
        arg[len('--config.'):].split('=', 1)[0])
    if moved:
      print(f'error: {moved}', file=sys.stderr)
      sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = _one_line(e)
    if 'Could not override' in message or 'KeyError' in message or 'not found' in message:
      message = f'{message} (unknown config field: check the name against the config file)'
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)
  except errors.CurvelabError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError) as e:
    # ml_collections raises these from inside absl for an override of a field that does not exist.
    key = str(e).strip('"\'')
    key = key.split("'")[1] if "'" in key else key
    overrides = [a.split('=', 1)[0][len('--config.'):] for a in argv[1:]
                 if a.startswith('--config.')]
    field = next((o for o in overrides if o.split('.')[-1] == key), key)
    print(f'error: unknown config field {field!r}; check the name against the config file.',
          file=sys.stderr)
    sys.exit(2)


def run_training_main(main) -> None:
  """Defines the config flags, parses them cleanly and runs ``main`` under absl."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow (CLU writers) stays quiet.
  define_config_flags()
  argv = parse_or_exit(sys.argv)

  def quiet_main(args):
    console.quiet_libraries()  # After absl.app has set up its own logging.
    try:
      init_distributed()
    except errors.CurvelabError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    return main(args)

  app.run(quiet_main, argv=argv, flags_parser=lambda a: a)

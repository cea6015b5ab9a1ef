"""The fault runs of tests/test_faults.py, and the kill -9 storm that starts with the session.

The storm (twenty SIGKILLs, each triggered by the child's own progress line) is a chain of
child processes whose time is mostly single-threaded start-up and compilation, so conftest.py
starts it in a thread when the session starts, beside the in-process tests, and
``test_twenty_kill_nines_then_resume_equals_uninterrupted`` collects it. Where a kill lands
depends only on the steps the child reports, never on the machine's speed.
"""

import random
import re
import signal
import subprocess

from tests import helpers

EPOCHS = 4
# The fault runs: 256 digits, batch 32 -> 8 steps/epoch; TensorFlow-free writer for fast starts.
STEPS_PER_EPOCH = 8
FAULT_FIELDS = {'loop.metric_writer': 'events', 'loop.checkpoint_keep_latest': 2}
FAULT_CLI = helpers.TINY_CLI + [f'--config.{k}={v}' for k, v in FAULT_FIELDS.items()]

# A progress line of the child (console.Progress.report): 'epoch 2 step 13/32  loss ...'.
PROGRESS = re.compile(r'epoch \d+ step (\d+)/(\d+)')


def command(workdir, epochs=EPOCHS, *extra) -> list[str]:
  return helpers.cli_command('train.py', *FAULT_CLI, f'--config.loop.num_epochs={epochs}',
                             f'--workdir={workdir}', *extra)


def kill_at_step(workdir, target: int) -> tuple[int | None, int]:
  """Starts the fault run, SIGKILLs it as soon as it reports global step ``target``.

  The kill is triggered by the child's own progress line, not by a sleep, so it lands at the same
  point of the run on any machine, with a cold or a warm compilation cache. The child has printed
  the line just before, so it is in training: in the next step, or, for an epoch's last step, in
  that epoch's evaluation, history write or checkpoint save.

  Returns:
    (the step the child reported before the kill, or None when it never reached ``target``;
    the child's exit status: ``-SIGKILL`` when the kill ended it).
  """
  proc = subprocess.Popen(command(workdir, EPOCHS, '--config.loop.log_every_steps=1'),
                          cwd=helpers.REPO, env=helpers.child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  reached = None
  try:
    for line in proc.stdout:
      match = PROGRESS.search(line)
      if match and int(match.group(1)) >= target:
        reached = int(match.group(1))
        break
  finally:
    proc.kill()
    proc.communicate()
  return reached, proc.returncode


def kill_storm(workdir, *, kills: int = 20, seed: int = 0) -> list[bool]:
  """``kills`` SIGKILLs at random steps of one run in ``workdir``; per kill, whether it landed.

  Each child resumes from the newest committed checkpoint (an epoch end) and is killed when it
  reports a step drawn from the next 1-12 steps: mid-epoch, or just after an epoch's last step
  (during its evaluation or checkpoint save), or early in the next epoch. Targets stop two steps
  short of the end, so no child can finish: a kill lands when it ends a child in training.
  """
  total = EPOCHS * STEPS_PER_EPOCH
  rng = random.Random(seed)
  landed = []
  for _ in range(kills):
    resume = max(helpers.checkpoint_steps(workdir), default=0)
    target = rng.randint(min(resume + 1, total - 2), min(resume + 12, total - 2))
    reached, returncode = kill_at_step(workdir, target)
    landed.append(reached is not None and returncode == -signal.SIGKILL)
  return landed

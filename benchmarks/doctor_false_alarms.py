r"""How often the doctor raises a warning or an error on fabricated healthy runs.

    python benchmarks/doctor_false_alarms.py [--seeds=120]

4,900 healthy histories by default (`diagnostics.synthetic`): 20, 40, 60 and 80 epochs; validation
noise 1, 2, 3, 5 and 10 %; constant and cosine schedules; 120 seeds each, plus 100 language-model
curves. Prints a table of false alarms by finding and setting, and the total rate: the number the
doctor's thresholds are tuned against (docs/doctor.md, "Findings and thresholds"). A script that
prints, not a test: the figure is to be compared between commits.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from diagnostics import diagnose_history
from diagnostics import synthetic as S

EPOCHS = (20, 40, 60, 80)
NOISES = (0.01, 0.02, 0.03, 0.05, 0.10)
SCHEDULES = ("constant", "cosine")


def _alarms(rows, num_classes=10) -> list[str]:
  return [f.id for f in diagnose_history(rows, num_classes=num_classes) if f.is_problem]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=120, help="seeds per setting (default 120)")
  parser.add_argument("--lm", type=int, default=100, help="language-model curves (default 100)")
  args = parser.parse_args(argv)
  by_finding, by_setting, total = collections.Counter(), collections.Counter(), 0
  for n in EPOCHS:
    for noise in NOISES:
      for schedule in SCHEDULES:
        for seed in range(args.seeds):
          found = _alarms(S.healthy(n=n, seed=seed, noise=noise, schedule=schedule))
          total += 1
          if found:
            by_setting[(n, noise, schedule)] += 1
            by_finding.update(set(found))
  for seed in range(args.lm):
    found = _alarms(S.healthy_lm(seed=seed), num_classes=None)  # Tokens, not 10 classes.
    total += 1
    if found:
      by_setting[("lm", 0.0, "cosine")] += 1
      by_finding.update(set(found))
  alarmed = sum(by_setting.values())
  print("| epochs | noise | schedule | runs with a warning or error |")
  print("|---|---|---|---|")
  for (n, noise, schedule), count in sorted(by_setting.items(), key=str):
    print(f"| {n} | {noise:.0%} | {schedule} | {count} |")
  print()
  print("| finding | runs |")
  print("|---|---|")
  for finding, count in by_finding.most_common():
    print(f"| {finding} | {count} |")
  print()
  print(f"false alarms: {alarmed} of {total} healthy runs ({alarmed / total:.2%})")
  return 0


if __name__ == "__main__":
  sys.exit(main())

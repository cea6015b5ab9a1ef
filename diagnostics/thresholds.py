"""Named thresholds of the training doctor.

Every number a rule compares against lives here so a reviewer can find, question and tune it in one
place. docs/doctor.md explains the reasoning behind each value. Relative thresholds are fractions
of the curve's own scale (a loss of 0.3 and one of 3.0 are judged alike); "noise" is the robust
epoch-to-epoch noise of a curve estimated from its second differences (see curves.noise_sigma).
"""

# --- general ------------------------------------------------------------------------------------
# Patience (epochs without improvement) for the early-stopping what-if; CLI --patience overrides.
DEFAULT_PATIENCE = 5
# A change must exceed this many noise standard deviations to count as real.
NOISE_MULT = 3.0
# Epochs used for "the recent trend" (linear fit over the last few epochs).
TREND_WINDOW = 5
# Logged epochs of a loss or metric needed before a run without problems is called healthy.
HEALTHY_MIN_EPOCHS = 3

# --- overfitting --------------------------------------------------------------------------------
OVERFIT_MIN_EPOCHS = 4
# The validation curve must have been past its best for at least this many epochs.
OVERFIT_MIN_EPOCHS_PAST_BEST = 2
# ... and its recent mean must be this much (relative) worse than the best.
OVERFIT_MIN_RISE_REL = 0.05
# A rise this large (relative) makes the finding an error rather than a warning.
OVERFIT_SEVERE_RISE_REL = 0.25
# The training loss must have improved by this much (relative) since the validation best.
OVERFIT_MIN_TRAIN_IMPROVE_REL = 0.02
# Memorisation without a visible rise: the training loss at most OVERFIT_MEMORISE_GAP_RATIO of the
# validation loss (a 5x gap), validation not improved for OVERFIT_MEMORISE_STALL_EPOCHS epochs, and
# training still improving (OVERFIT_MIN_TRAIN_IMPROVE_REL). A model that drives its training loss
# to near zero while validation stalls far above is fitting noise, whether or not validation rises.
OVERFIT_MEMORISE_GAP_RATIO = 0.2
OVERFIT_MEMORISE_STALL_EPOCHS = 3
# A loss gap alone also describes a well-trained network that simply fits its training set (e.g. a
# CIFAR ResNet at train loss 0.002, val 0.25, 94% val accuracy): the gap must also cost accuracy,
# train minus val accuracy at least OVERFIT_MEMORISE_ACC_GAP; without accuracies, the loss gap must
# be 20x (OVERFIT_MEMORISE_GAP_RATIO_NO_ACC).
OVERFIT_MEMORISE_ACC_GAP = 0.2
OVERFIT_MEMORISE_GAP_RATIO_NO_ACC = 0.05

# --- not_converged ------------------------------------------------------------------------------
NOT_CONVERGED_MIN_EPOCHS = 3
# Recent improvement per epoch, relative to the current value, above which a curve still improves.
NOT_CONVERGED_MIN_REL_SLOPE = 0.005
# ... and at least this fraction of the distance the curve has travelled (max - min) per epoch.
NOT_CONVERGED_MIN_RANGE_SLOPE = 0.001
# A noisy curve best at its last epoch is still improving when its recent half descends
# significantly and makes at least this share of the run's whole descent (a detector from scratch:
# 45 % (tests/fixtures/real_logs/ultralytics_01); exp(-epoch/4) over 20 epochs: 7 %).
NOT_CONVERGED_NOISY_SHARE = 0.25
# not_converged is a warning (rather than info) when the expected further gain (relative) and the
# recent relative slope per epoch reach these values.
NOT_CONVERGED_WARN_GAIN_REL = 0.05
NOT_CONVERGED_WARN_REL_SLOPE = 0.01
# The plateau of the estimate: fitted improvement per epoch below this fraction of the value. Lower
# than NOT_CONVERGED_MIN_REL_SLOPE so a curve that triggers the finding is some epochs from it.
PLATEAU_REL_SLOPE = 0.002
# Points needed before the exponential plateau estimate is made (it has three parameters).
NOT_CONVERGED_MIN_FIT_POINTS = 5
# The plateau estimate is capped at this many times the epochs run so far.
NOT_CONVERGED_MAX_EXTRA_FACTOR = 10

# --- underfitting -------------------------------------------------------------------------------
UNDERFIT_MIN_EPOCHS = 4
# |recent slope| per epoch (relative) below which the training loss counts as flat.
UNDERFIT_FLAT_REL_SLOPE = 0.005
# Final training loss at or above this fraction of the first epoch's loss: "near where it started".
UNDERFIT_NEAR_START_FRACTION = 0.7
# With a known number of classes: final training loss above this fraction of ln(C) is high.
UNDERFIT_CHANCE_FRACTION = 0.5
# A validation loss more than this (relative) above the training loss is a variance problem instead.
UNDERFIT_MAX_GAP_REL = 0.2

# --- no_learning --------------------------------------------------------------------------------
NO_LEARNING_MIN_EPOCHS = 3
# Epochs at the end of the run that must all sit at chance.
NO_LEARNING_WINDOW = 3
# Loss within this fraction of ln(C) counts as "at chance".
NO_LEARNING_CHANCE_TOL = 0.05
# Accuracy at most min(chance * (1 + REL), chance + ABS) counts as chance accuracy.
NO_LEARNING_ACC_REL_MARGIN = 0.2
NO_LEARNING_ACC_ABS_MARGIN = 0.05
# Without a chance level: the run's loss range below this fraction of its mean: "does not move".
NO_LEARNING_FLAT_REL = 0.02
NO_LEARNING_FLAT_MIN_EPOCHS = 4
# A training accuracy this high means the model fits already; a flat loss is then fine.
NO_LEARNING_FITTED_ACCURACY = 0.9
# Validation accuracy whose whole range, first epoch included, is within this (as a fraction)
# while the validation loss is flat: the predictions never change (a constant-class predictor).
# Any run that learns moves its accuracy by more between its first and best epochs.
NO_LEARNING_FROZEN_ACC = 0.002

# --- lr_too_high --------------------------------------------------------------------------------
LR_HIGH_MIN_EPOCHS = 3
# Sum of epoch-to-epoch rises of the training loss, relative to its largest value, to be noticed...
LR_HIGH_MIN_UP_REL = 0.05
# ... and relative to the net decrease over the run ("oscillates more than its trend moves").
LR_HIGH_OSC_RATIO = 0.5
# With a known number of classes: a first-epoch mean loss above this multiple of ln(C) means the
# loss rose above chance during the first epoch.
LR_HIGH_CHANCE_FACTOR = 1.5
# A milder early rise counts when the run then stays near chance: a first-epoch mean loss at least
# LR_HIGH_EARLY_FACTOR x ln(C) (a freshly initialised classifier starts at about ln(C), so a mean
# above it means the updates made the model worse than random) and a last training loss still at
# least LR_HIGH_STUCK_FRACTION x ln(C). Adam at 100x its usual rate does exactly this.
LR_HIGH_EARLY_FACTOR = 1.15
LR_HIGH_STUCK_FRACTION = 0.8
# ... provided the loss then came down from that first epoch by at least this fraction: an
# initialisation that merely starts above ln(C) and never moves is no_learning, not a high rate.
LR_HIGH_EARLY_DROP = 0.1

# --- lr_too_low ---------------------------------------------------------------------------------
LR_LOW_MIN_EPOCHS = 5
# Total decrease over the run at most this fraction of the first value is "slow".
LR_LOW_MAX_TOTAL_DROP = 0.5
# Per-epoch decrease between these fractions of the first value: below it the curve is flat
# (underfitting), above it the run is merely short (not_converged), not slow.
LR_LOW_MIN_REL_SLOPE = 0.002
LR_LOW_MAX_REL_SLOPE = 0.02
# Rises summed at most this fraction of the net decrease: "smooth".
LR_LOW_MAX_UP_FRACTION = 0.1
# Second-half slope / first-half slope within these bounds: "steady" (neither decelerating like a
# healthy curve nor accelerating like a delayed start).
LR_LOW_MIN_LINEARITY = 0.5
LR_LOW_MAX_LINEARITY = 2.0

# --- lr_collapsed -------------------------------------------------------------------------------
LR_COLLAPSE_MIN_EPOCHS = 3
# The learning rate counts as collapsed below this fraction of its peak so far.
LR_COLLAPSE_FRACTION = 0.01
# Collapsing within this fraction of the run is always premature.
LR_COLLAPSE_EARLY_FRACTION = 0.1
# Otherwise at least this fraction of the run must have run collapsed while validation was improving
# (a cosine or linear schedule reaches 1% only in the last ~6% of the run and is not flagged).
LR_COLLAPSE_MIN_TAIL_FRACTION = 0.2
# Epochs before the collapse inspected for "validation still improving", and the relative gain.
LR_COLLAPSE_LOOKBACK = 3
LR_COLLAPSE_MIN_IMPROVE_REL = 0.01

# --- diverged -----------------------------------------------------------------------------------
# A finite loss above this multiple of the first epoch's value is an explosion.
DIVERGED_INITIAL_FACTOR = 3.0
# With a known number of classes: a loss above this multiple of ln(C) is an explosion.
DIVERGED_CHANCE_FACTOR = 10.0
# A training loss this many times the run's median, in any epoch including the first, blew up
# numerically (a first epoch at 1e34 that then "settles" on a dead network's 7.8). Healthy runs,
# memorising ones included, stay within a few thousand times their median.
DIVERGED_MEDIAN_FACTOR = 1e6

# --- early_stopping -----------------------------------------------------------------------------
# Stopping is worth suggesting when it saves at least this many epochs and this fraction of the run.
EARLY_STOP_MIN_SAVED_EPOCHS = 2
EARLY_STOP_MIN_SAVED_FRACTION = 0.1
# A later improvement larger than this (relative) means stopping would have cost quality.
EARLY_STOP_REGRET_REL = 0.005

# --- capacity_vs_data ---------------------------------------------------------------------------
# Parameters per training example above which overfitting is attributed to model size.
CAPACITY_HIGH_PARAMS_PER_EXAMPLE = 10.0
# Parameters per training example below which underfitting is attributed to model size.
CAPACITY_LOW_PARAMS_PER_EXAMPLE = 1.0

# --- degenerate_predictions ---------------------------------------------------------------------
DEGENERATE_MIN_EPOCHS = 3
# CTC output is peaky, so most frames are blank even when healthy; this share means nearly all.
DEGENERATE_BLANK_SHARE = 0.98
DEGENERATE_EMPTY_SHARE = 0.5
DEGENERATE_MIN_LENGTH_RATIO = 0.5
DEGENERATE_MAX_LENGTH_RATIO = 2.0
DEGENERATE_REPETITION_RATE = 0.3
# Classifier predictions: one class taking this share of the predictions is a collapse unless the
# accuracy exceeds what such predictions can reach on a balanced set, 1/C + (1 - share), by more
# than the margin.
CLASS_COLLAPSE_SHARE = 0.8
CLASS_COLLAPSE_ACC_MARGIN = 0.05

# --- gradient_problem ---------------------------------------------------------------------------
GRAD_MIN_EPOCHS = 2
# Global gradient norm growing to this multiple of its early median: exploding.
GRAD_EXPLODE_FACTOR = 10.0
# Epoch maximum over epoch mean of the gradient norm above this: spikes that clipping would cap.
GRAD_SPIKE_FACTOR = 100.0
# Smallest over largest per-layer gradient norm below this: vanishing in the small layers.
GRAD_VANISH_LAYER_RATIO = 1e-4
# Global gradient norm falling below this fraction of its peak while the loss is still high.
GRAD_VANISH_DROP = 1e-3

# --- comparing runs -----------------------------------------------------------------------------
# Two settings differ "beyond seed noise" when their mean best values differ by more than this many
# standard errors of the difference (about a 95% two-sided interval for a normal spread).
SEED_NOISE_Z = 2.0

# Runs too short for a slope (fewer than NOT_CONVERGED_MIN_EPOCHS epochs): the training loss is the
# mean over each epoch while the validation loss is measured at its end, so when the end-of-epoch
# validation loss is this much lower than the epoch-mean training loss, the model was still
# improving fast inside the epoch. 0.1 is beyond the few-percent train/val differences that
# regularisation or augmentation cause in a converged run.
NOT_CONVERGED_WITHIN_EPOCH_DROP = 0.1

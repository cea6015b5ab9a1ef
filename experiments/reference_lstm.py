"""Reference LSTM language-model study: optimizers and depth on configs/lstm_lm.py.

Run with:  python sweep.py --experiments=experiments/reference_lstm.py --root=runs/reference_lstm
Names read as lm<N>_l<layers>_<optimizer>; the metric is perplexity (lower is better).
"""

from sweeps import Run

# Three seeds so that the report can test whether neighbouring rows really differ.
SEEDS = (0, 1, 2)

EXPERIMENTS = [
    # Optimizer comparison at one layer.
    Run("lm1_l1_adam", "configs/lstm_lm.py:layers=1,optimizer=adam"),
    Run("lm2_l1_adamw", "configs/lstm_lm.py:layers=1,optimizer=adamw"),
    Run("lm3_l1_sgd", "configs/lstm_lm.py:layers=1,optimizer=sgd"),
    Run("lm4_l1_momentum", "configs/lstm_lm.py:layers=1,optimizer=momentum"),
    # Depth with AdamW.
    Run("lm5_l2_adamw", "configs/lstm_lm.py:layers=2,optimizer=adamw"),
    Run("lm6_l4_adamw", "configs/lstm_lm.py:layers=4,optimizer=adamw"),
]

"""The reference study's published numbers, keyed by run settings, for report.py --published.

Use:  python report.py runs/reference_vit --out=OUT --published=experiments/reference_published.py

Source: the study's own report (Simon Chamorro, "IFT6135 Assignment 2 Practical", April 10,
2022), numbers copied exactly as printed:
* Table 1: the six LSTM language models on WikiText-2, training time per epoch (s) and test
  perplexity.
* Table 2: the seven ViTs on CIFAR-10, mean train time per epoch (s) and train / valid / test
  accuracy (%). Table 3: their parameter counts. Table 4: their GPU memory (MiB).

How to read them:
* Test numbers are those of the FINAL-epoch model (the study tests the model it has after its
  10 epochs); train and valid accuracies are maxima over epochs (Table 2's caption). Compare them
  with summary.json `last_test_*` and max-over-epochs history values, not with `test_*` (which
  is curvelab's best-validation checkpoint).
* The study numbers its rows 1-7 (ViT) and 1-6 (LSTM) with 3 = momentum and 4 = sgd, while
  experiments/reference_vit.py and reference_lstm.py name their runs the other way round
  (exp3_l2_sgd, exp4_l2_momentum, lm3_l1_sgd, lm4_l1_momentum). Entries here are therefore keyed
  by settings, never by number; `table_row` only says which row of the study's table it is.
* Times and memory were measured on the study's GPU (the report does not name it); the memory
  is nvidia-smi's whole-card usage averaged over training, not a process peak. Neither compares
  with numbers measured on another device.

Format (read by reporting/published.py): PUBLISHED lists sets; each set gives the config.json
keys it is matched on (`settings`, flattened like "model.num_layers"), the metric its figures
are about, the study's protocol (config values it ran with, for a footnote on rows that differ)
and `entries`: settings tuple -> figures. Figure keys: `table_row`, `train_s_per_epoch`,
`num_params`, `gpu_memory_mib`, `max_train_<metric>`, `max_val_<metric>` and
`final_test_<metric>`, with `_pct` appended for metrics shown in percent (accuracy).
"""

SOURCE = 'Chamorro, "IFT6135 Assignment 2 Practical" (2022), Tables 1-4'

VIT = {
    "name": "ViT on CIFAR-10 (study Tables 2-4)",
    "table": "Table 2",  # The table whose Exp numbers `table_row` gives.
    "metric": "accuracy",
    "settings": ("model.name", "model.num_layers", "optimizer.name", "model.block"),
    "protocol": {"dataset.name": "cifar10", "loop.num_epochs": 10},
    "note": "Table 2 numbers its rows 3 = momentum and 4 = sgd; experiments/reference_vit.py "
            "names them exp3_l2_sgd and exp4_l2_momentum, so rows are matched by settings.",
    "entries": {
        # (model.name, model.num_layers, optimizer, model.block): figures.
        ("vit", 2, "adam", "prenorm"): {
            "table_row": 1, "train_s_per_epoch": 8.05, "max_train_accuracy_pct": 64.08,
            "max_val_accuracy_pct": 65.25, "final_test_accuracy_pct": 61.63,
            "num_params": 1_086_730, "gpu_memory_mib": 2341.9},
        ("vit", 2, "adamw", "prenorm"): {
            "table_row": 2, "train_s_per_epoch": 7.99, "max_train_accuracy_pct": 64.07,
            "max_val_accuracy_pct": 65.23, "final_test_accuracy_pct": 61.61,
            "num_params": 1_086_730, "gpu_memory_mib": 2332.9},
        ("vit", 2, "momentum", "prenorm"): {
            "table_row": 3, "train_s_per_epoch": 7.85, "max_train_accuracy_pct": 27.39,
            "max_val_accuracy_pct": 27.23, "final_test_accuracy_pct": 28.88,
            "num_params": 1_086_730, "gpu_memory_mib": 2389.5},
        ("vit", 2, "sgd", "prenorm"): {
            "table_row": 4, "train_s_per_epoch": 7.85, "max_train_accuracy_pct": 20.02,
            "max_val_accuracy_pct": 19.61, "final_test_accuracy_pct": 19.65,
            "num_params": 1_086_730, "gpu_memory_mib": 2361.0},
        ("vit", 4, "adamw", "prenorm"): {
            "table_row": 5, "train_s_per_epoch": 15.14, "max_train_accuracy_pct": 68.52,
            "max_val_accuracy_pct": 71.76, "final_test_accuracy_pct": 65.91,
            "num_params": 2_140_938, "gpu_memory_mib": 2813.4},
        ("vit", 6, "adamw", "prenorm"): {
            "table_row": 6, "train_s_per_epoch": 22.27, "max_train_accuracy_pct": 70.43,
            "max_val_accuracy_pct": 73.42, "final_test_accuracy_pct": 66.89,
            "num_params": 3_195_146, "gpu_memory_mib": 3202.2},
        ("vit", 6, "adamw", "postnorm"): {
            "table_row": 7, "train_s_per_epoch": 22.36, "max_train_accuracy_pct": 72.01,
            "max_val_accuracy_pct": 74.90, "final_test_accuracy_pct": 67.97,
            "num_params": 3_195_146, "gpu_memory_mib": 3254.6},
    },
}

LSTM = {
    "name": "LSTM language model on WikiText-2 (study Table 1)",
    "table": "Table 1",
    "metric": "perplexity",
    "settings": ("model.name", "model.num_layers", "optimizer.name"),
    "protocol": {"dataset.name": "wikitext2", "loop.num_epochs": 10},
    "note": "Table 1 numbers its rows 3 = momentum and 4 = sgd; experiments/reference_lstm.py "
            "names them lm3_l1_sgd and lm4_l1_momentum, so rows are matched by settings.",
    "entries": {
        # (model.name, model.num_layers, optimizer): figures.
        ("lstm_lm", 1, "adam"): {
            "table_row": 1, "train_s_per_epoch": 38.79, "final_test_perplexity": 148.62},
        ("lstm_lm", 1, "adamw"): {
            "table_row": 2, "train_s_per_epoch": 38.91, "final_test_perplexity": 148.12},
        ("lstm_lm", 1, "momentum"): {
            "table_row": 3, "train_s_per_epoch": 38.24, "final_test_perplexity": 1600.20},
        ("lstm_lm", 1, "sgd"): {
            "table_row": 4, "train_s_per_epoch": 38.20, "final_test_perplexity": 2088.86},
        ("lstm_lm", 2, "adamw"): {
            "table_row": 5, "train_s_per_epoch": 45.47, "final_test_perplexity": 152.85},
        ("lstm_lm", 4, "adamw"): {
            "table_row": 6, "train_s_per_epoch": 55.73, "final_test_perplexity": 162.85},
    },
}

PUBLISHED = [VIT, LSTM]

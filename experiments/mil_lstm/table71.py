"""Thesis Table 7.1 (MNIST-bags MIL test error, %): five poolings x five bag tasks, over seeds.

Each cell is ``experiments/mil_lstm/mnist_<column>_<row>.yaml``, whose ``# Expected:`` header holds
the thesis number. ``experiments/tables.py`` runs the cells (resumably) and writes the table:

    make table TABLE=mil_lstm/table71 SEEDS="1 2 3 4 5" JOBS=4
    make table TABLE=mil_lstm/table71 SEEDS="1 2" ARGS="--trainer.max_epochs=1 \\
        --data.init_args.num_train_bags=16 --data.init_args.num_val_bags=8 \\
        --data.init_args.num_test_bags=16"                       # a smoke run of every cell
"""

from experiments.tables import Table

COLUMNS = {
    "single_sigma2": "II: single, σ 2",
    "single_sigma8": "III: single, σ 8",
    "multiple": "IV: multiple",
    "counting": "V: counting",
    "outlier": "VI: outlier",
}
ROWS = {
    "attention": "Atten. Based",
    "gated_attention": "Gated Atten. Based",
    "dynamic_pooling": "Dyn. Pool",
    "lstm_nomi": "Ours w/o Mut. Info.",
    "lstm": "Ours",
}

TABLE = Table(
    name="mil_lstm/table71",
    title="Thesis Table 7.1: MNIST-bags test error (%; the VI baselines with the MI loss, * there)",
    metric="test/error",
    rows=list(ROWS.values()),
    columns=list(COLUMNS.values()),
    cells={
        (row, column): f"mil_lstm/mnist_{c}_{r}"
        for r, row in ROWS.items()
        for c, column in COLUMNS.items()
    },
    seed_keys=("seed_everything", "data.init_args.seed"),
)

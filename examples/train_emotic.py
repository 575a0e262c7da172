#!/usr/bin/env python
"""Train and evaluate DAG-Net on EMOTIC with the paper's recipe.

The same program as the installed ``dagnet-train`` command
(:mod:`dagnet_layers.commands.train`); ``--help`` lists every option with its
default. Examples::

    # no data given: writes the synthetic EMOTIC-format demo set and trains a
    # small configuration on it (about half a minute on an idle 2-core CPU; see the README)
    python examples/train_emotic.py

    # the official release (Annotations/Annotations.mat + emotic/*/images)
    python examples/train_emotic.py --data-root /data/emotic --cache-dir /data/emotic-cache

    # the community CSV + npy layout
    python examples/train_emotic.py --preprocessed /data/emotic_pre

    # a Table 2 row, or Fig. 3's partition sweep
    python examples/train_emotic.py --data-root /data/emotic --ablation bam_gsam
    python examples/train_emotic.py --data-root /data/emotic --partition 6

    # several GPUs / nodes
    torchrun --nproc_per_node 8 examples/train_emotic.py --data-root /data/emotic

Outputs (``--output-dir``): ``args.json``, ``log.csv`` (one row per epoch),
``checkpoints/{last,best}/`` (safetensors weights + JSON config + tensors-only
training state; ``best`` also holds ``inference.json`` with the score function,
the validation thresholds and the data source for ``dagnet-predict``),
``test_report.{json,csv}``, ``test_ap.png`` (per-category AP; beside the
paper's Table 1 only when the data is EMOTIC) and ``training_curves.png``.
Outputs of the synthetic demo say so in every title and file.
"""

import sys

from dagnet_layers.commands.entry import train_entry

if __name__ == "__main__":
    sys.exit(train_entry(prog="train_emotic.py"))

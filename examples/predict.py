#!/usr/bin/env python
"""Predict EMOTIC emotions for the persons in photos, folders or videos with a trained DAG-Net.

The same program as the installed ``dagnet-predict`` command
(:mod:`dagnet_layers.commands.predict`, whose docstring describes the
checkpoint folder, the detector and the preprocessing)::

    python examples/predict.py --checkpoint RUN_DIR/checkpoints/best photo.jpg
    python examples/predict.py --checkpoint RUN_DIR/checkpoints/best photos/ clip.mp4 \\
        --output-dir predictions
    python examples/predict.py --checkpoint RUN_DIR/checkpoints/best --image photo.jpg \\
        --box 120 40 310 460 --box 400 80 520 470 \\
        --true-labels "Happiness,Engagement" --true-labels "Peace" --output pred.png
"""

import sys

from dagnet_layers.commands.entry import predict_entry

if __name__ == "__main__":
    sys.exit(predict_entry(prog="predict.py"))

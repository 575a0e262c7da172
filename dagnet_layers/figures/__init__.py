"""Figures for DAG-Net results: AP against the paper, training curves, per-image predictions.

Three figures a researcher wants next to a DAG-Net run:

- :func:`plot_ap_comparison`: per-category AP of a run next to the published
  columns of the paper's Table 1 (:data:`dagnet_layers.emotic.paper.PAPER_TABLE1`);
- :func:`plot_training_curves`: loss, validation mAP and learning rate per
  epoch from the training engine's CSV log;
- :func:`plot_prediction`: the paper's Fig. 2 (image, person boxes, predicted
  labels in blue and ground truth in green) plus what the model attends to:
  the GSAM (ABN) attention map over the masked context and LSAM's learned
  patch graph, with BAM's body weight per person.

One module per figure family: :mod:`~dagnet_layers.figures.ap`,
:mod:`~dagnet_layers.figures.curves`, :mod:`~dagnet_layers.figures.prediction`
(with :mod:`~dagnet_layers.figures.graph` for its patch-graph panel),
:mod:`~dagnet_layers.figures.sweeps`, :mod:`~dagnet_layers.figures.diagnostic` (the
diagnostic benchmark: each module's arms against floor and ceiling, example scenes,
BAM weights by kind of body, GSAM maps on the cue regions, learned adjacencies), and
for in-the-wild prediction
:mod:`~dagnet_layers.figures.annotate` (Pillow only, for every video frame) and
:mod:`~dagnet_layers.figures.timeline`; every name is importable from here.

Every function builds a :class:`matplotlib.figure.Figure` directly, without
:mod:`matplotlib.pyplot`: no display or global figure registry is involved
(the Agg canvas renders PNGs), so the functions run headless, in threads and
in loops without leaking figures. Matplotlib is imported inside the
functions, so ``import dagnet_layers`` stays fast. Colours come from the
Okabe-Ito palette, which stays distinguishable under the common colour-vision
deficiencies, and every colour-coded item also carries a text label.
"""

from dagnet_layers.figures._style import OKABE_ITO
from dagnet_layers.figures.annotate import annotate_image
from dagnet_layers.figures.ap import plot_ap_comparison
from dagnet_layers.figures.curves import plot_training_curves
from dagnet_layers.figures.diagnostic import (
    plot_adjacency_matrices,
    plot_attention_on_cues,
    plot_body_weights,
    plot_family_ap,
    plot_image_grid,
    plot_module_arms,
)
from dagnet_layers.figures.prediction import attention_overlay, plot_prediction
from dagnet_layers.figures.sweeps import plot_partition_sweep
from dagnet_layers.figures.timeline import plot_timeline

__all__ = [
    "OKABE_ITO",
    "annotate_image",
    "attention_overlay",
    "plot_adjacency_matrices",
    "plot_ap_comparison",
    "plot_attention_on_cues",
    "plot_body_weights",
    "plot_family_ap",
    "plot_image_grid",
    "plot_module_arms",
    "plot_partition_sweep",
    "plot_prediction",
    "plot_timeline",
    "plot_training_curves",
]

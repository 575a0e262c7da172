"""Does each DAG-Net module do its job? Sets, metrics, arms and statistics that can tell.

- :mod:`~dagnet_layers.emotic.diagnostic.sets`: one SYNTHETIC scene set per module,
  where doing the module's job should pay, with the ground truth to check it;
- :mod:`~dagnet_layers.emotic.diagnostic.metrics`: metrics, each shown to give an
  oracle its ceiling and a null its chance value;
- :mod:`~dagnet_layers.emotic.diagnostic.arms`: per module, the paper's module, its
  floor (none), its ceiling (an oracle), controls and the options beyond the paper,
  declared before any run with the primary metric and the contrasts;
- :mod:`~dagnet_layers.emotic.diagnostic.bench`: training and testing one arm on one
  seed, with test-time interventions;
- :mod:`~dagnet_layers.emotic.diagnostic.stats`: paired confidence intervals, Holm's
  correction and the verdicts;
- :mod:`~dagnet_layers.emotic.diagnostic.cues`: a model read on the mixed-cue scenes
  of :func:`~dagnet_layers.emotic.data.make_diagnostic_emotic`.

``dagnet-diagnose`` runs them all and writes the report.
"""

from dagnet_layers.emotic.diagnostic.arms import (
    ARMS,
    BASE_MODEL,
    PRIMARY_CONTRASTS,
    PRIMARY_METRIC,
    SMALLEST_EFFECT,
    Arm,
    LocalStreamProbe,
    arm,
    build_arm_model,
    describe_arm,
    oracle_adjacency,
    primary_value,
)
from dagnet_layers.emotic.diagnostic.bench import EPOCHS, SET_SIZES, TRAINING, run_arm
from dagnet_layers.emotic.diagnostic.cues import (
    CUE_FAMILIES,
    CUE_REGIONS,
    DiagnosticOutputs,
    body_kind,
    collect_outputs,
    cue_boxes,
    cue_masks,
    diagnose,
)
from dagnet_layers.emotic.diagnostic.metrics import (
    accuracy,
    adjacency_contrast,
    attention_mass_in_mask,
    candidate_pointing,
    candidate_share,
    cell_means,
    patches_touched,
    point_biserial,
    pointing_game,
    relation_contrast,
    roc_auc,
)
from dagnet_layers.emotic.diagnostic.sets import (
    BAM_KINDS,
    LSAM_CLASSES,
    PALETTE,
    SET_MODULES,
    ModuleSet,
    make_bam_set,
    make_gsam_set,
    make_lsam_set,
    make_set,
)
from dagnet_layers.emotic.diagnostic.stats import holm, paired_difference, sign_flip_p, verdict

__all__ = [
    "ARMS",
    "BAM_KINDS",
    "BASE_MODEL",
    "CUE_FAMILIES",
    "CUE_REGIONS",
    "EPOCHS",
    "LSAM_CLASSES",
    "PALETTE",
    "PRIMARY_CONTRASTS",
    "PRIMARY_METRIC",
    "SET_MODULES",
    "SET_SIZES",
    "SMALLEST_EFFECT",
    "TRAINING",
    "Arm",
    "DiagnosticOutputs",
    "LocalStreamProbe",
    "ModuleSet",
    "accuracy",
    "adjacency_contrast",
    "arm",
    "attention_mass_in_mask",
    "body_kind",
    "build_arm_model",
    "candidate_pointing",
    "candidate_share",
    "cell_means",
    "collect_outputs",
    "cue_boxes",
    "cue_masks",
    "describe_arm",
    "diagnose",
    "holm",
    "make_bam_set",
    "make_gsam_set",
    "make_lsam_set",
    "make_set",
    "oracle_adjacency",
    "paired_difference",
    "patches_touched",
    "point_biserial",
    "pointing_game",
    "primary_value",
    "relation_contrast",
    "roc_auc",
    "run_arm",
    "sign_flip_p",
    "verdict",
]

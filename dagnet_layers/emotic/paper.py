"""Published numbers of the DAG-Net paper, for side-by-side reports.

Everything here is transcribed from the paper's Table 1 (26-category test AP
on EMOTIC, in percent) and Table 2 (ablation mAP). The DAG-Net paper does not
state which AP protocol its numbers use; see :mod:`dagnet_layers.emotic.metrics`.
"""

from __future__ import annotations

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES

__all__ = ["PAPER_TABLE1", "PAPER_TABLE1_MAP", "PAPER_TABLE2"]

_TABLE1_ROWS = (
    # category: Kosti et al. [20], Bendjoudi et al. [21], Zhang et al. [16], DAG-Net
    (27.85, 31.92, 46.89, 34.03),
    (9.49, 13.94, 10.87, 15.55),
    (14.06, 17.42, 11.23, 19.1),
    (58.64, 57.73, 62.64, 56.46),
    (7.48, 8.18, 5.93, 10.69),
    (78.35, 75.29, 72.49, 75.42),
    (14.97, 14.88, 11.28, 18.32),
    (21.32, 28.32, 26.91, 30.53),
    (16.89, 19.72, 16.94, 21.52),
    (29.63, 23.11, 18.68, 21.98),
    (3.18, 2.84, 1.94, 2.55),
    (87.53, 85.83, 88.56, 86.82),
    (17.73, 16.72, 13.33, 16.11),
    (77.16, 70.43, 71.89, 71.19),
    (9.7, 14.43, 13.26, 14.76),
    (14.14, 8.27, 4.21, 9.18),
    (58.26, 76.61, 73.26, 78.14),
    (8.94, 9.38, 6.52, 12.64),
    (21.56, 24.31, 32.85, 24.27),
    (45.46, 46.89, 57.46, 48.49),
    (19.66, 23.94, 25.42, 32.96),
    (9.28, 6.28, 5.99, 9.87),
    (18.84, 26.24, 23.39, 34.01),
    (18.81, 10.07, 9.02, 12.23),
    (14.71, 13.98, 17.53, 14.19),
    (8.34, 9.71, 10.55, 7.93),
)
_METHODS = ("Kosti et al.", "Bendjoudi et al.", "Zhang et al.", "DAG-Net")

#: Per-category AP (%) of Table 1: ``{method: {category: AP}}``.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    method: {cat: row[m] for cat, row in zip(EMOTIC_CATEGORIES, _TABLE1_ROWS, strict=True)}
    for m, method in enumerate(_METHODS)
}

#: mAP (%) of Table 1, as printed in the paper.
PAPER_TABLE1_MAP: dict[str, float] = {
    "Kosti et al.": 27.38,
    "Bendjoudi et al.": 28.33,
    "Zhang et al.": 28.42,
    "DAG-Net": 29.96,
}

#: Table 2 ablation mAP (%), keyed by the preset names of :data:`dagnet_layers.models.ABLATIONS`.
PAPER_TABLE2: dict[str, float] = {
    "bam": 28.99,
    "gsam": 29.23,
    "lsam": 29.09,
    "bam_gsam": 29.35,
    "bam_gsam_lsam_nogcn": 29.39,
    "full": 29.96,
}

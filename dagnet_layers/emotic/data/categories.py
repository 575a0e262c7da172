"""The 26 EMOTIC emotion categories: the one list the whole package uses.

Order is the official one of the EMOTIC release (Kosti et al., TPAMI 2020),
which is also the column order of every multi-hot label vector, of the
model's logits and of every per-category metric.
"""

from __future__ import annotations

__all__ = ["CATEGORY_TO_INDEX", "EMOTIC_CATEGORIES", "NUM_CATEGORIES"]

#: The 26 category names in the official order.
EMOTIC_CATEGORIES: tuple[str, ...] = (
    "Affection",
    "Anger",
    "Annoyance",
    "Anticipation",
    "Aversion",
    "Confidence",
    "Disapproval",
    "Disconnection",
    "Disquietment",
    "Doubt/Confusion",
    "Embarrassment",
    "Engagement",
    "Esteem",
    "Excitement",
    "Fatigue",
    "Fear",
    "Happiness",
    "Pain",
    "Peace",
    "Pleasure",
    "Sadness",
    "Sensitivity",
    "Suffering",
    "Surprise",
    "Sympathy",
    "Yearning",
)

#: Number of categories (26).
NUM_CATEGORIES: int = len(EMOTIC_CATEGORIES)

#: Map from category name to its column in label vectors and logits.
CATEGORY_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIC_CATEGORIES)}

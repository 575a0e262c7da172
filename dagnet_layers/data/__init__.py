"""EMOTIC data: categories, readers, datasets, paired transforms, cache, synthetic data."""

from dagnet_layers.data.categories import CATEGORY_TO_INDEX, EMOTIC_CATEGORIES, NUM_CATEGORIES

__all__ = ["CATEGORY_TO_INDEX", "EMOTIC_CATEGORIES", "NUM_CATEGORIES"]

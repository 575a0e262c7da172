"""EMOTIC data: categories, readers, datasets, paired transforms, cache, synthetic data.

Records flow one way: ``read_emotic_annotations`` (official ``Annotations.mat``) or
``read_emotic_preprocessed`` (community CSV + npy) -> pixels (``load_image_rgb``,
``crop_body_and_context``) -> ``build_emotic_cache`` -> ``EmoticDataset`` (body crop +
masked context per person) -> the paired transforms (per sample, or batched on the
device). The modules import in that direction only: ``categories`` and ``records``
know nothing of ``pixels``, which knows nothing of ``cache``, which knows nothing
of ``dataset``. ``jpeg`` (``EmoticJpegDataset`` + ``JpegBatchDecoder``) moves the
decoding of the official layout's JPEGs out of the workers, onto the device.
``sources`` (``emotic_datasets``, ``demo_datasets``) goes from a source and a cache
choice to the three datasets, as ``dagnet-train`` does.
"""

from dagnet_layers.emotic.data.cache import (
    BUILD_SKIP_REASONS,
    CACHE_FORMAT_VERSION,
    CACHE_MANIFEST,
    build_emotic_cache,
    cache_is_complete,
    estimate_cache_bytes,
    row_crc32,
    split_lock,
    verify_emotic_cache,
)
from dagnet_layers.emotic.data.categories import (
    CATEGORY_TO_INDEX,
    EMOTIC_CATEGORIES,
    NUM_CATEGORIES,
)
from dagnet_layers.emotic.data.dataset import EmoticDataset, NpyRows, detect_layout
from dagnet_layers.emotic.data.jpeg import (
    JPEG_DECODE_MODES,
    EmoticJpegDataset,
    JpegBatchDecoder,
    collate_encoded,
    pillow_bilinear_resize,
    read_encoded_image,
)
from dagnet_layers.emotic.data.pixels import MAX_IMAGE_PIXELS, crop_body_and_context, load_image_rgb
from dagnet_layers.emotic.data.preprocessed import (
    PREPROCESSED_COLUMNS,
    PreprocessedSplit,
    preprocessed_files,
    read_emotic_preprocessed,
    write_emotic_preprocessed,
)
from dagnet_layers.emotic.data.records import (
    BAD_RECORD_REASONS,
    EMOTIC_SPLITS,
    VAD_RANGE,
    EmoticRecord,
    EmoticRecords,
    ReadSummary,
    clamp_bbox,
    labels_to_multihot,
    load_emotic_mat,
    open_npy,
    read_emotic_annotations,
    resolve_in_root,
)
from dagnet_layers.emotic.data.scenes import (
    DIAGNOSTIC_CUES,
    DiagnosticPerson,
    DiagnosticScenes,
    make_diagnostic_emotic,
    read_diagnostic_scenes,
)
from dagnet_layers.emotic.data.sources import (
    CACHE_HEADROOM,
    choose_cache,
    default_cache_dir,
    demo_datasets,
    emotic_datasets,
    sized_cache_dir,
    write_demo_set,
)
from dagnet_layers.emotic.data.synthetic import (
    CONTEXT_SHAPES,
    JOINT_CATEGORIES,
    SYNTHETIC_CUES,
    SYNTHETIC_MARKER,
    TORSO_COLOURS,
    TORSO_PATTERNS,
    SyntheticEmotic,
    SyntheticPerson,
    make_synthetic_emotic,
    synthetic_marker,
    write_synthetic_marker,
)
from dagnet_layers.emotic.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EmoticBatchTransform,
    EmoticPairedTransform,
    denormalize,
    emotic_batch_transform,
    emotic_eval_transform,
    emotic_train_transform,
    hflip_pair,
    mask_bbox,
    normalization_of,
)

__all__ = [
    "BAD_RECORD_REASONS",
    "BUILD_SKIP_REASONS",
    "CACHE_FORMAT_VERSION",
    "CACHE_HEADROOM",
    "CACHE_MANIFEST",
    "CATEGORY_TO_INDEX",
    "CONTEXT_SHAPES",
    "DIAGNOSTIC_CUES",
    "EMOTIC_CATEGORIES",
    "EMOTIC_SPLITS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "JOINT_CATEGORIES",
    "JPEG_DECODE_MODES",
    "MAX_IMAGE_PIXELS",
    "NUM_CATEGORIES",
    "PREPROCESSED_COLUMNS",
    "SYNTHETIC_CUES",
    "SYNTHETIC_MARKER",
    "TORSO_COLOURS",
    "TORSO_PATTERNS",
    "VAD_RANGE",
    "DiagnosticPerson",
    "DiagnosticScenes",
    "EmoticBatchTransform",
    "EmoticDataset",
    "EmoticJpegDataset",
    "EmoticPairedTransform",
    "EmoticRecord",
    "EmoticRecords",
    "JpegBatchDecoder",
    "NpyRows",
    "PreprocessedSplit",
    "ReadSummary",
    "SyntheticEmotic",
    "SyntheticPerson",
    "build_emotic_cache",
    "cache_is_complete",
    "choose_cache",
    "clamp_bbox",
    "collate_encoded",
    "crop_body_and_context",
    "default_cache_dir",
    "demo_datasets",
    "denormalize",
    "detect_layout",
    "emotic_batch_transform",
    "emotic_datasets",
    "emotic_eval_transform",
    "emotic_train_transform",
    "estimate_cache_bytes",
    "hflip_pair",
    "labels_to_multihot",
    "load_emotic_mat",
    "load_image_rgb",
    "make_diagnostic_emotic",
    "make_synthetic_emotic",
    "mask_bbox",
    "normalization_of",
    "open_npy",
    "pillow_bilinear_resize",
    "preprocessed_files",
    "read_diagnostic_scenes",
    "read_emotic_annotations",
    "read_emotic_preprocessed",
    "read_encoded_image",
    "resolve_in_root",
    "row_crc32",
    "sized_cache_dir",
    "split_lock",
    "synthetic_marker",
    "verify_emotic_cache",
    "write_demo_set",
    "write_emotic_preprocessed",
    "write_synthetic_marker",
]

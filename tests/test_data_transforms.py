"""Tests of the paired EMOTIC transforms and of box / crop geometry (property-based)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from dagnet_layers.emotic.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EmoticBatchTransform,
    clamp_bbox,
    crop_body_and_context,
    denormalize,
    emotic_batch_transform,
    emotic_eval_transform,
    emotic_train_transform,
    hflip_pair,
    mask_bbox,
)
from dagnet_layers.emotic.data.transforms import _jitter_affine

FAST = settings(max_examples=60, deadline=None)


@st.composite
def image_and_box(draw, max_side: int = 40):
    w = draw(st.integers(4, max_side))
    h = draw(st.integers(4, max_side))
    x1 = draw(st.floats(-10, w + 10, allow_nan=False))
    y1 = draw(st.floats(-10, h + 10, allow_nan=False))
    x2 = draw(st.floats(-10, w + 10, allow_nan=False))
    y2 = draw(st.floats(-10, h + 10, allow_nan=False))
    return w, h, (x1, y1, x2, y2)


@FAST
@given(image_and_box())
def test_clamp_bbox_properties(case) -> None:
    w, h, box = case
    (x1, y1, x2, y2), clamped = clamp_bbox(box, w, h)
    assert 0 <= x1 <= w and 0 <= x2 <= w and 0 <= y1 <= h and 0 <= y2 <= h
    inside = 0 <= box[0] <= w and 0 <= box[2] <= w and 0 <= box[1] <= h and 0 <= box[3] <= h
    assert clamped == (not inside)
    if inside:
        assert (x1, y1, x2, y2) == tuple(int(v) for v in box)


@FAST
@given(image_and_box(), st.integers(2, 24))
def test_crop_geometry_properties(case, size: int) -> None:
    w, h, box = case
    ibox, _ = clamp_bbox(box, w, h)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if ibox[2] <= ibox[0] or ibox[3] <= ibox[1]:
        with pytest.raises(ValueError, match="empty"):
            crop_body_and_context(img, ibox, size)
        return
    body, context, sbox = crop_body_and_context(img, ibox, size)
    assert body.shape == context.shape == (3, size, size)
    assert body.dtype == np.uint8 and sbox.dtype == np.float32
    assert (sbox >= 0).all() and (sbox[[0, 2]] <= size).all() and (sbox[[1, 3]] <= size).all()
    np.testing.assert_allclose(sbox * np.array([w / size, h / size] * 2), ibox, atol=1e-3)


@FAST
@given(image_and_box(max_side=32), st.booleans())
def test_flip_keeps_body_context_mask_and_box_consistent(case, flip: bool) -> None:
    """After a (paired) flip the masked pixels are exactly the mask of the new box."""
    w, h, box = case
    side = max(w, h)
    ibox, _ = clamp_bbox(box, side, side)
    if ibox[2] <= ibox[0] or ibox[3] <= ibox[1]:
        return
    gen = torch.Generator().manual_seed(0)
    context = torch.randint(1, 256, (1, 3, side, side), dtype=torch.uint8, generator=gen)
    body = torch.randint(1, 256, (1, 3, 7, 5), dtype=torch.uint8, generator=gen)
    bbox = torch.tensor([ibox], dtype=torch.float32)
    masked = mask_bbox(context, bbox)
    fb, fc, fbox = hflip_pair(body, masked, bbox, torch.tensor([flip]))
    assert torch.equal(fc, mask_bbox(fc, fbox))  # nothing outside the new box is zero...
    assert torch.equal(fc == 0, mask_bbox(torch.ones_like(fc), fbox) == 0)  # ...all inside is
    assert torch.equal(fb, body.flip(-1) if flip else body)
    if flip:
        assert fbox[0, 0] == side - ibox[2] and fbox[0, 2] == side - ibox[0]
        # flipping twice is the identity on everything
        bb, cc, box2 = hflip_pair(fb, fc, fbox, True)
        assert torch.equal(bb, body) and torch.equal(cc, masked) and torch.equal(box2, bbox)


@FAST
@given(st.integers(8, 40), st.integers(8, 40), st.floats(0, 30), st.floats(0, 30),
       st.floats(1, 12), st.floats(1, 12))  # fmt: skip
def test_train_transform_flip_moves_mask_with_box(size, out, x, y, bw, bh) -> None:
    """Through the full batch transform (flip forced, no jitter) the mask tracks the box."""
    x, y = min(x, size - 1), min(y, size - 1)
    box = torch.tensor([[x, y, min(size, x + bw), min(size, y + bh)]])
    ctx = mask_bbox(torch.full((1, 3, size, size), 200, dtype=torch.uint8), box)
    batch = {"body": torch.zeros(1, 3, size, size, dtype=torch.uint8), "context": ctx,
             "bbox": box}  # fmt: skip
    t = EmoticBatchTransform(size, train=True, jitter=0.0, flip_p=1.0)
    res = t(batch)
    assert torch.equal(denormalize(res["context"]), ctx.flip(-1))
    np.testing.assert_allclose(res["bbox"][0, [0, 2]].numpy(),
                               [size - box[0, 2].item(), size - box[0, 0].item()], rtol=1e-6)
    if out != size:  # resizing rescales the box with the context
        res2 = EmoticBatchTransform(out, train=True, jitter=0.0, flip_p=1.0)(batch)
        np.testing.assert_allclose(res2["bbox"].numpy(), res["bbox"].numpy() * out / size,
                                   rtol=1e-5)  # fmt: skip


def _batch(n: int = 4, side: int = 24, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "body": torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
        "context": torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g),
        "bbox": torch.tensor([[2.0, 3.0, 10.0, 20.0]] * n),
        "categories": torch.zeros(n, 26),
        "index": torch.arange(n),
    }


def test_eval_transform_is_normalisation_only() -> None:
    b = _batch()
    out = emotic_batch_transform(train=False, size=24)(b)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out["body"], (b["body"] / 255.0 - mean) / std)
    assert torch.equal(out["bbox"], b["bbox"]) and torch.equal(out["index"], b["index"])
    assert torch.equal(denormalize(out["context"]), b["context"])
    # per-sample wrapper = batch of one
    one = emotic_eval_transform(24)({k: v[1] for k, v in b.items()})
    torch.testing.assert_close(one["body"], out["body"][1])


def test_train_without_randomness_equals_eval() -> None:
    b = _batch()
    tr = EmoticBatchTransform(16, train=True, jitter=0.0, flip_p=0.0)
    ev = EmoticBatchTransform(16, train=False)
    torch.testing.assert_close(tr(b)["context"], ev(b)["context"])


def test_flip_is_shared_by_body_and_context() -> None:
    """Left half bright, right half dark: body and context flip together, per sample."""
    n, side = 64, 16
    img = torch.zeros(n, 3, side, side, dtype=torch.uint8)
    img[..., : side // 2] = 255
    b = {"body": img.clone(), "context": img.clone(), "bbox": torch.tensor([[0.0, 0, 4, 4]] * n)}
    out = EmoticBatchTransform(side, train=True, jitter=0.0, flip_p=0.5,
                               generator=torch.Generator().manual_seed(1))(b)  # fmt: skip
    body_flipped = out["body"][:, 0, 0, 0] < out["body"][:, 0, 0, -1]
    ctx_flipped = out["context"][:, 0, 0, 0] < out["context"][:, 0, 0, -1]
    box_flipped = out["bbox"][:, 0] > 0
    assert torch.equal(body_flipped, ctx_flipped) and torch.equal(body_flipped, box_flipped)
    assert 10 < body_flipped.sum() < 54  # both outcomes happen


def test_jitter_matches_torchvision_colour_ops() -> None:
    """Composed affine jitter equals torchvision's ops applied in the same order (no clipping)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 10, 12, generator=g) * 0.4 + 0.3
    factors = 0.8 + 0.4 * torch.rand(6, 3, generator=g)
    order = torch.rand(6, 3, generator=g).argsort(1)
    a, c = _jitter_affine(factors, order, x.mean((-2, -1)), 1.0)
    y = torch.einsum("nij,njhw->nihw", a, x) + c.view(6, 3, 1, 1)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in range(6):
        z = x[i]
        for op in order[i].tolist():
            z = ops[op](z, factors[i, op].item())
        torch.testing.assert_close(y[i], z, atol=1e-5, rtol=1e-5)


def test_jitter_shares_factors_and_is_reproducible() -> None:
    b = _batch(n=8)
    b["context"] = b["body"].clone()  # same pixels in, so same pixels out iff same factors
    def run(seed):
        t = EmoticBatchTransform(24, train=True, jitter=0.4, hue=0.1, flip_p=0.5,
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return t(b)

    out = run(3)
    assert torch.equal(out["body"], out["context"])
    assert torch.equal(run(3)["body"], out["body"])
    assert not torch.equal(run(4)["body"], out["body"])
    assert out["body"].dtype == torch.float32 and torch.isfinite(out["body"]).all()
    x = denormalize(out["body"]).float() / 255
    assert x.min() >= 0 and x.max() <= 1


def test_per_sample_train_transform_shapes() -> None:
    t = emotic_train_transform(size=20)
    s = {k: v[0] for k, v in _batch().items()}
    out = t(s)
    assert out["body"].shape == out["context"].shape == (3, 20, 20)
    assert out["bbox"].shape == (4,) and out["categories"].shape == (26,)
    assert "EmoticPairedTransform(size=20, train=True" in repr(t)


def test_transform_input_errors() -> None:
    t = EmoticBatchTransform(8)
    with pytest.raises(KeyError, match="needs key 'bbox'"):
        t({"body": torch.zeros(1, 3, 8, 8), "context": torch.zeros(1, 3, 8, 8)})
    with pytest.raises(ValueError, match=r"batch\['body'\] must be \(B, 3, H, W\)"):
        t({"body": torch.zeros(1, 1, 8, 8), "context": torch.zeros(1, 3, 8, 8),
           "bbox": torch.zeros(1, 4)})  # fmt: skip
    with pytest.raises(ValueError, match="bbox'] must be"):
        t({"body": torch.zeros(2, 3, 8, 8), "context": torch.zeros(2, 3, 8, 8),
           "bbox": torch.zeros(3, 4)})  # fmt: skip
    with pytest.raises(TypeError, match="uint8 or float"):
        t({"body": torch.zeros(1, 3, 8, 8, dtype=torch.int32),
           "context": torch.zeros(1, 3, 8, 8), "bbox": torch.zeros(1, 4)})  # fmt: skip
    for kwargs in ({"size": 0}, {"jitter": 1.5}, {"flip_p": 2.0}, {"hue": 0.7}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            EmoticBatchTransform(**kwargs)
    with pytest.raises(ValueError, match="mask_bbox needs"):
        mask_bbox(torch.zeros(3, 4, 4), torch.zeros(2, 4))


def test_mask_bbox_batched_equals_single() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(1, 255, (5, 3, 20, 30), dtype=torch.uint8, generator=g)
    box = torch.tensor([[-3.2, 4.5, 12.1, 25.0], [5, 5, 29.9, 9], [0, 0, 30, 20],
                        [10, 10, 10, 12], [29.5, 19.5, 31, 22]])  # fmt: skip
    batched = mask_bbox(img, box)
    for i in range(5):
        assert torch.equal(mask_bbox(img[i], box[i]), batched[i])
        x1, y1 = max(0, math.floor(box[i, 0])), max(0, math.floor(box[i, 1]))
        x2, y2 = math.ceil(box[i, 2]), math.ceil(box[i, 3])
        assert (batched[i][:, y1:y2, x1:x2] == 0).all()
        assert (batched[i] == 0).sum() == 3 * max(0, min(y2, 20) - y1) * max(0, min(x2, 30) - x1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_transform_on_cuda() -> None:
    b = {k: v.cuda() for k, v in _batch().items()}
    t = emotic_batch_transform(train=True, size=32).cuda()
    out = t(b)
    assert out["body"].is_cuda and out["body"].shape == (4, 3, 32, 32)


def test_batch_transform_follows_train_and_eval() -> None:
    """train_mode is the module's training flag: .eval() turns the augmentation off."""
    b = _batch()
    t = emotic_batch_transform(train=True, size=32, generator=torch.Generator().manual_seed(0))
    reference = emotic_batch_transform(train=False, size=32)
    assert t.train_mode and not reference.train_mode and not reference.training
    t.eval()
    assert not t.train_mode
    assert torch.equal(t(b)["body"], reference(b)["body"])
    t.train()
    assert t.train_mode and not torch.equal(t(b)["body"], reference(b)["body"])

"""JPEGs decoded on the device (``EmoticJpegDataset`` + ``JpegBatchDecoder``).

The reference is what we did not write: Pillow's own ``Image.resize`` and the host
path (Pillow decoding and resizing in the workers). On the CPU the batched path must
give the very same samples; the CUDA comparison (nvJPEG against libjpeg-turbo) is in
``tests/test_cuda.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dagnet_layers.emotic.data import (
    EmoticDataset,
    EmoticJpegDataset,
    JpegBatchDecoder,
    build_emotic_cache,
    collate_encoded,
    emotic_batch_transform,
    jpeg,
    make_synthetic_emotic,
    pillow_bilinear_resize,
    read_encoded_image,
)
from dagnet_layers.errors import ImageDecodeError, ImageTooLargeError, MissingFileError


@pytest.fixture(scope="module")
def emotic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jpeg") / "emotic"
    return Path(make_synthetic_emotic(root, n_images=16, seed=3, image_size=(160, 120)).root)


def _pillow(img: torch.Tensor, size: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR, box=box))


@pytest.mark.parametrize("seed", range(4))
def test_the_resize_is_pillows_to_the_last_grey_level(seed: int) -> None:
    # down- and upscaling, boxes anywhere (their filter taps reach the pixels around
    # them: cropping first and resizing would differ along the edges by tens of levels)
    g = torch.Generator().manual_seed(seed)
    for _ in range(40):
        h, w = (int(v) for v in torch.randint(8, 300, (2,), generator=g))
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        x1 = int(torch.randint(0, w - 1, (1,), generator=g))
        x2 = int(torch.randint(x1 + 1, w + 1, (1,), generator=g))
        y1 = int(torch.randint(0, h - 1, (1,), generator=g))
        y2 = int(torch.randint(y1 + 1, h + 1, (1,), generator=g))
        size = int(torch.randint(1, 260, (1,), generator=g))
        for box in ((x1, y1, x2, y2), None):
            got = pillow_bilinear_resize(img, size, box=box).permute(1, 2, 0).numpy()
            want = _pillow(img, size, box)
            diff = np.abs(got.astype(int) - want)
            # one grey level, in rare pixels, where Pillow's float sums round otherwise
            assert diff.max() <= 1, (h, w, box, size)
            assert (diff > 0).mean() < 1e-3, (h, w, box, size)


def test_a_filter_long_enough_to_need_pillows_clip_is_pillows_too() -> None:
    # past 16,000 taps (an axis of over 8,000 pixels shrunk to one) the rounding keeps
    # Pillow's clip to 255, which shorter filters provably never reach
    g = torch.Generator().manual_seed(2)
    for img in (torch.full((3, 2, 8100), 255, dtype=torch.uint8),
                torch.randint(200, 256, (3, 3, 9000), dtype=torch.uint8, generator=g)):  # fmt: skip
        for size in (1, 2):
            got = pillow_bilinear_resize(img, size).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(got, _pillow(img, size, None))


def test_cropping_before_resizing_is_not_what_pillow_does() -> None:
    # the test above can fail: a crop-then-resize, the obvious implementation, differs
    img = torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    box = (20, 10, 100, 80)
    cropped = pillow_bilinear_resize(img[:, 10:80, 20:100].contiguous(), 24)
    assert np.abs(cropped.permute(1, 2, 0).numpy().astype(int) - _pillow(img, 24, box)).max() > 1


# Which pass Pillow runs first, read off its sources: 12.3.0's Image.resize (rows
# first only for images over 100x taller than wide, since 12.2.0) and 13.0.0's
# ImagingResampleInner (rows first when the height shrinks by more than twice the width).
@pytest.mark.parametrize(("width", "height", "size", "pillow", "rows_first"), [
    (640, 480, 224, (13, 0), False),  # width shrinks more
    (300, 600, 224, (13, 0), True),  # 376 rows lost > 2 x 76 columns
    (300, 600, 224, (12, 3), False),
    (150, 250, 50, (13, 0), False),  # 200 rows lost, not more than 2 x 100
    (150, 250, 51, (13, 0), True),  # 199 > 2 x 99
    (50, 40, 224, (13, 0), False),  # upscaling: no rows lost
    (2, 250, 7, (13, 0), True),
    (2, 250, 7, (12, 3), True),  # over 100x taller than wide, fewer rows
    (2, 250, 7, (12, 2), True),
    (2, 200, 7, (12, 3), False),  # exactly 100x: not over
    (2, 250, 300, (12, 3), False),  # more rows
    (2, 250, 7, (12, 1), False),  # always columns first
    (300, 600, 224, (10, 4), False),
])
def test_the_pass_order_is_pillows(width: int, height: int, size: int,
                                   pillow: tuple[int, int], rows_first: bool) -> None:
    assert jpeg._vertical_first(width, height, size, size, pillow) is rows_first


@pytest.mark.parametrize(("version", "parsed"), [
    ("12.3.0", (12, 3)), ("13.0.0.dev0", (13, 0)), ("10.4.0", (10, 4)), ("14", (14, 0)),
    ("12.3rc1", (12, 3)),
])
def test_pillow_versions_are_read(version: str, parsed: tuple[int, int]) -> None:
    assert jpeg._pillow_version(version) == parsed


@pytest.mark.parametrize(("shape", "size", "box"), [
    ((250, 2), 7, None),  # rows first from Pillow 12.2 on
    ((290, 2), 5, (1, 20, 2, 270)),
    ((600, 300), 224, None),  # rows first from Pillow 13 on
    ((600, 300), 224, (10, 40, 290, 560)),
    ((480, 640), 224, (100, 50, 300, 400)),  # columns first in every version
])
def test_the_installed_pillows_pass_order_is_followed(
        monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], size: int,
        box: tuple[int, int, int, int] | None) -> None:
    img = torch.randint(0, 256, (3, *shape), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(sum(shape)))  # fmt: skip
    want = _pillow(img, size, box)
    got = pillow_bilinear_resize(img, size, box=box).permute(1, 2, 0).numpy()
    assert np.array_equal(got, want)
    # and the other order would not do: these cases tell the two apart
    rule = jpeg._vertical_first
    monkeypatch.setattr(jpeg, "_vertical_first", lambda *a: not rule(*a))
    other = pillow_bilinear_resize(img, size, box=box).permute(1, 2, 0).numpy()
    assert (other != want).mean() > 0.01


def test_a_batchs_coefficients_computed_at_once_are_each_regions_own() -> None:
    # one NumPy computation for every region of a batch, over the most taps any has: a
    # region's own taps must be what it gets alone, and its extra taps must weigh 0 and
    # point inside its slice (a chunk uses them); on the CPU whatever the device
    g = np.random.default_rng(5)
    n = g.integers(2, 3000, 60)
    lo = np.array([g.integers(0, v - 1) for v in n])
    hi = np.array([g.integers(a + 1, v + 1) for a, v in zip(lo, n, strict=True)])
    # and one whole 640-pixel axis
    n, lo, hi = np.append(n, 640), np.append(lo, 0), np.append(hi, 640)
    for size in (1, 37, 224):
        together = jpeg._pillow_coefficients(n, lo, hi, size)
        assert together.weights.shape[2] == together.taps.max()
        for k in range(len(n)):
            alone = jpeg._pillow_coefficients(n[k : k + 1], lo[k : k + 1], hi[k : k + 1], size)
            own = int(alone.taps[0])
            assert together.taps[k] == own == 2 * int(np.ceil(max((hi[k] - lo[k]) / size, 1))) + 1
            assert alone.weights.shape[2] == own
            np.testing.assert_array_equal(together.weights[k, :, :own], alone.weights[0])
            np.testing.assert_array_equal(together.index[k, :, :own], alone.index[0])
            assert (together.start[k], together.stop[k]) == (alone.start[0], alone.stop[0])
            assert (together.weights[k, :, own:] == 0).all()
            extra = together.index[k, :, own:]
            assert ((extra >= 0) & (extra < together.stop[k] - together.start[k])).all()


def test_tensors_packed_for_a_device_come_back_whole() -> None:
    # on a GPU every coefficient of a batch travels in one copy: the float64 weights as
    # their int64 bits beside the indices, viewed back after; packed to the CPU here,
    # the views must hold the very same numbers, dtypes and shapes
    g = torch.Generator().manual_seed(3)
    tensors = [torch.rand(7, 1, 5, dtype=torch.float64, generator=g) * 2**22,
               torch.randint(0, 10**6, (35,), generator=g),
               torch.tensor([[0.5, -1e300, float("inf")]], dtype=torch.float64),
               torch.arange(4)]  # fmt: skip
    packed = jpeg._pack(tensors, torch.device("cpu"))  # as chunks on the CPU do
    assert len({t.untyped_storage().data_ptr() for t in packed}) == 1
    for a, b in zip(tensors, packed, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_bad_resize_arguments_are_named() -> None:
    img = torch.zeros(3, 10, 10, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        pillow_bilinear_resize(img.float(), 4)
    with pytest.raises(ValueError, match="not a non-empty region"):
        pillow_bilinear_resize(img, 4, box=(5, 0, 5, 10))


@pytest.mark.parametrize("chunk_bytes", [None, 1 << 30, 1_500_000])
def test_a_batch_of_mixed_sizes_is_resized_as_pillow_resizes_each_image(chunk_bytes) -> None:
    # off the CPU the decoder resizes many persons in one chunk, their regions end to end
    # and padded to the chunk's most taps and rows, its coefficients packed into one
    # buffer (here: as on the CPU, one chunk per pass order, chunks of a few; chunked
    # runs pack on the CPU too); sizes and boxes mixed, shared and not, each person
    # must still get Pillow's own pixels, in the batch's order (columns first and rows
    # first alike)
    g = torch.Generator().manual_seed(11)
    shapes = [(48, 64), (48, 64), (70, 30), (48, 64), (300, 20), (70, 30), (33, 33), (250, 2)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
              for h, w in shapes]  # fmt: skip
    crops = [(5, 5, 40, 30), (5, 5, 40, 30), (0, 10, 30, 70), (1, 2, 3, 4), (2, 30, 18, 290),
             (0, 10, 30, 70), (0, 0, 33, 33), (0, 3, 2, 240)]  # fmt: skip
    batch = {"image": images, "crop": crops, "bbox": torch.zeros(len(images), 4),
             "path": [f"{i}.png" for i in range(len(images))]}  # fmt: skip
    if chunk_bytes is None:  # the decoder, as it runs on the CPU
        out = JpegBatchDecoder(40, mask_body=False)(batch)
        body, context = out["body"], out["context"]
    else:
        jobs = [(i, c) for i, c in enumerate(crops)] + [(i, None) for i in range(len(images))]
        resized = jpeg._resize_all(images, jobs, 40, torch.device("cpu"), chunk_bytes)
        body, context = resized[: len(images)], resized[len(images) :]
    for i, (img, crop) in enumerate(zip(images, crops, strict=True)):
        np.testing.assert_array_equal(body[i].permute(1, 2, 0).numpy(), _pillow(img, 40, crop),
                                      err_msg=f"body {i}")  # fmt: skip
        np.testing.assert_array_equal(context[i].permute(1, 2, 0).numpy(),
                                      _pillow(img, 40, None), err_msg=f"context {i}")  # fmt: skip


@pytest.mark.parametrize("size", [48, 160, 256])
def test_the_device_path_gives_the_host_paths_samples(emotic: Path, size: int) -> None:
    for split in ("train", "test"):
        host = EmoticDataset(emotic, split, size=size)
        encoded = EmoticJpegDataset(emotic, split, size=size)
        assert len(host) == len(encoded) > 0
        samples = [encoded[i] for i in range(len(encoded))]
        # bytes, nothing decoded yet, except the CMYK JPEGs the synthetic writer makes as
        # EMOTIC has them: those the worker decodes
        for rec, s in zip(host.records, samples, strict=True):
            with Image.open(rec.image_path) as img:
                assert s["image"].dim() == (3 if img.mode == "CMYK" else 1), rec.image_path
        assert any(s["image"].dim() == 1 for s in samples)
        batch = JpegBatchDecoder(size)(collate_encoded(samples))
        assert set(batch) == {"body", "context", "bbox", "categories", "vad", "index"}
        for i in range(len(host)):
            want = host[i]
            for key in ("body", "context", "bbox", "categories", "index"):
                torch.testing.assert_close(batch[key][i], want[key], rtol=0, atol=0,
                                           msg=f"{split} {i} {key}")  # fmt: skip
            torch.testing.assert_close(batch["vad"][i], want["vad"], equal_nan=True)


def test_unmasked_contexts_and_the_transform_after_decoding(emotic: Path) -> None:
    host = EmoticDataset(emotic, "val", size=64, mask_body=False)
    encoded = EmoticJpegDataset(emotic, "val", size=64)
    batch = collate_encoded([encoded[i] for i in range(len(encoded))])
    plain = JpegBatchDecoder(64, mask_body=False)(batch)
    contexts = torch.stack([host[i]["context"] for i in range(len(host))])
    assert torch.equal(plain["context"], contexts)
    tf = emotic_batch_transform(False, size=64)
    chained = JpegBatchDecoder(64, mask_body=False, transform=tf, channels_last=True)(batch)
    assert chained["body"].dtype == torch.float32
    torch.testing.assert_close(chained["body"], tf(plain)["body"])


def test_files_the_device_cannot_take_are_decoded_in_the_worker(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    files = {"rgb.jpg": rgb, "grey.jpg": rgb.convert("L"), "cmyk.jpg": rgb.convert("CMYK"),
             "rgb.png": rgb, "rgba.png": rgb.convert("RGBA")}  # fmt: skip
    for name, img in files.items():
        img.save(tmp_path / name)
    from dagnet_layers.emotic.data import crop_body_and_context, load_image_rgb

    box = (5, 4, 30, 36)
    for name in files:
        image, size = read_encoded_image(tmp_path / name)
        assert size == (50, 40)
        # nvJPEG takes RGB and greyscale JPEGs; everything else arrives as pixels
        assert image.dim() == (1 if name in ("rgb.jpg", "grey.jpg") else 3), name
        if image.dim() == 1:
            assert bytes(image.numpy()) == (tmp_path / name).read_bytes()
        batch = {"image": [image], "crop": [box], "path": [name],
                 "bbox": torch.zeros(1, 4)}  # fmt: skip
        out = JpegBatchDecoder(16, mask_body=False)(batch)
        body, context, _ = crop_body_and_context(load_image_rgb(tmp_path / name), box, 16)
        assert np.array_equal(out["body"][0].numpy(), body), name
        assert np.array_equal(out["context"][0].numpy(), context), name


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.jpg"):
        read_encoded_image(tmp_path / "nope.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageDecodeError, match=r"text\.jpg"):
        read_encoded_image(tmp_path / "text.jpg")
    Image.new("RGB", (300, 200)).save(tmp_path / "big.jpg")
    with pytest.raises(ImageTooLargeError, match=r"big\.jpg"):
        read_encoded_image(tmp_path / "big.jpg", max_pixels=300 * 200 - 1)
    # a header that parses over data cut short: neither decoder reads it
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.jpg")
    good = (tmp_path / "noise.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    image, _ = read_encoded_image(tmp_path / "cut.jpg")
    assert image.dim() == 1
    batch = {"image": [image], "crop": [(0, 0, 10, 10)], "path": [str(tmp_path / "cut.jpg")],
             "bbox": torch.zeros(1, 4)}  # fmt: skip
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg"):
        JpegBatchDecoder(8)(batch)


def test_data_torchvision_rejects_is_read_as_pillow_reads_it(tmp_path: Path) -> None:
    # garbage after valid tables: libjpeg-turbo in torchvision refuses it, Pillow (the
    # host path) decodes it; the device path falls back to Pillow and agrees
    noise = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.jpg")
    good = (tmp_path / "noise.jpg").read_bytes()
    (tmp_path / "odd.jpg").write_bytes(good[:1000] + bytes(len(good) - 1000))
    from dagnet_layers.emotic.data import crop_body_and_context, load_image_rgb

    image, _ = read_encoded_image(tmp_path / "odd.jpg")
    batch = {"image": [image, image], "crop": [(0, 0, 40, 30)] * 2, "path": ["odd.jpg"] * 2,
             "bbox": torch.zeros(2, 4)}  # fmt: skip
    out = JpegBatchDecoder(16, mask_body=False)(batch)
    body, _, _ = crop_body_and_context(load_image_rgb(tmp_path / "odd.jpg"), (0, 0, 40, 30), 16)
    assert np.array_equal(out["body"][1].numpy(), body)

    # counted, not silent: the batch refused whole, then the odd file alone, twice; the
    # good file beside it went through the device decoder on the retry
    decoder = JpegBatchDecoder(16, mask_body=False)
    fine, _ = read_encoded_image(tmp_path / "noise.jpg")
    decoder({"image": [fine, image, image], "crop": [(0, 0, 40, 30)] * 3, "bbox": torch.zeros(3, 4),
             "path": ["noise.jpg", "odd.jpg", "odd.jpg"]})  # fmt: skip
    decoder({**batch, "image": [fine, fine], "path": ["noise.jpg"] * 2})
    assert decoder.pop_fallbacks() == (1, {"odd.jpg": 2})
    assert decoder.pop_fallbacks() == (0, {})


def test_a_cache_or_a_foreign_batch_is_refused(emotic: Path, tmp_path: Path) -> None:
    build_emotic_cache(emotic, tmp_path / "cache", splits=("val",), size=32)
    with pytest.raises(ValueError, match="cache layout"):
        EmoticJpegDataset(tmp_path / "cache", "val")
    with pytest.raises(KeyError, match="collate_encoded"):
        JpegBatchDecoder(8)({"body": torch.zeros(1, 3, 8, 8)})
    with pytest.raises(ValueError, match="at least one"):
        collate_encoded([])


def test_samples_cross_into_workers(emotic: Path) -> None:
    from torch.utils.data import DataLoader

    encoded = EmoticJpegDataset(emotic, "train", size=32)
    loader = DataLoader(encoded, batch_size=4, num_workers=2, collate_fn=collate_encoded)
    batches = [JpegBatchDecoder(32)(b) for b in loader]
    host = EmoticDataset(emotic, "train", size=32)
    bodies = torch.cat([b["body"] for b in batches])
    assert torch.equal(bodies, torch.stack([host[i]["body"] for i in range(len(host))]))
    assert os.cpu_count()  # the loader ran real worker processes


@pytest.mark.parametrize("backend", ["native", "cudaMallocAsync"])
def test_device_decoding_never_allocates_on_the_callers_stream(monkeypatch, backend) -> None:
    # What only a GPU can show happening is in tests/test_cuda.py; here, on stand-ins for
    # torch.cuda, the order of the calls that keeps nvJPEG (which ignores stream order)
    # out of blocks the caller's stream freed with reads still queued
    import contextlib

    import torchvision.io

    calls: list[tuple[str, ...]] = []
    current = ["caller"]
    made: list[str] = []

    class Stream:
        def __init__(self, name: str = "ours") -> None:
            self.name = name
            made.append(name)

        def wait_stream(self, other: Stream) -> None:
            calls.append(("wait", self.name, other.name))

        def synchronize(self) -> None:
            calls.append(("synchronize", self.name))

    class Decoded:
        def __init__(self) -> None:
            self.recorded: list[str] = []

        def record_stream(self, stream: Stream) -> None:
            self.recorded.append(stream.name)

    @contextlib.contextmanager
    def use(stream: Stream):
        saved, current[0] = current[0], stream.name
        yield
        current[0] = saved

    def decode_jpeg(data, mode, device):
        calls.append(("decode", current[0]))
        return [Decoded() for _ in data] if isinstance(data, list) else Decoded()

    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode_jpeg)
    monkeypatch.setattr(jpeg, "_DECODE_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream(current[0]))
    monkeypatch.setattr(torch.cuda, "get_allocator_backend", lambda: backend)
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", use)

    cuda = torch.device("cuda")
    batch = jpeg._decode_jpeg([torch.zeros(4, dtype=torch.uint8)] * 3, cuda)
    one = jpeg._decode_jpeg(torch.zeros(4, dtype=torch.uint8), cuda)
    if backend == "native":
        # decoded on our stream, the caller's waiting for it; every output held back
        # from reuse until the caller's queued reads of it have run
        assert calls == [("decode", "ours"), ("wait", "caller", "ours")] * 2
        assert [d.recorded for d in [*batch, one]] == [["caller"]] * 4
        assert list(jpeg._DECODE_STREAMS) == [0] and made.count("ours") == 1  # made once
    else:
        # stream-ordered frees, which the hardware engine ignores: the host waits
        assert calls == [("synchronize", "caller"), ("decode", "caller")] * 2
    assert current == ["caller"]

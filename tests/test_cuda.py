"""What only a GPU can confirm: every layer and the model on CUDA against a float64 CPU reference.

Skipped without CUDA (CI has none); ``benchmarks/cuda_suite.py`` runs them first on
any machine that has a GPU (``pytest -m cuda``). References are computed on the CPU
in float64; CUDA runs in float32 with TF32 off, so the tolerances are float32's.

``DAGNET_TEST_DEVICE=cpu python -m pytest -m cuda`` rehearses them on the CPU: the
same code on another device, which checks the tests themselves (a GPU is lent for
minutes, not to debug them), not CUDA.
"""

from __future__ import annotations

import os

import pytest
import torch

from dagnet_layers import (
    AttentionBranch,
    BodyAttention,
    LearnedAdjacencyGCN,
    PatchEncoder,
    build_dagnet,
)
from dagnet_layers.emotic.data import emotic_batch_transform
from dagnet_layers.emotic.engine import train_one_epoch
from dagnet_layers.emotic.losses import DAGNetCriterion

#: Where the tests run: CUDA unless ``DAGNET_TEST_DEVICE`` names another device.
DEVICE = torch.device(os.environ.get("DAGNET_TEST_DEVICE", "cuda"))

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                       reason="needs CUDA"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _compare(module: torch.nn.Module, *inputs: torch.Tensor, rtol: float = 2e-4,
             device: torch.device = DEVICE) -> None:
    """Outputs and every gradient on the device (float32) against CPU float64."""
    ref = module.double()
    ref_in = [x.double().requires_grad_(x.is_floating_point()) for x in inputs]
    ref_out = ref(*ref_in)
    ref_out = ref_out if isinstance(ref_out, tuple) else (ref_out,)
    sum(o.double().sum() for o in ref_out if o is not None).backward()
    ref_grads = {n: p.grad.clone() for n, p in ref.named_parameters() if p.grad is not None}

    dev = module.float().to(device)
    dev.zero_grad(set_to_none=True)
    dev_in = [x.float().to(device).requires_grad_(x.is_floating_point()) for x in inputs]
    dev_out = dev(*dev_in)
    dev_out = dev_out if isinstance(dev_out, tuple) else (dev_out,)
    sum(o.float().sum() for o in dev_out if o is not None).backward()
    for a, b in zip(dev_out, ref_out, strict=True):
        if a is not None:
            scale = b.abs().max().clamp_min(1e-6)
            assert ((a.double().cpu() - b.detach()).abs().max() / scale) < rtol
    # relative to the module's largest gradient: a gradient that is zero in exact
    # arithmetic (a bias before a normalisation) is rounding noise in both precisions
    scale = max(float(g.abs().max()) for g in ref_grads.values())
    for name, p in dev.named_parameters():
        if p.grad is not None:
            err = float((p.grad.double().cpu() - ref_grads[name]).abs().max()) / scale
            assert err < 10 * rtol, f"{name}: relative gradient error {err:.2e}"


def test_layers_match_float64_cpu() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 64, 64)
    _compare(BodyAttention(in_channels=3, hidden_channels=8), x, torch.rand(4, 32))
    _compare(AttentionBranch(64, 26), torch.rand(4, 64, 8, 8))
    _compare(PatchEncoder(3, n=4, hidden_channels=8, out_channels=8, pool_size=2), x)
    _compare(LearnedAdjacencyGCN(32, (32, 16), num_nodes=16), torch.rand(4, 16, 32))


@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_encoders_fused_step_is_the_module_chain_on_cuda(channels_last: bool) -> None:
    """The fused ReLU + block mean (training, grads on) against the ReLU -> pool chain,
    both on CUDA with the same weights, in float64 so that a wrong index or divisor in
    either layout shows at once; bf16 autocast as a training run uses it."""
    torch.manual_seed(0)
    fused = PatchEncoder(3, n=4, hidden_channels=8, out_channels=8, pool_size=2).to(DEVICE)
    chain = PatchEncoder(3, n=4, hidden_channels=8, out_channels=8, pool_size=2,
                         fused_relu_pool=False).to(DEVICE)  # fmt: skip
    chain.load_state_dict(fused.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(2, 3, 32, 48, device=DEVICE).contiguous(memory_format=fmt)
    for dtype, tol in ((torch.float64, 1e-10), (torch.bfloat16, 2e-2)):
        outs, grads = [], []
        for module in (fused, chain):
            module.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_(True)
            if dtype == torch.float64:
                module.double()
                out = module(xi.double())
            else:
                module.float()
                with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
                    out = module(xi)
            out.float().square().sum().backward()
            outs.append(out.detach().float())
            grads.append([xi.grad.float()] + [q.grad.float() for q in module.parameters()])
        scale = outs[1].abs().max()
        assert (outs[0] - outs[1]).abs().max() <= tol * scale
        for a, b in zip(grads[0], grads[1], strict=True):
            assert (a - b).abs().max() <= tol * b.abs().max().clamp_min(1e-12)


def test_model_on_cuda_fp32_bf16_channels_last_compile() -> None:
    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", partition=2).eval()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        ref = model.double()(x.double(), x.double())
        model = model.float().to(DEVICE)
        xc = x.to(DEVICE)
        fp32 = model.forward_logits(xc, xc)
        torch.testing.assert_close(fp32.double().cpu(), ref.logits, rtol=1e-4, atol=1e-4)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            bf16 = model.forward_logits(xc, xc)
        assert bf16.dtype == torch.float32  # the classifier runs in float32 under autocast
        assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()
        cl = model.to(memory_format=torch.channels_last)
        xcl = xc.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(cl.forward_logits(xcl, xcl), fp32, rtol=1e-4, atol=1e-4)
        compiled = torch.compile(cl.forward_logits)
        torch.testing.assert_close(compiled(xcl, xcl), fp32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_epoch_on_cuda_with_device_augmentation(amp: str) -> None:
    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", partition=2).to(DEVICE)
    g = torch.Generator().manual_seed(0)
    loader = [{
        "body": torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=g),
        "context": torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=g),
        "bbox": torch.tensor([[8.0, 8.0, 40.0, 56.0]]).repeat(4, 1),
        "categories": (torch.rand(4, 26, generator=g) > 0.8).float(),
        "vad": torch.rand(4, 3, generator=g) * 9 + 1,
    } for _ in range(3)]  # fmt: skip
    for b in loader:
        b["categories"][:, 0] = 1.0
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(DEVICE.type) if amp == "fp16" else None
    stats = train_one_epoch(
        model, loader, DAGNetCriterion("kl"), optimizer, device=DEVICE,
        batch_transform=emotic_batch_transform(True, size=64).to(DEVICE), amp=amp, scaler=scaler,
        channels_last=True, progress=False,
    )  # fmt: skip
    assert stats.loss == stats.loss and stats.loss > 0  # finite


@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_predictor_on_cuda_matches_the_cpu(amp: str | None) -> None:
    """In-the-wild prediction on CUDA (and under autocast) scores as on the CPU; the
    detector runs on the GPU too."""
    from PIL import Image

    from dagnet_layers import create_model
    from dagnet_layers.inference import Predictor, TorchvisionPersonDetector

    torch.manual_seed(0)
    model = create_model("test_dagnet").eval()
    image = Image.new("RGB", (96, 80), (90, 140, 200))
    image.paste((200, 60, 60), (20, 10, 50, 70))
    boxes = [(20, 10, 50, 70), (55, 5, 90, 78)]
    cpu = Predictor(model, image_size=64).predict(image, boxes)
    gpu = Predictor(model, image_size=64, device=DEVICE, amp=amp).predict(image, boxes)
    tol = 1e-4 if amp is None else 2e-2  # softmax over 26 categories: absolute
    for a, b in zip(cpu, gpu, strict=True):
        assert max(abs(a.scores[c] - b.scores[c]) for c in a.scores) < tol
    detector = TorchvisionPersonDetector("fasterrcnn_mobilenet_v3_large_fpn", weights=None,
                                         score_threshold=0.0, device=DEVICE)  # fmt: skip
    ((found, scores),) = detector([image])
    assert found.shape[1:] == (4,) and scores.shape == (len(found),)


def test_the_pillow_resize_on_cuda_is_the_cpus_to_the_bit() -> None:
    from dagnet_layers.emotic.data import pillow_bilinear_resize

    g = torch.Generator().manual_seed(0)
    # columns first, rows first from Pillow 13 on, rows first from Pillow 12.2 on
    for h, w, box, size in ((480, 640, (100, 50, 300, 400), 224), (90, 60, None, 224),
                            (480, 640, None, 64), (600, 300, (10, 40, 290, 560), 224),
                            (250, 2, None, 7)):  # fmt: skip
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        cpu = pillow_bilinear_resize(img, size, box=box)
        assert torch.equal(pillow_bilinear_resize(img.to(DEVICE), size, box=box).cpu(), cpu)


def test_the_device_decoders_resizes_are_the_cpus_to_the_bit() -> None:
    # images that arrive decoded skip nvJPEG: what is left (the batch's coefficients in
    # one packed copy; off the CPU, every person of a chunk resized by one gather and one
    # product per pass, their regions end to end and padded; mask) must give the CPU
    # decoder's very pixels, where each person goes alone
    from dagnet_layers.emotic.data import JpegBatchDecoder

    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
              for h, w in ((480, 640), (90, 60), (600, 300), (250, 2), (480, 640), (480, 640))]
    crops = [(100, 50, 300, 400), (0, 0, 60, 90), (10, 40, 290, 560), (0, 3, 2, 240),
             (100, 50, 300, 400), (0, 0, 640, 480)]  # fmt: skip
    bbox = torch.tensor([[5.0, 5.0, 40.0, 60.0]] * len(images))
    batch = {"image": images, "crop": crops, "bbox": bbox, "path": ["x.png"] * len(images)}
    cpu = JpegBatchDecoder(96)(batch)
    dev = JpegBatchDecoder(96)({**batch, "bbox": bbox.to(DEVICE)})
    for key in ("body", "context"):
        assert dev[key].device.type == DEVICE.type
        assert torch.equal(dev[key].cpu(), cpu[key]), key


def test_nvjpeg_decoding_is_close_to_the_workers(tmp_path) -> None:
    # nvJPEG and libjpeg-turbo may round the IDCT and the chroma upsampling differently:
    # close, not equal (on the CPU the two paths are equal, tests/test_jpeg_decode.py)
    from dagnet_layers.emotic.data import (
        EmoticDataset,
        EmoticJpegDataset,
        JpegBatchDecoder,
        collate_encoded,
        make_synthetic_emotic,
    )

    root = make_synthetic_emotic(tmp_path, n_images=24, seed=0, image_size=(320, 240)).root
    host = EmoticDataset(root, "train", size=96)
    encoded = EmoticJpegDataset(root, "train", size=96)
    batch = collate_encoded([encoded[i] for i in range(len(encoded))])
    batch["bbox"] = batch["bbox"].to(DEVICE)
    out = JpegBatchDecoder(96)(batch)
    assert out["body"].device.type == DEVICE.type and out["context"].device.type == DEVICE.type
    for key in ("body", "context"):
        want = torch.stack([host[i][key] for i in range(len(host))])
        diff = (out[key].cpu().int() - want.int()).abs().float()
        assert diff.mean() < 1.0 and torch.quantile(diff.flatten(), 0.999) <= 8, key


def _jpeg(width: int, height: int, colour: tuple[int, int, int]) -> torch.Tensor:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "JPEG", quality=95)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _reads_spoiled_by(decode, n: int = 8, height: int = 240, width: int = 320) -> int:
    """How many of ``n`` reads, queued behind a long kernel on the current stream, of
    tensors freed before ``decode`` runs, see other bytes than were written. Each tensor
    is one decoded image's size, so the allocator can hand its block to the decoder; the
    cache is emptied first, so that theirs are the only free blocks of that size."""
    torch.cuda.synchronize(DEVICE)
    torch.cuda.empty_cache()
    tensors = [torch.ones(3, height, width, dtype=torch.uint8, device=DEVICE) for _ in range(n)]
    torch.cuda.synchronize(DEVICE)
    torch.cuda._sleep(200_000_000)  # about 0.1 s: the reads below wait behind it
    sums = [t.sum(dtype=torch.int64) for t in tensors]
    del tensors  # freed while their reads are still queued
    decode([_jpeg(width, height, (200, 100, 50)) for _ in range(n)])
    torch.cuda.synchronize(DEVICE)
    return sum(int(s) != 3 * height * width for s in sums)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="CUDA streams and nvJPEG: nothing to "
                    "rehearse on the CPU")  # fmt: skip
def test_the_device_decoder_never_writes_into_memory_queued_kernels_still_read() -> None:
    # torchvision decodes on a private stream that does not wait for the caller's, and
    # nvJPEG's hardware engine (on H100s at least) ignores stream order: fed blocks the
    # caller's stream freed with reads still queued, it overwrites them
    # (pytorch/vision#9606, meta-pytorch/torchcodec#1634). The decoder allocates on a
    # stream of its own; this is the hazard, and that it is gone.
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    from dagnet_layers.emotic.data import JpegBatchDecoder

    decoder = JpegBatchDecoder(64)
    ours = _reads_spoiled_by(lambda data: decoder.decode(data, ["x.jpg"] * len(data), DEVICE))
    raw = _reads_spoiled_by(lambda data: decode_jpeg(data, mode=ImageReadMode.RGB,
                                                      device=DEVICE))  # fmt: skip
    warnings.warn(f"torchvision's own decode_jpeg on {DEVICE} spoiled {raw} of 8 queued "
                  "reads" + ("" if raw else "; this GPU cannot show the hazard the test "
                             "guards against"), stacklevel=1)  # fmt: skip
    assert ours == 0, f"the decoder spoiled {ours} of 8 queued reads (unguarded: {raw})"

    # its own outputs, read by queued kernels after they were dropped, are not handed to
    # the next decode before those reads ran (record_stream); the cache emptied first,
    # their blocks would be the next decode's only free ones of their size
    torch.cuda.synchronize(DEVICE)
    torch.cuda.empty_cache()
    first = decoder.decode([_jpeg(320, 240, (10, 20, 30)) for _ in range(8)], ["a.jpg"] * 8,
                           DEVICE)  # fmt: skip
    want = [int(x.sum(dtype=torch.int64)) for x in first]
    torch.cuda._sleep(200_000_000)
    sums = [x.sum(dtype=torch.int64) for x in first]
    del first
    decoder.decode([_jpeg(320, 240, (250, 240, 230)) for _ in range(8)], ["b.jpg"] * 8, DEVICE)
    torch.cuda.synchronize(DEVICE)
    assert [int(s) for s in sums] == want

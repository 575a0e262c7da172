"""Training loop, evaluation, checkpoints, resume, DDP and the training example end to end."""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dagnet_layers import create_model
from dagnet_layers.commands import train as train_command
from dagnet_layers.emotic.engine import (
    EpochSampler,
    NonFiniteLossError,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_one_epoch,
)
from dagnet_layers.emotic.losses import DAGNetCriterion
from dagnet_layers.emotic.metrics import average_precision
from dagnet_layers.storage import IntegrityError, sha256_file

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "examples" / "train_emotic.py"


def fake_loader(batches: int = 3, batch: int = 4, size: int = 32, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(batches):
        labels = (torch.rand(batch, 26, generator=g) < 0.2).float()
        labels[:, 0] = 1.0  # every sample has a positive
        out.append({
            "body": torch.randn(batch, 3, size, size, generator=g),
            "context": torch.randn(batch, 3, size, size, generator=g),
            "categories": labels,
            "vad": torch.full((batch, 3), float("nan")),
            "index": torch.arange(b * batch, (b + 1) * batch),
        })
    return out


def tiny_model() -> nn.Module:
    return create_model("test_dagnet")


def test_train_steps_change_every_parameter_and_report_stats() -> None:
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = train_one_epoch(model, fake_loader(), DAGNetCriterion("kl"), optimizer,
                            progress=False, grad_clip=1.0)
    assert stats.steps == 3 and stats.samples == 12
    assert len(stats.step_losses) == 3 and all(np.isfinite(stats.step_losses))
    assert set(stats.components) >= {"category", "aux", "total"}
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"not updated: {unchanged}"
    assert stats.samples_per_second > 0


def test_max_steps_stops_early() -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = train_one_epoch(model, fake_loader(5), DAGNetCriterion("kl"), optimizer,
                            max_steps=2, progress=False)
    assert stats.steps == 2 and stats.samples == 8


def test_non_finite_loss_names_epoch_and_step() -> None:
    model = tiny_model()
    loader = fake_loader(3)
    loader[1]["body"][0, 0, 0, 0] = float("nan")
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(NonFiniteLossError, match="epoch 7, step 2") as info:
        train_one_epoch(model, loader, DAGNetCriterion("kl"), optimizer, epoch=7, progress=False)
    assert info.value.epoch == 7 and info.value.step == 2


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("sync_every", [1, 3])
def test_non_finite_loss_leaves_the_model_as_before(sync_every: int) -> None:
    # A NaN input turns BatchNorm running statistics to NaN in the forward pass,
    # before the loss is known; the error must not leave the model ruined.
    model = tiny_model()
    loader = fake_loader(5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_one_epoch(model, loader[:1], DAGNetCriterion("kl"), optimizer, scheduler=scheduler,
                    progress=False, sync_every=sync_every)  # optimiser state exists
    bad = 2  # 0-based: the third step
    loader[bad]["body"][0, 0, 0, 0] = float("nan")
    # The state before the first unverified step: step `bad` when every step is
    # checked, the step after the last check (step 0 here) with sync_every=3.
    first_unverified = bad if sync_every == 1 else 0
    reference = tiny_model()
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    ref_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # else they share tensors
    ref_sched = torch.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5)
    ref_sched.load_state_dict(scheduler.state_dict())
    torch.manual_seed(1)  # the same dropout masks in both runs
    if first_unverified:
        train_one_epoch(reference, loader[:first_unverified], DAGNetCriterion("kl"), ref_opt,
                        scheduler=ref_sched, progress=False)
    torch.manual_seed(1)
    with pytest.raises(NonFiniteLossError, match=f"step {bad + 1}"):
        train_one_epoch(model, loader, DAGNetCriterion("kl"), optimizer, scheduler=scheduler,
                        progress=False, sync_every=sync_every)
    got, want = _state(model), _state(reference)
    assert all(torch.isfinite(v.float()).all() for v in got.values())
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    assert optimizer.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"]
    assert scheduler.last_epoch == ref_sched.last_epoch
    steps = [s["step"] for s in optimizer.state_dict()["state"].values()]
    ref_steps = [s["step"] for s in ref_opt.state_dict()["state"].values()]
    assert steps == ref_steps


def test_deferred_loss_check_still_names_the_first_bad_step() -> None:
    """With sync_every > 1 (the CUDA default) the report names the exact step."""
    model = tiny_model()
    loader = fake_loader(5)
    loader[1]["body"][0, 0, 0, 0] = float("nan")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 2") as info:
        train_one_epoch(model, loader, DAGNetCriterion("kl"), optimizer, sync_every=3,
                        progress=False)
    assert set(info.value.components) >= {"category", "total"}
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        train_one_epoch(model, loader, DAGNetCriterion("kl"), optimizer, sync_every=0)


def test_sync_interval_does_not_change_the_training() -> None:
    results = []
    for sync_every in (1, 2):
        torch.manual_seed(0)
        model = tiny_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        stats = train_one_epoch(model, fake_loader(3), DAGNetCriterion("kl"), optimizer,
                                sync_every=sync_every, progress=False)
        results.append((stats.step_losses, stats.components))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    ("loss", "kwargs", "score_fn"),
    [
        ("kl", {}, lambda x: torch.softmax(x, dim=1)),
        ("bce", {}, torch.sigmoid),
        ("focal", {}, torch.sigmoid),
        ("weighted_l2", {"mode": "batch"}, lambda x: x),
        ("weighted_l2", {"mode": "batch", "apply_sigmoid": True}, torch.sigmoid),
    ],
)
def test_evaluate_scores_follow_the_loss_in_float64(loss, kwargs, score_fn) -> None:
    model = tiny_model().eval()
    loader = fake_loader(2)
    result = evaluate(model, loader, progress=False, criterion=DAGNetCriterion(loss, **kwargs))
    with torch.no_grad():
        logits = torch.cat([model(b["body"], b["context"]).logits for b in loader]).double()
    assert result.scores.dtype == np.float64 and result.report.score == result.score
    np.testing.assert_allclose(result.scores, score_fn(logits).numpy(), rtol=1e-12, atol=1e-15)


def test_evaluate_softmax_scores_ignore_a_per_sample_logit_shift() -> None:
    # KL never sees a constant added to a sample's logits; its scores must not either.
    class Shifted(nn.Module):
        def __init__(self, inner: nn.Module, shift: Tensor) -> None:
            super().__init__()
            self.inner, self.shift = inner, shift

        def forward(self, body: Tensor, context: Tensor):
            out = self.inner(body, context)
            return out._replace(logits=out.logits + self.shift[: body.shape[0], None])

    model = tiny_model().eval()
    loader = fake_loader(1, batch=8)
    shift = torch.linspace(-6.0, 6.0, 8)
    plain = evaluate(model, loader, progress=False, score="softmax")
    shifted = evaluate(Shifted(model, shift), loader, progress=False, score="softmax")
    np.testing.assert_allclose(plain.scores, shifted.scores, rtol=1e-5)  # float32 logits + shift
    assert plain.report.mean_ap == pytest.approx(shifted.report.mean_ap, abs=1e-12)
    sig = evaluate(Shifted(model, shift), loader, progress=False, score="sigmoid")
    assert not np.allclose(sig.scores, evaluate(model, loader, progress=False,
                                                score="sigmoid").scores)


def test_evaluate_needs_a_score() -> None:
    with pytest.raises(ValueError, match="evaluate needs score="):
        evaluate(tiny_model(), fake_loader(1), progress=False)
    with pytest.raises(ValueError, match="score must be one of"):
        evaluate(tiny_model(), fake_loader(1), progress=False, score="probit")


def test_evaluate_matches_metrics_on_the_same_scores() -> None:
    model = tiny_model().eval()
    loader = fake_loader(3)
    result = evaluate(model, loader, progress=False, protocol="sklearn",
                      criterion=DAGNetCriterion("kl"))
    with torch.no_grad():
        logits = torch.cat([model(b["body"], b["context"]).logits for b in loader])
    np.testing.assert_allclose(result.scores, logits.double().softmax(1).numpy(), rtol=1e-6)
    assert result.indices.tolist() == list(range(12))
    expected = average_precision(result.scores, result.labels, protocol="sklearn")
    got = np.array(list(result.report.per_category_ap.values()))
    np.testing.assert_allclose(got, expected, equal_nan=True)
    assert np.isfinite(result.loss)
    assert result.thresholds.shape == (26,)


def test_epoch_sampler_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochSampler(10, seed=3), EpochSampler(10, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(EpochSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    train_one_epoch(model, fake_loader(2), DAGNetCriterion("kl"), optimizer,
                    scheduler=scheduler, progress=False)  # two steps: lr 1e-3 -> 2.5e-4
    path = save_checkpoint(tmp_path / "last", model, optimizer, scheduler, epoch=4,
                           extra={"progress": {"best": 0.5}})
    assert json.loads((path / "progress.json").read_text()) == {"best": 0.5}
    assert not (tmp_path / "last.tmp").exists()
    rng_after_save = torch.rand(3)

    other = tiny_model()
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    other_sched = torch.optim.lr_scheduler.StepLR(other_opt, 1, gamma=0.5)
    assert load_checkpoint(path, other, other_opt, other_sched) == 4
    assert torch.equal(torch.rand(3), rng_after_save)  # RNG restored to the save point
    for (n, p), q in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    assert other_opt.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 2.5e-4
    assert other_sched.last_epoch == scheduler.last_epoch == 2
    s1, s2 = optimizer.state_dict()["state"], other_opt.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    # Overwriting keeps exactly one complete folder.
    save_checkpoint(tmp_path / "last", model, optimizer, epoch=5)
    assert load_checkpoint(tmp_path / "last", other) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


class Payload:
    """Stands for any object a malicious checkpoint could carry."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickle_payload_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_checkpoint(tmp_path / "ckpt", model, epoch=0)
    torch.save({"epoch": 1, "evil": Payload()}, path / "training_state.pt")
    with pytest.raises(IntegrityError, match=r"training_state\.pt: (has|does not match)"):
        load_checkpoint(path, model)
    # Checksums catch accidents, not attackers, who can rewrite them too:
    # weights_only is what refuses the payload then.
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["files"]["training_state.pt"] = {
        "size": (path / "training_state.pt").stat().st_size,
        "sha256": sha256_file(path / "training_state.pt"),
    }
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"training_state\.pt: refusing it.*weights_only"):
        load_checkpoint(path, model)


def test_checkpoint_missing_files_and_mismatch(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_checkpoint(tmp_path, tiny_model())
    path = save_checkpoint(tmp_path / "ckpt", create_model("test_dagnet", partition=2), epoch=0)
    with pytest.raises((ValueError, RuntimeError)):
        load_checkpoint(path, tiny_model())


# ------------------------------------------------------------------ the example script
def run_example(tmp_path: Path, out: str, *extra: str) -> Path:
    module = train_command
    args = ["--demo-dir", str(tmp_path / "demo"), "--demo-images", "24", "--image-size", "32",
            "--batch-size", "8", "--workers", "0", "--no-progress",
            "--output-dir", str(tmp_path / out), *extra]
    assert module.main(args) == 0
    return tmp_path / out


def read_log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight = run_example(tmp_path, "straight", "--epochs", "2", "--max-steps", "2")
    run_example(tmp_path, "resumed", "--epochs", "1", "--max-steps", "2")
    resumed = run_example(tmp_path, "resumed", "--epochs", "2", "--max-steps", "2", "--resume")
    a, b = read_log(straight), read_log(resumed)
    assert [r["epoch"] for r in b] == ["0", "1"]
    for key in ("train_loss", "val_loss", "val_map"):
        assert [r[key] for r in a] == [r[key] for r in b], key


@pytest.mark.slow
def test_example_writes_reports_and_inference_thresholds(tmp_path: Path) -> None:
    run = run_example(tmp_path, "run", "--epochs", "1", "--max-steps", "1", "--vad")
    report = json.loads((run / "test_report.json").read_text())
    assert set(report["per_category_ap"]) == set(train_command.EMOTIC_CATEGORIES)
    assert report["demo"] is True and report["vad_mae"] is not None
    assert report["data"]["synthetic"] is True and report["data"]["source"] == "synthetic"
    assert (report["score"], report["ties"], report["protocol"]) == ("softmax", "octave", "emotic")
    inference = json.loads((run / "checkpoints" / "best" / "inference.json").read_text())
    assert inference["image_size"] == 32 and len(inference["thresholds"]) == 26
    assert inference["score"] == "softmax" and inference["data"]["synthetic"] is True
    assert (run / "test_ap.png").stat().st_size > 0
    assert (run / "training_curves.png").stat().st_size > 0
    rows = list(csv.reader(open(run / "test_report.csv")))
    # Synthetic: said on the first line, and no paper columns to compare with.
    assert "SYNTHETIC" in rows[0][0] and rows[1] == ["category", "ap_ours"]
    assert rows[-1][0] == "mAP" and len(rows) == 29


@pytest.mark.slow
def test_example_report_says_synthetic_and_hides_the_paper(tmp_path: Path, capsys) -> None:
    run_example(tmp_path, "run", "--epochs", "1", "--max-steps", "1")
    printed = capsys.readouterr().out
    assert printed.startswith("SYNTHETIC demo data, not EMOTIC")
    assert "29.96" not in printed and "DAG-Net" not in printed
    module = train_command
    table = module.print_table1(json.loads((tmp_path / "run" / "test_report.json").read_text()),
                                "emotic", synthetic=False)
    assert "29.96" in table  # an EMOTIC run shows the paper's columns


def test_a_synthetic_data_root_is_labelled_synthetic(tmp_path: Path) -> None:
    """Synthetic scenes given as --data-root say SYNTHETIC as the demo does; real data
    (no marker) stays EMOTIC; a marker that cannot be read is named, not ignored."""
    from argparse import Namespace

    from dagnet_layers.emotic.data import (
        SYNTHETIC_MARKER,
        make_diagnostic_emotic,
        make_synthetic_emotic,
    )
    from dagnet_layers.errors import CorruptFileError

    module = train_command
    for writer in (make_synthetic_emotic, make_diagnostic_emotic):
        root = writer(tmp_path / writer.__name__, n_images=12).root
        got = module.data_source(Namespace(data_root=root, preprocessed=None), demo=False)
        assert got["synthetic"] is True and got["writer"] == writer.__name__
    real = tmp_path / "real"
    real.mkdir()
    assert module.data_source(Namespace(data_root=real, preprocessed=None),
                              demo=False)["synthetic"] is False  # fmt: skip
    (real / SYNTHETIC_MARKER).write_text("{not json")
    with pytest.raises(CorruptFileError, match=SYNTHETIC_MARKER):
        module.data_source(Namespace(data_root=real, preprocessed=None), demo=False)


def test_pretrained_by_default_with_a_dataset_only(tmp_path: Path) -> None:
    module = train_command
    parser = module.build_train_parser()
    demo = parser.parse_args([])
    assert module.resolve_defaults(demo) and demo.pretrained is False
    real = parser.parse_args(["--data-root", str(tmp_path)])
    assert not module.resolve_defaults(real) and real.pretrained is True
    opted_out = parser.parse_args(["--data-root", str(tmp_path), "--no-pretrained"])
    module.resolve_defaults(opted_out)
    assert opted_out.pretrained is False


def test_gcn_flags_reach_the_model_config() -> None:
    module = train_command
    parser = module.build_train_parser()
    args = parser.parse_args(["--gcn-readout", "max", "--gcn-init", "identity",
                              "--gcn-normalization", "symmetric"])  # fmt: skip
    module.resolve_defaults(args)
    config = module.build_model(args).config
    assert (config.gcn_readout, config.gcn_adjacency_init, config.gcn_normalization) == (
        "max", "identity", "symmetric")
    default = parser.parse_args([])
    module.resolve_defaults(default)
    config = module.build_model(default).config  # unset flags keep the model's own
    assert (config.gcn_readout, config.gcn_adjacency_init, config.gcn_normalization) == (
        "mean", "grid", "none")
    with pytest.raises(SystemExit):
        parser.parse_args(["--gcn-readout", "flatten"])  # the model has one output width
    beyond = parser.parse_args(["--lsam-graph", "attention", "--bam-target", "confidnet",
                                "--gsam-map", "softmax", "--no-gsam-aux"])  # fmt: skip
    module.resolve_defaults(beyond)
    config = module.build_model(beyond).config
    assert (config.lsam_graph, config.bam_target, config.gsam_map, config.gsam_aux) == (
        "attention", "confidnet", "softmax", False)
    fixed = parser.parse_args(["--fixed-adjacency"])
    module.resolve_defaults(fixed)
    assert module.build_model(fixed).config.gcn_learn_adjacency is False
    assert default.bam_weight == 1.0 and module.build_model(default).config.bam_target == "none"


def test_example_offline_pretrained_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    module = train_command
    code = module.run_cli(["--pretrained", "--demo-dir", str(tmp_path / "demo"),
                           "--demo-images", "24", "--image-size", "32", "--workers", "0",
                           "--no-progress", "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert not (tmp_path / "demo").exists()  # failed before writing or reading any data
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dagnet-train: error: body_backbone='test_resnet'")
    assert "--no-pretrained" in err[-1] and "--body-weights" in err[-1]


def test_batch_larger_than_the_train_split_is_an_error(tmp_path: Path) -> None:
    module = train_command
    with pytest.raises(SystemExit, match=r"--batch-size 64 gives no training step: the train "
                                         r"split has \d+ persons"):
        module.main(["--demo-dir", str(tmp_path / "demo"), "--demo-images", "24",
                     "--image-size", "32", "--batch-size", "64", "--workers", "0",
                     "--no-progress", "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_example_rejects_bad_flags(tmp_path: Path) -> None:
    module = train_command
    with pytest.raises(SystemExit, match="divisible by --partition 5"):
        module.main(["--image-size", "32", "--partition", "5", "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        module.main(["--ablation", "nonsense"])


RNG_PROBE = """
import hashlib, os
import torch
import dagnet_layers.emotic.engine as engine

_train_one_epoch = engine.train_one_epoch


def _logged(*args, **kwargs):
    digest = hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()
    path = os.path.join(os.environ["DAGNET_RNG_LOG"], "rank" + os.environ.get("RANK", "0"))
    with open(path, "a") as f:
        f.write(f"{kwargs.get('epoch')} {digest}\\n")
    return _train_one_epoch(*args, **kwargs)


engine.train_one_epoch = _logged
"""


@pytest.mark.slow
def test_ddp_two_processes_on_cpu_with_gloo(tmp_path: Path) -> None:
    # A sitecustomize in the children records the global RNG state each rank
    # starts its epoch with: the source of its flips, jitters and dropout masks.
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(RNG_PROBE)
    rng_log = tmp_path / "rng"
    rng_log.mkdir()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", str(TRAIN_SCRIPT),  # a free port: parallel runs do not collide
        "--demo-dir", str(tmp_path / "demo"), "--demo-images", "24", "--image-size", "32",
        "--batch-size", "4", "--workers", "0", "--no-progress", "--epochs", "1",
        "--max-steps", "2", "--output-dir", str(tmp_path / "ddp"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAGNET_RNG_LOG": str(rng_log),
           "PYTHONPATH": os.pathsep.join([str(probe), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    states = {p.name: p.read_text().split() for p in rng_log.iterdir()}
    assert set(states) == {"rank0", "rank1"}
    assert states["rank0"][0] == states["rank1"][0] == "0"  # epoch 0 on both
    assert states["rank0"][1] != states["rank1"][1]  # ...from different random streams
    report = json.loads((tmp_path / "ddp" / "test_report.json").read_text())
    single = count_test_persons(tmp_path / "demo")
    assert report["num_samples"] == single  # every test person exactly once across ranks
    assert len(read_log(tmp_path / "ddp")) == 1


def count_test_persons(demo_dir: Path) -> int:
    from dagnet_layers.emotic.data import EmoticDataset

    root = next(demo_dir.iterdir())
    return len(EmoticDataset(root, "test", size=32))


@pytest.mark.slow
def test_reproduce_paper_sweeps_table2_and_fig3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("reproduce_paper",
                                                  ROOT / "examples" / "reproduce_paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "TABLE2_ROWS", ("body_only", "full"))
    train = ["--demo-dir", str(tmp_path / "demo"), "--demo-images", "24", "--image-size", "32",
             "--batch-size", "8", "--workers", "0", "--no-progress", "--epochs", "1",
             "--max-steps", "1"]
    out = tmp_path / "paper"
    argv = ["table2", "fig3", "--partitions", "2", "3", "--output-dir", str(out), "--", *train]
    assert module.main(argv) == 0
    rows = json.loads((out / "table2.json").read_text())
    assert [r["preset"] for r in rows] == ["body_only", "full"]
    # Synthetic numbers never stand beside the paper's EMOTIC ones.
    assert rows[1]["synthetic"] is True and rows[1]["paper_map"] is None
    assert 0.0 <= rows[1]["mean_ap"] <= 1.0 and rows[1]["score"] == "softmax"
    table = (out / "table2.md").read_text()
    assert table.startswith("SYNTHETIC demo data") and "29.96" not in table
    sweep = json.loads((out / "fig3.json").read_text())
    assert set(sweep) == {"w/ GCN", "w/o GCN"} and set(sweep["w/ GCN"]) == {"2", "3"}
    assert (out / "fig3.png").stat().st_size > 0
    config = json.loads((out / "fig3_full_n3" / "test_report.json").read_text())["model"]
    assert config["partition"] == 3 and config["patch_size_policy"] == "resize"
    # A finished sweep is not trained again.
    mtime = (out / "fig3_full_n3" / "test_report.json").stat().st_mtime
    assert module.main(["fig3", "--partitions", "3", "--output-dir", str(out), "--", *train]) == 0
    assert (out / "fig3_full_n3" / "test_report.json").stat().st_mtime == mtime


def test_weight_decay_spares_what_the_model_names_and_every_1d_parameter():
    """timm's optimizer factory reads DAGNet.no_weight_decay(): the adjacency is not decayed."""
    from dagnet_layers.commands.train import build_optimizer
    from dagnet_layers.models import create_model as make

    model = make("test_dagnet")
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, spared = set(), set()
    for group in build_optimizer(model, lr=1e-4, weight_decay=0.1).param_groups:
        into = decayed if group["weight_decay"] > 0 else spared
        into.update(names[id(p)] for p in group["params"])
    assert "local_graph.adjacency" in spared and decayed and not decayed & spared
    assert decayed | spared == set(names.values())
    assert all(model.get_parameter(n).ndim > 1 for n in decayed)
    assert {n for n in names.values() if model.get_parameter(n).ndim <= 1} <= spared
    plain = build_optimizer(model, lr=1e-4).param_groups
    assert len(plain) == 1 and plain[0]["weight_decay"] == 0.0


def test_resuming_with_another_weight_decay_grouping_names_the_flag(tmp_path):
    """A checkpoint of one plain Adam group (--weight-decay 0, or a pre-release build)
    resumed with decay's two groups: one error naming the flag, not torch's ValueError."""
    from dagnet_layers.commands.train import build_optimizer
    from dagnet_layers.errors import CorruptFileError
    from dagnet_layers.models import create_model as make

    model = make("test_dagnet")
    save_checkpoint(tmp_path / "ckpt", model, build_optimizer(model, lr=1e-4), epoch=0,
                    extra={"inference": {"data": {"source": "synthetic", "synthetic": True},
                                         "val_map": 0.25},
                           "progress": {"epoch": 0}})  # fmt: skip
    with pytest.raises(CorruptFileError, match="--weight-decay"):
        load_checkpoint(tmp_path / "ckpt", model, build_optimizer(model, lr=1e-4,
                                                                  weight_decay=0.1))  # fmt: skip
    assert load_checkpoint(tmp_path / "ckpt", model, build_optimizer(model, lr=1e-4)) == 0
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert "1 epoch" in card and "SYNTHETIC" in card and str(tmp_path) not in card


def test_the_engine_checks_label_less_rows_on_the_host_before_moving_them() -> None:
    """On a device the KL loss cannot check without waiting for it; the engine checks
    each batch on the host first (here the device is 'meta': nothing runs there)."""
    from dagnet_layers.emotic.engine import train_one_epoch
    from dagnet_layers.emotic.losses import DAGNetCriterion

    model = create_model("test_dagnet")
    cats = torch.zeros(2, 26)
    cats[0, 3] = 1.0  # row 1 has no label
    batch = {"body": torch.rand(2, 3, 32, 32), "context": torch.rand(2, 3, 32, 32),
             "categories": cats, "vad": torch.full((2, 3), 5.0)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epoch 0, step 1: target row 1 has no positive label"):
        train_one_epoch(model, [batch], DAGNetCriterion("kl"), optimizer, device="meta",
                        progress=False)

"""Training runs survive kills, full disks, corrupted files and a second process.

The kill harness runs ``examples/train_emotic.py`` in subprocesses: an
uninterrupted reference run, then runs killed with SIGKILL at every step of
the checkpoint protocol (``DAGNET_KILL_AT``, see
:func:`dagnet_layers.emotic.engine.crash_point`) and at random moments, each resumed
with ``--resume``. Every resumed run must end exactly where the reference
ended: the same final weights and optimiser state, the same best checkpoint,
the same test report and each epoch once in ``log.csv``.
"""

from __future__ import annotations

import csv
import errno
import gc
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dagnet_layers import create_model
from dagnet_layers.commands import train
from dagnet_layers.emotic.engine import (
    MANIFEST_NAME,
    RunCheckpoints,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
)
from dagnet_layers.models import DAGNet
from dagnet_layers.storage import IntegrityError, StorageError

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "train_emotic.py"
EPOCHS = 3
#: Chains of kills: each run is killed at the next point, then resumed, until the end.
#: Together they interrupt every step of the protocol (the epoch, or * for the first
#: time the point is reached, a resumed run's repair included).
KILL_CHAINS = (
    ("checkpoint-written:0", "checkpoint-committed:0", "checkpoint-renamed:1",
     "checkpoint-collecting:*"),
    ("checkpoint-linked:0", "log-written:1", "checkpoint-committed:2", "test-evaluated:final"),
)
RANDOM_KILLS = 4
#: log.csv columns that must be identical (the others are wall-clock timings).
LOG_VALUES = ("epoch", "train_loss", "val_loss", "val_map", "lr")


def _command(demo: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN), "--demo-dir", str(demo), "--demo-images", "24",
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--no-progress",
            "--epochs", str(EPOCHS), "--max-steps", "2", "--output-dir", str(out), *extra]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("DAGNET_KILL_AT", None)
    env.update(extra)
    return env


def _run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _summary(out: Path) -> dict:
    """What must be identical between a resumed run and the uninterrupted one."""
    ckpt = out / "checkpoints"
    last, best = (ckpt / "last").resolve(), (ckpt / "best").resolve()
    state = torch.load(last / "training_state.pt", weights_only=True)
    report = json.loads((out / "test_report.json").read_text())
    report.pop("checkpoint")  # a path inside the run folder
    with open(out / "log.csv", newline="") as f:
        rows = [{k: r[k] for k in LOG_VALUES} for r in csv.DictReader(f)]
    return {
        "last": last.name,
        "best": best.name,
        "last_weights": (last / "model.safetensors").read_bytes(),
        "best_weights": (best / "model.safetensors").read_bytes(),
        "optimizer": state["optimizer"]["state"],
        "rng": state["rng"],  # every generator, Python's included
        "report": report,
        "log": rows,
        "folders": sorted(p.name for p in ckpt.iterdir()),
    }


def _assert_same(got: dict, want: dict, what: str) -> None:
    assert got["last"] == want["last"] and got["best"] == want["best"], what
    assert got["last_weights"] == want["last_weights"], f"{what}: final weights differ"
    assert got["best_weights"] == want["best_weights"], f"{what}: best weights differ"
    for key, tensors in want["optimizer"].items():
        for name, value in tensors.items():
            assert torch.equal(got["optimizer"][key][name], value), f"{what}: optimiser {name}"
    for name, value in want["rng"].items():  # the whole training state, not just weights
        same = (torch.equal(got["rng"][name], value) if isinstance(value, torch.Tensor)
                else got["rng"][name] == value)  # fmt: skip
        assert same, f"{what}: the saved {name} RNG state differs"
    assert got["report"] == want["report"], f"{what}: test report differs"
    assert got["log"] == want["log"], f"{what}: log.csv differs"
    assert [r["epoch"] for r in got["log"]] == [str(e) for e in range(EPOCHS)], what
    assert got["folders"] == want["folders"], f"{what}: leftover folders {got['folders']}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    base = tmp_path_factory.mktemp("crash")
    demo = base / "demo"
    start = time.perf_counter()
    proc = _run(_command(demo, base / "reference"), _env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return demo, _summary(base / "reference"), time.perf_counter() - start


def _kill_chain(demo: Path, out: Path, kills: tuple[str | float, ...]) -> tuple[list, dict]:
    """Kill a run at each point (or after each delay) in turn, resuming after every kill.

    Returns the exit codes of the killed runs and the summary after a last,
    uninterrupted ``--resume``.
    """
    cmd = _command(demo, out)
    codes = []
    for k, kill in enumerate(kills):
        run = cmd if k == 0 else [*cmd, "--resume"]
        if isinstance(kill, str):
            codes.append(_run(run, _env(DAGNET_KILL_AT=kill)).returncode)
        else:
            proc = subprocess.Popen(run, env=_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(kill)
            proc.kill()
            codes.append(proc.wait())
    final = _run([*cmd, "--resume"], _env())
    assert final.returncode == 0, f"resume after {kills}: {final.stderr[-3000:]}"
    return codes, _summary(out)


@pytest.mark.slow
def test_kill_at_every_protocol_step_then_resume(reference, tmp_path: Path) -> None:
    demo, want, _ = reference
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda chain: _kill_chain(demo, tmp_path / chain[0].replace(":", "_"), chain),
            KILL_CHAINS))
    for chain, (codes, got) in zip(KILL_CHAINS, results, strict=True):
        for point, code in zip(chain, codes, strict=True):
            assert code == -signal.SIGKILL, f"{point} was never reached (exit {code})"
        _assert_same(got, want, f"killed at {', '.join(chain)}")


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(reference, tmp_path: Path) -> None:
    demo, want, duration = reference
    rng = random.Random(20261125)
    chains = [tuple(rng.uniform(1.0, max(1.5, duration)) for _ in range(RANDOM_KILLS // 2))
              for _ in range(2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda chain: _kill_chain(demo, tmp_path / f"random_{chain[0]:.2f}", chain),
            chains))
    for chain, (_, got) in zip(chains, results, strict=True):
        _assert_same(got, want, f"killed after {', '.join(f'{m:.2f}' for m in chain)} s")


# --------------------------------------------------------------------- run folder
def _args(demo: Path, out: Path, *extra: str) -> list[str]:
    return _command(demo, out, "--epochs", "1", "--max-steps", "1", *extra)[2:]


@pytest.mark.slow
def test_a_run_folder_is_never_overwritten_implicitly(reference, tmp_path: Path, caplog) -> None:
    demo, _, _ = reference
    out = tmp_path / "run"
    assert train.main(_args(demo, out)) == 0
    with pytest.raises(SystemExit, match="already holds a training run") as info:
        train.main(_args(demo, out))
    assert "--resume" in str(info.value) and "--overwrite" in str(info.value)
    assert (out / "checkpoints" / "epoch-0000").is_dir()  # untouched
    with pytest.raises(SystemExit, match="not both"):
        train.main(_args(demo, out, "--resume", "--overwrite"))
    assert train.main(_args(demo, out, "--overwrite")) == 0
    assert "--overwrite: deleting the run" in caplog.text
    assert train.main(_args(demo, tmp_path / "empty", "--resume")) == 0
    assert "nothing to resume" in caplog.text


HOLD_LOCK = """
import sys, time
from dagnet_layers.storage import FolderLock
FolderLock(sys.argv[1], purpose="holder").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_second_process_is_refused_and_a_killed_holder_frees_the_folder(
    reference, tmp_path: Path
) -> None:
    demo, _, _ = reference
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        with pytest.raises(SystemExit) as info:
            train.main(_args(demo, out))
        assert f"{out} is in use by process {holder.pid}" in str(info.value)
        assert "holder" in str(info.value) and time.perf_counter() - start < 30  # at once
        assert not (out / "checkpoints").exists()
    finally:
        holder.kill()  # as a preemption would: no chance to clean up
        holder.wait()
    assert (out / ".lock").exists()  # the file stays; the lock went with its holder
    assert train.main(_args(demo, out)) == 0


# ---------------------------------------------------------------------- integrity
@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "training_state.pt",
                                  "progress.json", "inference.json", MANIFEST_NAME])
def test_a_flipped_byte_in_any_checkpoint_file_is_named(tmp_path: Path, name: str) -> None:
    model = create_model("test_dagnet")
    store = RunCheckpoints(tmp_path)
    folder = store.save(model, epoch=0, inference={"thresholds": {}},
                        progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    path = folder / name
    data = bytearray(path.read_bytes())
    # in the manifest, a byte of its own structure: a flip inside a digest it records is
    # reported as that file's mismatch ("the file (or the recorded checksum)")
    at = data.index(b'"format"') + 2 if name == MANIFEST_NAME else len(data) * 2 // 3
    data[at] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises((IntegrityError, ValueError), match=name.replace(".", r"\.")):
        load_checkpoint(folder, create_model("test_dagnet"))


def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    store = RunCheckpoints(tmp_path)
    for epoch in range(2):
        store.save(create_model("test_dagnet"), epoch=epoch,
                   progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    weights = tmp_path / "epoch-0001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # damage after the commit
    assert store.recover() == tmp_path / "epoch-0000"
    assert (tmp_path / "last").resolve() == tmp_path / "epoch-0000"
    # moved aside with the reason, never deleted
    assert store.quarantined() == [tmp_path / "quarantine" / "epoch-0001"]
    note = (tmp_path / "quarantine" / "epoch-0001" / "QUARANTINED.txt").read_text()
    assert "model.safetensors" in note and "intact" not in note


@pytest.mark.slow
def test_a_damaged_only_checkpoint_is_quarantined_and_the_resume_stops(reference,
                                                                       tmp_path: Path) -> None:
    """A flipped bit in training_state.pt of the only checkpoint: --resume deleted the
    folder, intact weights included, and started again from epoch 0 with exit code 0."""
    demo = reference[0]
    out = tmp_path / "run"
    first = _run(_command(demo, out, "--epochs", "1"), _env())
    assert first.returncode == 0, first.stderr[-2000:]
    folder = out / "checkpoints" / "epoch-0000"
    weights = (folder / "model.safetensors").read_bytes()
    state = folder / "training_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01
    state.write_bytes(bytes(data))
    resumed = _run(_command(demo, out, "--epochs", "2", "--resume"), _env())
    assert resumed.returncode != 0
    err = resumed.stderr.strip().splitlines()[-1]
    assert "no intact checkpoint" in err and "quarantine" in err and "--overwrite" in err, err
    assert "its model checks out" in err
    kept = out / "checkpoints" / "quarantine" / "epoch-0000"
    assert (kept / "model.safetensors").read_bytes() == weights  # nothing lost
    assert "training_state.pt" in (kept / "QUARANTINED.txt").read_text()
    assert DAGNet.from_pretrained(kept).num_classes == 26  # the intact weights load
    fresh = _run(_command(demo, out, "--epochs", "1", "--overwrite"), _env())
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    moved = list(out.glob("quarantine-*/epoch-0000"))
    assert len(moved) == 1 and (moved[0] / "model.safetensors").read_bytes() == weights


SAVE_TWICE = """
import sys
from dagnet_layers import create_model
from dagnet_layers.emotic.engine import save_checkpoint
for epoch in (0, 1):
    save_checkpoint(sys.argv[1], create_model("test_dagnet"), epoch=epoch)
"""


@pytest.mark.parametrize("point", ["checkpoint-written:1", "checkpoint-committed:1",
                                   "checkpoint-aside:1"])
@pytest.mark.slow
def test_replacing_a_checkpoint_folder_survives_a_kill(tmp_path: Path, point: str) -> None:
    target = tmp_path / "ckpt"
    proc = _run([sys.executable, "-c", SAVE_TWICE, str(target)], _env(DAGNET_KILL_AT=point))
    assert proc.returncode == -signal.SIGKILL
    # Before the commit point the old checkpoint stays; from it on, the new one wins.
    expected = 0 if point == "checkpoint-written:1" else 1
    assert load_checkpoint(target, create_model("test_dagnet")) == expected
    recover_checkpoint(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # nothing left over


# ------------------------------------------------------------------------ disk full
def test_a_full_disk_is_one_clear_error_and_leaves_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunCheckpoints(tmp_path)
    store.save(create_model("test_dagnet"), epoch=0,
               progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls["n"] += 1
            if calls["n"] == 2:  # the second file of the next checkpoint hits a full disk
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageError) as info:
        store.save(create_model("test_dagnet"), epoch=1,
                   progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    monkeypatch.setattr(os, "fsync", real_fsync)
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert "epoch-0001" in message and "No space left on device" in message
    assert "earlier checkpoints are intact" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "epoch-0000", "last"]
    assert not list(tmp_path.rglob("*.tmp-*"))  # no partial file anywhere
    assert store.recover() == tmp_path / "epoch-0000"
    assert load_checkpoint(tmp_path / "last", create_model("test_dagnet")) == 0


@pytest.mark.slow
def test_a_real_full_file_system(tmp_path: Path) -> None:
    """The same on a 3 MB tmpfs, where the OS itself says ENOSPC (needs mount rights)."""
    model = create_model("test_dagnet")
    save_checkpoint(tmp_path / "probe", model, epoch=0)
    size = sum(f.stat().st_size for f in (tmp_path / "probe").iterdir())
    mount = tmp_path / "small"
    mount.mkdir()
    megabytes = int(1.6 * size / 2**20) + 1  # room for one checkpoint, not two
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs",
                           str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        save_checkpoint(mount / "a", model, epoch=0)
        with pytest.raises(StorageError, match="No space left on device"):
            save_checkpoint(mount / "b", model, epoch=1)
        assert sorted(p.name for p in mount.iterdir()) == ["a"]
        assert load_checkpoint(mount / "a", create_model("test_dagnet")) == 0
    finally:
        gc.collect()  # safetensors maps the file it loads: drop the maps before unmounting
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


WRITER = """
import sys, time
import torch
from dagnet_layers import create_model
from dagnet_layers.emotic.engine import RunCheckpoints

store = RunCheckpoints(sys.argv[1])
torch.manual_seed(0)
model = create_model("test_dagnet")
deadline = time.monotonic() + float(sys.argv[2])
epoch = 1  # after the test's epoch 0, as a training run goes on
while time.monotonic() < deadline:
    with torch.no_grad():
        model.classifier.bias.add_(1.0)  # every epoch's weights differ
    store.save(model, epoch=epoch, inference={"image_size": 32},
               progress={"best_epoch": epoch, "best_val_map": 0.5, "log": []})
    epoch += 1
print(epoch)
"""


@pytest.mark.slow
def test_readers_of_last_and_best_never_race_the_writer(tmp_path: Path) -> None:
    """A real trainer process re-points ``last``/``best`` and collects old folders while
    this one loads through the links: every load gets one whole checkpoint (the links
    are resolved once; a folder collected mid-read is read again where the link points)."""
    from dagnet_layers.inference import Predictor

    store = RunCheckpoints(tmp_path)
    store.save(create_model("test_dagnet"), epoch=0, inference={"image_size": 32},
               progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "12"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    loads, failures = 0, []
    try:
        while writer.poll() is None:
            for link in ("last", "best"):
                try:
                    model = DAGNet.from_pretrained(tmp_path / link)
                    predictor = Predictor.from_checkpoint(tmp_path / link)
                    assert predictor.model.num_classes == model.num_classes == 26
                    loads += 1
                except Exception as err:  # what a racing reader used to get
                    failures.append(f"{type(err).__name__}: {err}")
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err[-2000:]
    assert int(out.strip()) > 5 and loads > 10, (out, loads)  # they did overlap
    assert not failures, f"{len(failures)} of {loads + len(failures)} loads: {failures[:3]}"


@pytest.mark.parametrize("edited", ["MANIFEST.json", "config.json"])
def test_a_changed_checksum_digit_blames_the_file_that_holds_it(tmp_path: Path,
                                                                edited: str) -> None:  # fmt: skip
    """The weights' checksum is in both files: the one that disagrees with the intact
    weights and the other record is named, not model.safetensors."""
    folder = save_checkpoint(tmp_path / "ckpt", create_model("test_dagnet"), epoch=0)
    digest = json.loads((folder / "config.json").read_text())["weights"]["sha256"]
    path = folder / edited
    text = path.read_text()
    changed = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    if edited == "MANIFEST.json":
        path.write_text(text.replace(digest, changed))
        with pytest.raises(IntegrityError, match=r"MANIFEST\.json: .* weights are intact"):
            load_checkpoint(folder, create_model("test_dagnet"))
    else:  # config.json's own checksum is in the manifest: from_pretrained has no manifest
        path.write_text(text.replace(digest, changed))
        with pytest.raises(IntegrityError, match=r"config\.json: .* weights are intact"):
            DAGNet.from_pretrained(folder)


def test_the_quarantine_note_says_loadable_only_when_config_and_weights_check_out(
    tmp_path: Path,
) -> None:
    store = RunCheckpoints(tmp_path / "intact-runs")  # a path that says "intact"
    store.save(create_model("test_dagnet"), epoch=0,
               progress={"best_epoch": 0, "best_val_map": 0.5, "log": []})
    config = tmp_path / "intact-runs" / "epoch-0000" / "config.json"
    config.write_text(config.read_text().replace('"partition": 4', '"partition": 3'))
    assert store.recover() is None
    kept = store.quarantined()[0]
    assert "check out" not in (kept / "QUARANTINED.txt").read_text()
    assert not (tmp_path / "intact-runs" / "last").is_symlink()  # no dangling link left
    assert train._nothing_intact(store) is not None
    assert "its model checks out" not in train._nothing_intact(store)


def test_numpy_numbers_are_numbers() -> None:
    import numpy as np

    from dagnet_layers.emotic.losses import DAGNetCriterion

    assert DAGNetCriterion("kl", aux_weight=np.float32(0.5)).aux_weight == 0.5


# ------------------------------------------------------------- a cache under its readers
def _small_cache(tmp_path: Path, size: int, splits: tuple[str, ...] = ("val",)):
    """A synthetic root and its decoded cache of ``splits``: (root, cache folder)."""
    from dagnet_layers.emotic.data import build_emotic_cache, make_synthetic_emotic

    root = make_synthetic_emotic(tmp_path / "raw", n_images=12, image_size=(64, 48)).root
    build_emotic_cache(root, tmp_path / "cache", splits=splits, size=size, progress=False)
    return root, tmp_path / "cache"


READ_CACHE = """
import sys
from dagnet_layers.emotic.data import EmoticDataset
dataset = EmoticDataset(sys.argv[1], "val")
print(int(dataset[0]["body"].sum()), flush=True)
sys.stdin.read()  # read on until the test closes our stdin
print(int(dataset[0]["body"].sum()), flush=True)
"""

WRITE_CACHE = """
import sys
from dagnet_layers.emotic.data import split_lock
lock = split_lock(sys.argv[1], "val").acquire(shared=False)  # held while bound
print("writing", flush=True)
sys.stdin.read()
"""


def test_a_cache_split_a_process_reads_is_not_rebuilt_under_it(tmp_path: Path,
                                                               capsys) -> None:  # fmt: skip
    """A real reader process holds its split: ``--overwrite`` with a new size (which
    drops every split) or other annotations (which drops one) is refused naming the
    reader, the files stay as they were, and the reader reads the same rows to the end.
    A split nobody reads is still built; once the reader is gone the rebuild goes on."""
    from dagnet_layers.commands.entry import cache_entry
    from dagnet_layers.emotic.data import (
        EmoticRecords,
        build_emotic_cache,
        read_emotic_annotations,
    )
    from dagnet_layers.errors import FolderLockedError

    root, cache = _small_cache(tmp_path, 32)
    files = sorted(p for p in cache.iterdir() if not p.name.startswith("."))
    before = {p.name: p.read_bytes() for p in files}
    reader = subprocess.Popen([sys.executable, "-c", READ_CACHE, str(cache)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        first = reader.stdout.readline().strip()
        assert first.isdigit()
        status = cache_entry([str(root), str(cache), "--splits", "val", "--size", "48",
                              "--overwrite", "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1, err
        assert f"process {reader.pid} (reading the val split of the cache {cache}" in err, err
        fewer = read_emotic_annotations(root, "val")
        fewer = EmoticRecords(list(fewer)[1:], fewer.summary)  # other annotations
        with pytest.raises(FolderLockedError, match=f"process {reader.pid} .reading the val"):
            build_emotic_cache(root, cache, splits=("val",), size=32, overwrite=True,
                               records={"val": fewer}, progress=False)
        assert {p.name: p.read_bytes() for p in files} == before  # nothing was touched
        assert cache_entry([str(root), str(cache), "--splits", "test", "--size", "32",
                            "--no-progress"]) == 0  # a split nobody reads
    finally:
        out, _ = reader.communicate("", timeout=60)
    assert reader.returncode == 0 and out.strip() == first  # the same rows to the end
    assert cache_entry([str(root), str(cache), "--splits", "val", "--size", "48",
                        "--overwrite", "--no-progress"]) == 0


def test_a_cache_split_being_written_is_not_read(tmp_path: Path) -> None:
    from dagnet_layers.emotic.data import EmoticDataset
    from dagnet_layers.errors import FolderLockedError

    _, cache = _small_cache(tmp_path, 32, ("val", "test"))
    writer = subprocess.Popen([sys.executable, "-c", WRITE_CACHE, str(cache)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == "writing"
        with pytest.raises(FolderLockedError, match=rf"process {writer.pid} on .* \(writing "
                           r"the val split of the cache"):
            EmoticDataset(cache, "val")
        assert len(EmoticDataset(cache, "test")) > 0  # the other split is free
    finally:
        writer.communicate("", timeout=60)
    assert len(EmoticDataset(cache, "val")) > 0


def test_a_dataset_that_fails_to_open_holds_no_lock(tmp_path: Path) -> None:
    """The error tells the user to rebuild the split: the failed dataset, still alive in
    the traceback, must not refuse that rebuild."""
    import json as json_

    from dagnet_layers.emotic.data import (
        CACHE_MANIFEST,
        EmoticDataset,
        split_lock,
    )
    from dagnet_layers.errors import MissingFileError

    _, cache = _small_cache(tmp_path, 16)
    manifest = json_.loads((cache / CACHE_MANIFEST).read_text())
    manifest["splits"]["val"]["complete"] = False
    (cache / CACHE_MANIFEST).write_text(json_.dumps(manifest))
    try:
        EmoticDataset(cache, "val")
    except MissingFileError:
        with split_lock(cache, "val").acquire(shared=False) as lock:  # the rebuild's lock
            assert lock.held
    else:
        raise AssertionError("an incomplete split opened")
    with pytest.raises(ValueError, match="split must be one of"):
        split_lock(cache, "../../evil")  # the name becomes a file name


def test_a_file_collected_while_it_is_checked_is_a_missing_file(tmp_path: Path,
                                                                monkeypatch) -> None:  # fmt: skip
    """A trainer collecting a folder between the check that a file exists and its hash
    gave a raw FileNotFoundError, which the readers' re-read of a moved link missed
    (1 of 154 loads in one CI run)."""
    from dagnet_layers import storage
    from dagnet_layers.errors import MissingFileError

    path = tmp_path / "inference.json"
    path.write_text("{}")
    record = {"size": 2, "sha256": storage.sha256_file(path)}
    real = storage.sha256_file

    def collected_meanwhile(p):
        Path(p).unlink()
        return real(p)

    monkeypatch.setattr(storage, "sha256_file", collected_meanwhile)
    with pytest.raises(MissingFileError, match="vanished while it was checked"):
        storage.verify_files(tmp_path, {"inference.json": record})

"""Shared helpers of the benchmark scripts: timing, memory, environment metadata, output.

Both ``bench_layers.py`` and ``bench_model.py`` time callables the same way:
a few warm-up calls (which also trigger ``torch.compile``), a CUDA
synchronisation, one dedicated call for the peak memory
(``torch.cuda.max_memory_allocated``, CUDA only) and then
:meth:`torch.utils.benchmark.Timer.blocked_autorange`, which synchronises
CUDA around each timed block. Times are medians in milliseconds.

This module is imported by the scripts as ``_common`` (the scripts put their
own folder first on ``sys.path`` when run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils import benchmark

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Where a run writes when ``--out`` is not given: not the committed results.
LOCAL_RESULTS_DIR = Path(__file__).resolve().parents[1] / "runs" / "benchmarks"

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


class EndlessLoader:
    """An endless iterator over a DataLoader, re-iterated at each epoch's end.

    A plain iterator, not a generator: code that stops mid-epoch (a ``max_steps``, a
    progress bar closing what it iterated) cannot end it, and the loader's workers
    and prefetched batches carry on into the next use.
    """

    def __init__(self, loader: Any) -> None:
        self.loader, self.it = loader, iter(loader)

    def __iter__(self) -> EndlessLoader:
        return self

    @property
    def prefetched(self) -> int:
        """The batches the loader's workers hold ready at most (``prefetch_factor`` per
        worker; none without workers): what a timed section should take untimed first."""
        return self.loader.num_workers * (self.loader.prefetch_factor or 0)

    def __next__(self) -> Any:
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)


# ------------------------------------------------------------ command line
def add_run_arguments(p: argparse.ArgumentParser, timed_in_turn: str) -> None:
    """The flags the benchmark CLIs share: ``--device``, ``--rounds``, ``--min-runs``,
    ``--threads``.

    Args:
        p: The parser.
        timed_in_turn: What each round times in turn (for the ``--rounds`` help).
    """
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--rounds", type=int, default=3,
                   help=f"interleaved timing rounds: {timed_in_turn} timed in turn, this many "
                        "times, so that they see the same machine load")
    p.add_argument("--min-runs", type=int, default=5,
                   help="timed samples per figure at least, over all rounds: a call slower "
                        "than a round's share of the time budget is repeated, so that a "
                        "seconds-long training step still gets a median and an IQR (--quick: 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (torch.set_num_threads). Default: 1 on CPU "
                        "(stable per-core figures on a shared machine, where a preempted "
                        "OpenMP thread stalls every parallel op), torch's default on CUDA")


def fill_defaults(args: argparse.Namespace, defaults: Mapping[str, Any]) -> None:
    """Set every option still ``None`` in ``args`` from ``defaults``."""
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def configure_torch(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (1 by default on CPU) and cuDNN autotuning on CUDA."""
    if args.threads is None and args.device.type == "cpu":
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# ----------------------------------------------------------------- device
def resolve_device(name: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda[:i]"`` into a device, failing clearly without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name} was asked for but torch.cuda.is_available() is False")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu, cuda or auto, got {name!r}")
    return device


def cpu_model_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux) or :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device) -> str:
    """Human-readable name of ``device`` (GPU model or CPU model)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def slugify(text: str) -> str:
    """Lower-case, dash-separated file-name form of ``text``, trademark marks left out
    (``"Intel(R) Xeon(R) Processor"`` gives ``intel-xeon-processor``, not
    ``intel-r-xeon-r-processor``)."""
    text = re.sub(r"\((?:r|tm|c)\)|[\u00ae\u2122\u00a9]", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def device_slug(device: torch.device) -> str:
    """``cuda-<model>`` or ``cpu-<model>-<vector ISA>``, used in result file names.

    A CPU's name alone does not tell machines apart: two "AMD EPYC" machines of
    this project, one where torch dispatches to AVX2 and one to AVX512, differ by
    5x on the same convolution. Their files must not overwrite each other.
    """
    slug = f"{device.type}-{slugify(device_name(device))}"
    capability = _cpu_capability() if device.type == "cpu" else None
    if capability and capability.lower() not in ("default", "none"):
        slug += f"-{slugify(capability)}"
    return slug


def loadavg() -> float | None:
    """1-minute load average of the machine (``None`` where unavailable).

    Recorded with CPU results: a load above the core count means other
    processes competed for the cores during the run.
    """
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Collect garbage and return cached CUDA blocks, between cases."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA or host allocation)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return "out of memory" in str(err).lower()


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``dtype == "bf16"``, a no-op context for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


# ---------------------------------------------------------------- timing
@dataclass
class Timing:
    """One timed callable.

    Attributes:
        median_ms: Median time per call in milliseconds.
        iqr_ms: Inter-quartile range of the per-call times, milliseconds.
        runs: Number of timed samples (each the mean of a block of calls).
        peak_mem_mib: Peak allocated CUDA memory during one call, MiB
            (``None`` on CPU). Includes the inputs and parameters already resident.
    """

    median_ms: float
    iqr_ms: float
    runs: int
    peak_mem_mib: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak CUDA memory (MiB) allocated while running ``fn`` once; ``None`` on CPU."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_callable(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int,
    min_run_time: float,
    rounds: int = 1,
    min_runs: int = 1,
) -> Timing:
    """Warm up, measure peak memory once, then time ``fn`` with ``torch.utils.benchmark``.

    Args:
        fn: The work to time (no arguments; its result is discarded).
        device: Where it runs; CUDA is synchronised around every timed block.
        warmup: Untimed calls first (compilation, cuDNN autotuning, allocator warm-up).
        min_run_time: Seconds of timed calls at least (``blocked_autorange``).
        rounds: Split the timing into this many ``blocked_autorange`` rounds.
        min_runs: Timed samples at least (see :func:`time_group`).

    Returns:
        The :class:`Timing`.
    """
    result = time_group({"fn": fn}, device, warmup=warmup, min_run_time=min_run_time,
                        rounds=rounds, min_runs=min_runs)["fn"]
    if isinstance(result, BaseException):
        raise result
    return result


def _time_once(fn: Callable[[], object], device: torch.device, number: int = 1) -> float:
    """Seconds per call of ``number`` back-to-back calls, CUDA synchronised around them."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / number


def time_group(
    fns: Mapping[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup: int,
    min_run_time: float,
    rounds: int = 1,
    min_runs: int = 1,
) -> dict[str, Timing | Exception]:
    """Time several callables, interleaved, so that they see the same machine load.

    Each callable is warmed up and its peak memory measured; then ``rounds``
    times, every callable in turn gets a ``blocked_autorange`` of
    ``min_run_time / rounds`` seconds. The median is taken over all the
    per-call times of all rounds. Interleaving keeps the ratios between the
    callables meaningful on a shared machine whose load drifts during the run.

    Args:
        fns: Name to no-argument callable.
        device: Where they run; CUDA is synchronised around every timed block.
        warmup: Calls of each before timing (at least one; the last one gives
            a time estimate: a callable slower than a round's budget is then timed
            call by call, see ``min_runs``).
        min_run_time: Seconds of timed calls per callable in total.
        rounds: Number of interleaved rounds.
        min_runs: Timed samples per callable at least. A callable too slow for
            ``blocked_autorange`` to fit this many blocks into the rounds is timed
            one call at a time, ``ceil(min_runs / rounds)`` calls per round, even
            past ``min_run_time``.

    Returns:
        Name to :class:`Timing`, or to the exception the callable raised (its
        timing is then abandoned, the others go on).
    """
    results: dict[str, Timing | Exception] = {}
    peaks: dict[str, float | None] = {}
    estimates: dict[str, float] = {}
    live: dict[str, Callable[[], object]] = {}
    for name, fn in fns.items():
        try:
            for _ in range(max(warmup - 1, 0)):
                fn()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            estimates[name] = time.perf_counter() - start
            peaks[name] = peak_memory_mib(fn, device)
            live[name] = fn
        except Exception as err:  # reported per callable, e.g. out of memory
            results[name] = err
            free_memory(device)
    times: dict[str, list[float]] = {name: [] for name in live}
    budget = min_run_time / max(rounds, 1)
    per_round = max(1, math.ceil(min_runs / max(rounds, 1)))
    for _ in range(max(rounds, 1)):
        for name, fn in list(live.items()):
            try:
                if estimates[name] * per_round >= budget:
                    # the round holds at most per_round calls: time them one by one, without
                    # blocked_autorange's block-size probe or Timer.timeit's two warm-up calls
                    samples = [_time_once(fn, device) for _ in range(per_round)]
                else:
                    timer = benchmark.Timer(
                        stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()
                    )
                    m = timer.blocked_autorange(min_run_time=budget)
                    samples = list(m.times)
                    while len(samples) < per_round:
                        samples.append(_time_once(fn, device, m.number_per_run))
            except Exception as err:
                results[name] = err
                del live[name]
                free_memory(device)
                continue
            times[name] += samples
    for name in live:
        t = torch.tensor(times[name], dtype=torch.float64)
        q1, median, q3 = (float(t.quantile(q)) for q in (0.25, 0.5, 0.75))
        results[name] = Timing(
            median_ms=median * 1e3, iqr_ms=(q3 - q1) * 1e3, runs=len(times[name]),
            peak_mem_mib=peaks[name],
        )
    return {name: results[name] for name in fns}


# ----------------------------------------------------------- environment
def _cpu_capability() -> str | None:
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return None if get is None else str(get())


def _package_version(name: str) -> str | None:
    """The installed version of ``name``, read from its metadata (importing PyG alone
    takes seconds); for a package run from a source tree, its ``__version__``."""
    import importlib.metadata as md

    try:
        return md.version(name.replace("_", "-"))
    except md.PackageNotFoundError:
        pass
    if importlib.util.find_spec(name) is None:
        return None
    module = importlib.import_module(name)
    return str(getattr(module, "__version__", "unknown"))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: torch.device, **settings: Any) -> dict[str, Any]:
    """Metadata recorded with every result: device, versions, settings, date.

    Args:
        device: The device benchmarked.
        **settings: Run settings to record alongside (dtype, compile, channels_last...).
    """
    env: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "device_slug": device_slug(device),
        "cpu": cpu_model_name(),
        "cpu_threads": torch.get_num_threads(),
        # the vector ISA torch dispatches to: one CPU name ("AMD EPYC") can hide machines
        # with different vector units, whose figures are not comparable
        "cpu_capability": _cpu_capability(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": _package_version("timm"),
        "torch_geometric": _package_version("torch_geometric"),
        "dagnet_layers": _package_version("dagnet_layers"),
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    env.update(settings)
    return env


# ---------------------------------------------------------------- output
def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for a table cell; ``None`` as ``n/a``."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_markdown(env: dict[str, Any]) -> str:
    """The environment metadata as a two-column markdown table."""
    return markdown_table(["key", "value"], [(k, v) for k, v in env.items()])


def default_output(prefix: str, device: torch.device, quick: bool) -> Path:
    """``runs/benchmarks/<prefix>_<device-slug>[_quick].json`` (git-ignored).

    The committed results in ``benchmarks/results/`` are replaced only on purpose,
    by naming them with ``--out`` (as ``cuda_suite.py`` does).
    """
    suffix = "_quick" if quick else ""
    return LOCAL_RESULTS_DIR / f"{prefix}_{device_slug(device)}{suffix}.json"


def write_outputs(report: dict[str, Any], markdown: str, out: Path) -> tuple[Path, Path]:
    """Write ``report`` as JSON to ``out`` and ``markdown`` next to it (``.md``).

    Each file is written beside itself and renamed into place, so a run killed while
    writing (a benchmark rewrites its files after every round) leaves the previous
    complete version, never a truncated one.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    md_path = out.with_suffix(".md")
    for path, text in ((out, json.dumps(report, indent=2, default=str) + "\n"),
                       (md_path, markdown.rstrip() + "\n")):  # fmt: skip
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return out, md_path

"""A video's emotions over time: one panel per tracked person, its top categories' scores."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dagnet_layers.figures._style import OKABE_ITO, PathLike, _new_figure, _save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_timeline"]

_LINE_COLOURS = [OKABE_ITO[k] for k in ("vermillion", "blue", "bluish_green", "orange",
                                        "reddish_purple", "sky_blue")]  # fmt: skip


def plot_timeline(
    persons: Sequence[Any], path: PathLike | None = None, *, top: int = 3, max_tracks: int = 6,
    title: str | None = None, dpi: float = 100,
) -> Figure:  # fmt: skip
    """Scores over time of each tracked person's ``top`` categories (by mean score).

    Args:
        persons: :class:`~dagnet_layers.inference.PersonPrediction` objects of one
            video (``track``, ``time`` or ``frame``, ``scores``).
        path: Also save the figure as PNG here.
        top: Categories drawn per person.
        max_tracks: Panels at most: the persons seen in the most frames.
        title: Figure title.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Raises:
        ValueError: No person has a track number.

    Example:
        >>> from types import SimpleNamespace as P
        >>> seen = [P(track=0, time=t / 10, frame=t, scores={"Peace": 0.5 + t / 40, "Pain": 0.2})
        ...         for t in range(5)]
        >>> len(plot_timeline(seen).axes)
        1
    """
    by_track: dict[int, list[Any]] = defaultdict(list)
    for p in persons:
        if p.track is not None:
            by_track[int(p.track)].append(p)
    if not by_track:
        raise ValueError("plot_timeline: no person has a track number (a video's predictions)")
    tracks = sorted(by_track, key=lambda t: (-len(by_track[t]), t))[:max_tracks]
    fig = _new_figure((7.0, 1.9 * len(tracks) + 0.6), dpi)
    axes = fig.subplots(len(tracks), 1, sharex=True, squeeze=False)[:, 0]
    use_time = all(p.time is not None for t in tracks for p in by_track[t])
    for ax, track in zip(axes, tracks, strict=True):
        seen = sorted(by_track[track], key=lambda p: (p.time if use_time else p.frame) or 0)
        xs = [(p.time if use_time else p.frame) for p in seen]
        mean = defaultdict(float)
        for p in seen:
            for name, value in p.scores.items():
                mean[name] += value / len(seen)
        for k, name in enumerate(sorted(mean, key=lambda n: -mean[n])[:top]):
            ax.plot(xs, [p.scores[name] for p in seen], marker="o", markersize=2.5,
                    linewidth=1.5, color=_LINE_COLOURS[k % len(_LINE_COLOURS)], label=name)
        ax.set_ylabel(f"person #{track}\nscore", fontsize=9)
        ax.grid(color="0.9", linewidth=0.6)
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1].set_xlabel("time (s)" if use_time else "frame")
    fig.suptitle(title or "Top emotions per tracked person", fontsize=10)
    _save(fig, path)
    return fig

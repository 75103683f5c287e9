"""Alignment and spectrogram figures, drawn with matplotlib's Agg renderer (no display needed).

Figures are built without pyplot, so nothing is registered globally (no leaks in a training
loop, no change to the user's matplotlib backend). Every function returns the ``Figure`` (for
``SummaryWriter.add_figure`` or ``figure.savefig``) and, given ``path``, also writes a PNG.
"""
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from speechs2s.utils import to_numpy

DPI = 100


def _finish(figure: Figure, path: str | Path | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI, format="png")
    return figure


def _image(axes, data: np.ndarray, figure: Figure, **options) -> None:
    image = axes.imshow(data, aspect="auto", origin="lower", interpolation="none", **options)
    figure.colorbar(image, ax=axes)


def plot_alignment(attention, path: str | Path | None = None, title: str | None = None,
                   text: str | None = None) -> Figure:
    """Attention weights ``(T_dec, T_enc)``: decoder steps on x, encoder tokens on y (origin lower).

    A good alignment is a thin diagonal from bottom-left to top-right. ``text`` (the input
    sentence) is shown under the x axis.
    """
    attention = to_numpy(attention)
    if attention.ndim != 2:
        raise ValueError(f"plot_alignment expects (T_dec, T_enc), got shape {attention.shape}")
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    _image(axes, attention.T, figure, vmin=0.0)
    label = "decoder step"
    if text:
        label += "\n\n" + textwrap.fill(textwrap.shorten(text, 300), 100)
    axes.set_xlabel(label)
    axes.set_ylabel("encoder token")
    if title:
        axes.set_title(title)
    return _finish(figure, path)


def plot_mel(mel, path: str | Path | None = None, title: str | None = None) -> Figure:
    """One log-mel spectrogram ``(frames, M)``: frames on x, mel bins on y."""
    return plot_mels({title or "mel": mel}, path=path)


def plot_mels(target, predicted=None, path: str | Path | None = None) -> Figure:
    """Stacked spectrograms ``(frames, M)`` sharing one colour scale.

    ``plot_mels(target, predicted)`` draws the pair (the usual TTS validation figure);
    ``plot_mels({"name": mel, ...})`` draws any number of named panels.
    """
    panels = target if isinstance(target, dict) else {"target": target, "predicted": predicted}
    panels = {name: to_numpy(mel) for name, mel in panels.items() if mel is not None}
    for name, mel in panels.items():
        if mel.ndim != 2:
            raise ValueError(f"plot_mels expects (frames, M) for {name!r}, got shape {mel.shape}")
    low = min(float(mel.min()) for mel in panels.values())
    high = max(float(mel.max()) for mel in panels.values())
    figure = Figure(figsize=(10, 2.5 * len(panels) + 0.5))
    axes = figure.subplots(len(panels), 1, squeeze=False)
    for row, (name, mel) in zip(axes[:, 0], panels.items()):
        _image(row, mel.T, figure, vmin=low, vmax=high)
        row.set_title(name)
        row.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    return _finish(figure, path)

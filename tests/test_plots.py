import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from speechs2s.audio import TTS_FEATURES, LogMel, load_audio
from speechs2s.plots import DPI, plot_alignment, plot_mel, plot_mels


def diagonal_attention(decoder_steps: int = 120, tokens: int = 40) -> torch.Tensor:
    """Soft monotonic alignment ``(T_dec, T_enc)``: rows sum to 1, peak moves bottom-left to top-right."""
    centres = torch.linspace(0, tokens - 1, decoder_steps)[:, None]
    return torch.softmax(-(torch.arange(tokens)[None] - centres).square() / 2, dim=-1)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_plot_alignment_writes_png(tmp_path):
    path = tmp_path / "figs" / "alignment.png"
    figure = plot_alignment(diagonal_attention(), path, title="step 1000", text="printing, in the only sense")
    assert path.stat().st_size > 10_000
    assert png_size(path) == (8 * DPI, 5 * DPI)
    axes = figure.axes[0]
    assert axes.get_ylabel() == "encoder token" and axes.get_title() == "step 1000"
    image = axes.images[0].get_array()
    assert image.shape == (40, 120)  # encoder tokens on y, decoder steps on x
    assert axes.get_ylim()[0] < axes.get_ylim()[1]  # origin lower
    assert len(figure.axes) == 2  # plot + colorbar
    assert not plt.get_fignums()  # pyplot is not involved: nothing to close, nothing leaks


def test_plot_mel_of_real_speech(tmp_path, corpora):
    wav = load_audio(corpora / "joe-lj/dev/wavs/LJ002-0043.ogg", TTS_FEATURES.sample_rate)
    mel = LogMel(TTS_FEATURES)(wav)
    path = tmp_path / "mel.png"
    plot_mel(mel, path, title="LJ002-0043")
    assert png_size(path) == (10 * DPI, 3 * DPI)
    assert path.stat().st_size > 10_000

    pair = tmp_path / "mels.png"
    figure = plot_mels(mel, mel.numpy() + 0.5, path=pair)
    assert png_size(pair) == (10 * DPI, int(5.5 * DPI))
    panels = [axes for axes in figure.axes if axes.images]  # the others are colorbars
    assert [axes.get_title() for axes in panels] == ["target", "predicted"]
    limits = {axes.images[0].get_clim() for axes in panels}
    assert len(limits) == 1  # one shared colour scale
    assert not plt.get_fignums()


def test_plots_without_path_and_bad_shapes(tmp_path):
    figure = plot_mels({"real": np.zeros((10, 80)), "griffin-lim": np.ones((10, 80)), "hifigan": np.ones((10, 80))})
    assert len(figure.axes) == 6
    figure.savefig(tmp_path / "later.png")  # saved (or logged) later by the caller
    assert (tmp_path / "later.png").stat().st_size > 0
    with pytest.raises(ValueError, match="T_dec, T_enc"):
        plot_alignment(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="frames, M"):
        plot_mel(torch.zeros(80))

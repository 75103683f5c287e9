"""What a trained TTS model reads off recordings, written beside a manifest's entries:

- ``write_durations`` (``speechs2s durations MANIFEST OUT``): the mel frames per token that an attention model reads
  off its alignment, in that model's tokenizer and features (FastSpeech's training targets);
- ``write_aligned_mels`` (``speechs2s aligned-mels MANIFEST OUT_DIR``): the log-mels a FastSpeech model makes on each
  recording's own durations (and pitch and energy), frame for frame in step with the recording. A vocoder trained on
  them (:class:`~speechs2s.data.datasets.VocoderDataset` reads an entry's ``mel``) learns to turn this model's smooth
  mels, not the recordings' own, into the recorded waveform: the "ground-truth-aligned" fine-tuning of Tacotron 2
  and HiFi-GAN.
"""
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechs2s.audio import FeatureConfig
from speechs2s.data.collate import collate_tts
from speechs2s.data.datasets import TTSDataset, VarianceTTSDataset
from speechs2s.data.manifest import read_manifest, write_manifest
from speechs2s.data.sampler import BucketBatchSampler
from speechs2s.errors import CheckpointError


def write_durations(manifest: str | Path, out: str | Path, model_name: str | Path = "tts-transformer",
                    device: str | torch.device | None = None, feature_cache: str | Path | None = None,
                    max_frames: int = 20000, progress: bool = False) -> tuple[int, int]:
    """Write ``manifest``'s entries to ``out`` with ``durations``: the mel frames per token that the
    attention model ``model_name`` (Transformer-TTS or Tacotron2) reads off its teacher-forced
    alignment (:meth:`~speechs2s.models.tts_blocks.AttentionAcousticModel.token_durations`), the
    training targets of FastSpeech, in that model's tokenizer and features.

    Returns ``(written, skipped)``; skipped entries (unreadable audio, no text to speak) are logged
    by the dataset and left out of ``out``. ``progress``: a tqdm bar over batches on stderr."""
    model, batches = _model_batches(model_name, "token_durations", "durations come from an attention TTS model "
                                    "(Transformer-TTS or Tacotron2)", device, feature_cache, max_frames, progress)
    entries = [{key: value for key, value in entry.items() if key != "durations"}
               for entry in read_manifest(manifest, check_files=True)]
    durations = {}
    torch.manual_seed(0)  # the prenet's dropout stays on
    for batch, inputs in batches(entries):
        frames = model.token_durations(inputs).cpu()
        for row, item_id in enumerate(batch["ids"]):
            durations[item_id] = frames[row, :int(batch["token_lengths"][row])].tolist()
    write_manifest(out, [dict(entry, durations=durations[entry["id"]]) for entry in entries if entry["id"] in durations])
    return len(durations), len(entries) - len(durations)


def write_aligned_mels(manifest: str | Path, out_dir: str | Path, model_name: str | Path = "default",
                       device: str | torch.device | None = None, feature_cache: str | Path | None = None,
                       max_frames: int = 20000, progress: bool = False) -> tuple[int, int]:
    """For every entry of ``manifest`` (with ``durations``, as :func:`write_durations` writes them), save the mels
    of the FastSpeech model ``model_name`` (:meth:`~speechs2s.models.tts_fastspeech.FastSpeech.aligned_mels`) as
    ``out_dir/mels/NNNNNN.npy`` (float16, ``(frames, M)``) and write ``out_dir/manifest.jsonl``: the entries with
    ``mel`` set to that file's absolute path.

    Returns ``(written, skipped)`` as :func:`write_durations` does."""
    model, batches = _model_batches(model_name, "aligned_mels", "aligned mels come from a FastSpeech model",
                                    device, feature_cache, max_frames, progress)
    entries = read_manifest(manifest, check_files=True)
    mel_dir = Path(out_dir, "mels").resolve()
    mel_dir.mkdir(parents=True, exist_ok=True)
    index_of = {entry["id"]: index for index, entry in enumerate(entries)}
    paths = {}
    for batch, inputs in batches(entries):
        mels = model.aligned_mels(inputs).float().cpu()
        for row, item_id in enumerate(batch["ids"]):
            path = mel_dir / f"{index_of[item_id]:06d}.npy"
            np.save(path, mels[row, :int(batch["mel_lengths"][row])].numpy().astype(np.float16))
            paths[item_id] = str(path)
    write_manifest(Path(out_dir, "manifest.jsonl"),
                   [dict(entry, mel=paths[entry["id"]]) for entry in entries if entry["id"] in paths])
    return len(paths), len(entries) - len(paths)


def _model_batches(model_name, method: str, needs: str, device, feature_cache, max_frames: int, progress: bool
                   ) -> tuple[torch.nn.Module, Callable[[list[dict]], Iterator[tuple[dict, dict]]]]:
    """Load TTS checkpoint ``model_name`` (``CheckpointError`` ``"<model_name>: <needs>"`` if it has no ``method``);
    return it and ``batches(entries)``, which iterates over the entries as training batches in its tokenizer and
    features (FastSpeech 2's with pitch and energy): ``(batch, its tensors on the model's device)``."""
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device

    device = select_device(device)
    model, tokenizer, config = load_checkpoint(model_name, device, task="tts")
    if not hasattr(model, method):
        raise CheckpointError(f"{model_name}: {needs}, not {type(model).__name__}")
    dataset_type = VarianceTTSDataset if getattr(model, "has_pitch", False) else TTSDataset

    def batches(entries: list[dict]):
        dataset = dataset_type(entries, tokenizer, FeatureConfig.from_dict(config["features"]), cache_dir=feature_cache)
        for indices in tqdm(BucketBatchSampler(dataset.lengths, max_frames, shuffle=False),
                            desc=method, unit="batch", disable=not progress):
            batch = collate_tts([dataset[index] for index in indices])
            if batch is not None:
                yield batch, {key: value.to(device) for key, value in batch.items() if isinstance(value, torch.Tensor)}
    return model, batches

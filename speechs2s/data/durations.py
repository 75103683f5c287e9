"""Token durations for FastSpeech: ``write_durations`` (``speechs2s durations MANIFEST OUT``) adds to
every manifest entry the mel frames per token that a trained attention TTS model reads off its
alignment, in that model's tokenizer and features."""
from pathlib import Path

import torch
from tqdm import tqdm

from speechs2s.audio import FeatureConfig
from speechs2s.data.collate import collate_tts
from speechs2s.data.datasets import TTSDataset
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
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device

    device = select_device(device)
    model, tokenizer, config = load_checkpoint(model_name, device, task="tts")
    if not hasattr(model, "token_durations"):
        raise CheckpointError(f"{model_name}: durations come from an attention TTS model "
                              f"(Transformer-TTS or Tacotron2), not {type(model).__name__}")
    entries = [{key: value for key, value in entry.items() if key != "durations"}
               for entry in read_manifest(manifest, check_files=True)]
    dataset = TTSDataset(entries, tokenizer, FeatureConfig.from_dict(config["features"]), cache_dir=feature_cache)
    batches = BucketBatchSampler(dataset.lengths, max_frames, shuffle=False)
    durations = {}
    torch.manual_seed(0)  # the prenet's dropout stays on
    for indices in tqdm(batches, desc="durations", unit="batch", disable=not progress):
        batch = collate_tts([dataset[index] for index in indices])
        if batch is None:
            continue
        inputs = {key: value.to(device) for key, value in batch.items() if isinstance(value, torch.Tensor)}
        frames = model.token_durations(inputs).cpu()
        for row, item_id in enumerate(batch["ids"]):
            durations[item_id] = frames[row, :int(batch["token_lengths"][row])].tolist()
    write_manifest(out, [dict(entry, durations=durations[entry["id"]]) for entry in entries if entry["id"] in durations])
    return len(durations), len(entries) - len(durations)

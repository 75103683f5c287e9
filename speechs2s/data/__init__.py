"""Data pipeline: manifests, corpus importers, datasets, batching and augmentation."""
from speechs2s.data.augment import ChannelAugment, SpecAugment, add_noise, reverberate, speed_perturb
from speechs2s.data.collate import collate_asr, collate_tts, collate_vocoder
from speechs2s.data.datasets import ASRDataset, AudioDataset, TTSDataset, VocoderDataset
from speechs2s.data.manifest import read_manifest, write_manifest
from speechs2s.data.sampler import BucketBatchSampler

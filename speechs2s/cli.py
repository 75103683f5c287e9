"""Command-line interface: ``speechs2s COMMAND --help`` shows each command with an example.

Every command calls the same library function a Python user would; user errors
(:class:`speechs2s.errors.SpeechS2SError`) become one line on stderr and exit code 1.
"""
import sys

import click

from speechs2s.errors import ConfigError, SpeechS2SError

DEFAULT_HOTWORD_BONUS = 5.0  # speechs2s.decode.hotwords.DEFAULT_BONUS (not imported: keeps --help fast)
DEFAULT_BEAM = 12  # speechs2s.decode.asr.DecodeConfig.beam_size (not imported, likewise)
DEFAULT_ENDPOINT_SILENCE = 1.0  # speechs2s.asr.DEFAULT_ENDPOINT_SILENCE (not imported, likewise)
THREADS_HELP = "CPU threads for torch (default: one per core that no other process keeps busy)."


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SpeechS2SError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)
        except click.UsageError as error:  # a bad option or argument: one line too, exit code 2
            command = error.ctx.command_path if error.ctx else ctx.command_path
            message = " ".join(error.format_message().split())
            click.echo(f"error: {message} (see '{command} --help')", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="speechs2s")
def main():
    """speechs2s: speech-to-text and text-to-speech toolkit."""


@main.command()
@click.argument("url")
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--sha256", help="Expected SHA-256 of the file.")
@click.option("--md5", help="Expected MD5 of the file.")
@click.option("--extract", "extract_to", type=click.Path(file_okay=False), help="Unpack the archive into this folder.")
def download(url, dest, sha256, md5, extract_to):
    """Download URL to DEST (a file, or a folder for the URL's file name), resuming a partial
    download and verifying the checksum; optionally unpack it safely.

    \b
    Example:
      speechs2s download https://www.openslr.org/resources/12/dev-clean.tar.gz \\
          data/downloads/ --sha256 76f87d09... --extract data/
    """
    from speechs2s.download import download as fetch, extract

    path = fetch(url, dest, sha256=sha256, md5=md5)
    if extract_to:
        extract(path, extract_to)
    click.echo(str(path))


@main.command()
@click.argument("corpus_type", type=click.Choice(["ljspeech", "librispeech", "kaldi", "fsdd", "yesno"]))
@click.argument("source_dir", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(dir_okay=False, path_type=str))
@click.option("--speakers", help="FSDD only: comma-separated speakers to keep, e.g. george,theo.")
@click.option("--split", type=click.Choice(["train", "test"]), help="FSDD only: upstream split (test = index 0-4).")
def prepare(corpus_type, source_dir, out, speakers, split):
    """Import a corpus in SOURCE_DIR into the JSONL manifest OUT (id, audio, duration, text, speaker).

    \b
    Corpus types: ljspeech (metadata.csv + wavs/), librispeech (*.trans.txt + .flac),
    kaldi (wav.scp, text, utt2spk, segments), fsdd ({digit}_{speaker}_{index}.wav),
    yesno (0_1_..._1.wav, text "lo"/"ken").
    \b
    Example:
      speechs2s prepare fsdd corpora/fsdd data/fsdd_test.jsonl --split test   # recipes/fsdd/asr stage 0 fetches corpora/fsdd
    """
    import warnings

    from speechs2s.data.corpora import prepare as prepare_corpus

    options = {"speakers": speakers.split(",") if speakers else None, "split": split}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skips are reported below
        entries = prepare_corpus(corpus_type, source_dir, out, **{k: v for k, v in options.items() if v is not None})
    click.echo(f"wrote {len(entries)} entries ({entries.hours:.2f} h) to {out}")
    if entries.skipped:
        click.echo(f"skipped {len(entries.skipped)} utterance(s):", err=True)
        for path, reason in entries.skipped[:5]:
            click.echo(f"  {path}: {reason}", err=True)
        if len(entries.skipped) > 5:
            click.echo(f"  ... and {len(entries.skipped) - 5} more", err=True)


@main.command()
@click.argument("config", type=click.Path(path_type=str))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=5e-4 (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in CONFIG's trainer.out_dir (or the out_dir given as CONFIG) exactly where "
                   "it stopped, with the config it saved there; --set given now apply on top.")
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
def train(config, overrides, resume, threads):
    """Train the model described by the YAML file CONFIG and print the final checkpoint folder.

    The resolved config (YAML + every --set) is saved as OUT_DIR/config.yaml. Multi-GPU: launch with
    torchrun. SIGINT/SIGTERM save a checkpoint and stop; --resume continues as if never stopped.

    \b
    Example:
      speechs2s train configs/asr_transformer_tiny.yaml --set trainer.out_dir=exp/fsdd --set optim.lr=5e-4
      speechs2s train exp/fsdd --resume                              # same config, same --set
      speechs2s train exp/fsdd --resume --set trainer.max_steps=20000  # train on
      torchrun --nproc_per_node 4 -m speechs2s train configs/asr_transformer_base.yaml --resume
    """
    from speechs2s.train.config import training_config
    from speechs2s.train.trainer import train as run_training
    from speechs2s.utils import set_threads

    set_threads(threads)
    click.echo(str(run_training(training_config(config, list(overrides), resume), resume=resume)))


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=str))
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--half", is_flag=True, help="Store the weights in float16 (half the size).")
@click.option("--inference", is_flag=True,
              help="Leave out what only training uses (a FastSpeech's mel discriminator): a bundle for synthesis.")
def average(out, checkpoints, half, inference):
    """Average the weights of CHECKPOINTS (folders of one model) into the checkpoint folder OUT
    (one checkpoint copies it, e.g. to store it in float16 with --half, or for synthesis only
    with --inference).

    \b
    Example:
      speechs2s average exp/fsdd/avg exp/fsdd/checkpoints/step-00{4,5,6}000
    """
    from speechs2s.checkpoint import save_average

    click.echo(str(save_average(out, list(checkpoints), half, inference)))


@main.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=str))
def models(folders):
    """List the bundled models and the checkpoints under FOLDERS (default: exp, when it exists): the name
    to pass as --model, task, architecture, parameters, size on disk and the model card's summary.

    \b
    Example:
      speechs2s models
      speechs2s models exp/ /data/checkpoints/
    """
    from speechs2s.checkpoint import list_models

    rows = [("NAME", "TASK", "MODEL", "PARAMS", "SIZE", "SUMMARY")]
    rows += [(m.name, m.task, m.architecture, f"{m.parameters / 1e6:.1f} M", f"{m.size_bytes / 1e6:.1f} MB", m.summary)
             for m in list_models(folders or ["exp"])]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


def _asr_options(command):
    """Options shared by ``transcribe`` and ``evaluate``: model, search and device."""
    options = [
        click.option("--model", "model_name", default="default", show_default=True,
                     help="Checkpoint folder, training output folder or bundled model name."),
        click.option("--beam", type=click.IntRange(min=1), default=DEFAULT_BEAM, show_default=True,
                     help="Beam size (1 with --ctc-weight 0 is greedy decoding)."),
        click.option("--ctc-weight", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                     help="Weight of CTC prefix scores in the beam search (1 = CTC prefix beam search only)."),
        click.option("--lm", help="Language model trained with the ASR model's tokenizer (folder or bundled name), "
                                  "fused into beam search with the weights stored by 'speechs2s tune-lm'; none: no LM "
                                  "(default: the model's own, as bundled with asr-default)."),
        click.option("--lm-weight", type=click.FloatRange(min=0), help="Override the LM weight (0 turns it off)."),
        click.option("--length-bonus", type=float, help="Override the per-token length bonus that goes with the LM."),
        click.option("--hotwords", help='Names and terms to favour, comma-separated: "Nguyen, Kubernetes, Oyelaran". '
                                        "A model trained with a copy mechanism (bias_phrases) reads them too and may "
                                        "copy them into the text; the trie bonus (--hotword-bonus) applies as well."),
        click.option("--hotwords-file", type=click.Path(dir_okay=False, path_type=str),
                     help="Hotword phrases, one per line (# starts a comment); adds to --hotwords."),
        click.option("--hotword-bonus", type=click.FloatRange(min=0), default=DEFAULT_HOTWORD_BONUS, show_default=True,
                     help="Score bonus per token of a completed hotword phrase in beam search "
                          "(0: none; a model with a copy mechanism then biases by that alone)."),
        click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
        click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_recognizer(model_name, beam, ctc_weight, lm, lm_weight, length_bonus, device, threads,
                     hotwords=None, hotwords_file=None, hotword_bonus=DEFAULT_HOTWORD_BONUS):
    """``(ASR, DecodeConfig)`` from the shared options."""
    import dataclasses

    from speechs2s.asr import load_asr
    from speechs2s.decode.hotwords import parse_hotwords, read_hotwords_file
    from speechs2s.utils import set_threads

    phrases = parse_hotwords(hotwords) if hotwords is not None else []
    if hotwords is not None and not phrases:
        raise ConfigError("--hotwords: no phrases given (comma-separated, e.g. --hotwords \"Nguyen, Kubernetes\")")
    if hotwords_file is not None:
        phrases += read_hotwords_file(hotwords_file)
    set_threads(threads)
    lm = {None: "auto", "none": None}.get(lm, lm)
    asr = load_asr(model_name, device, lm=lm, hotwords=phrases, hotword_bonus=hotword_bonus)
    decode = dataclasses.replace(asr.decode, mode="beam", beam_size=beam, ctc_weight=ctc_weight)
    if lm_weight is not None:
        decode.lm_weight = lm_weight
    if length_bonus is not None:
        decode.length_bonus = length_bonus
    return asr, decode


def _audio_inputs(inputs: tuple[str, ...]) -> list[tuple[object, str | None]]:
    """Command-line inputs -> ``(audio, output stem)`` pairs: a file as is (stem: its name without
    suffix), a folder's audio files found recursively (stem: path inside the folder), ``-``: the
    bytes of stdin (stem ``stdin``); a folder without audio files is a failed :class:`Transcript` (no stem)."""
    import io
    from pathlib import Path

    from speechs2s.asr import Transcript
    from speechs2s.audio import READ_SUFFIXES
    from speechs2s.errors import AudioError

    pairs = []
    for item in inputs:
        if item == "-":
            stdin = io.BytesIO(sys.stdin.buffer.read())
            stdin.name = "<stdin>"
            pairs.append((stdin, "stdin"))
        elif Path(item).is_dir():
            found = sorted(path for path in Path(item).rglob("*") if path.suffix.lower() in READ_SUFFIXES and path.is_file())
            if not found:
                reason = f"is a directory without audio files ({', '.join(sorted(READ_SUFFIXES))})"
                pairs.append((Transcript(item, failure=AudioError(f"{item}: {reason}")), None))
            pairs += [(str(path), str(path.relative_to(item).with_suffix(""))) for path in found]
        else:
            pairs.append((item, Path(item).stem))
    return pairs


def _check_stems(pairs: list[tuple[object, str | None]]) -> None:
    """Raise when two inputs would write the same transcript files."""
    first = {}
    for audio, stem in pairs:
        if stem is None:
            continue
        name = getattr(audio, "name", audio)
        if first.setdefault(stem, name) != name:
            raise SpeechS2SError(f"{first[stem]} and {name} would both be written as {stem}.*: "
                                 f"transcribe them into different --output-dir folders")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@_asr_options
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: per file its text, timed segments and words, decode time and RTF.")
@click.option("-f", "--output-format", type=click.Choice(["txt", "json", "srt", "vtt", "tsv", "all"]),
              help="Also write each transcript as a file of this format into --output-dir.")
@click.option("-o", "--output-dir", type=click.Path(path_type=str),
              help="Folder for the transcript files (default: the current folder; alone: every format).")
@click.option("--stream", is_flag=True,
              help="Decode one input as it arrives, printing partial text: a file at real-time pace, or - "
                   "(raw 16-bit little-endian mono PCM at the model's rate, 16 kHz) as stdin delivers it.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="--stream: encoder frames per chunk (40 ms each at x4 subsampling): latency against accuracy.")
@click.option("--left-chunks", type=click.IntRange(min=-1), default=-1, show_default=True,
              help="--stream: earlier chunks each frame attends to (-1: all).")
@click.option("--final", type=click.Choice(["full", "beam", "rescore"]), default="full", show_default=True,
              help="--stream: final pass: full, the utterance encoded again with full context, then the joint "
                   "attention/CTC beam search (the offline text; one more encoder pass at the end); beam, that search "
                   "over the streamed encoder output; rescore, attention rescoring of its CTC n-best (cheapest, worst).")
@click.option("--endpoint-silence", type=click.FloatRange(min=0), default=DEFAULT_ENDPOINT_SILENCE, show_default=True,
              help="--stream: seconds of pause after speech that end a segment (its final text is printed, and "
                   "the stream goes on with a fresh one); 0: the whole stream is one utterance.")
@click.option("--no-pace", is_flag=True, help="--stream: read a file as fast as it decodes, not in real time.")
def transcribe(inputs, model_name, beam, ctc_weight, lm, lm_weight, length_bonus, hotwords, hotwords_file,
               hotword_bonus, device, threads, as_json, output_format, output_dir, stream, chunk_size, left_chunks,
               final, endpoint_silence, no_pace):
    """Transcribe audio INPUTS: files (any format soundfile reads), folders (their audio files,
    recursively) or - (audio bytes on stdin). Long files are split at silences.

    Prints the text for one file, "path<TAB>text" per line for several; --output-format writes
    txt, json (with word times and confidences), srt, vtt or tsv files named after each input.
    A file that cannot be read is reported as ``error: <file>: reason`` on stderr, the others are
    still transcribed, and the exit code is 1.

    \b
    Example:
      speechs2s transcribe speech.wav
      speechs2s transcribe recordings/ -f srt -o subtitles/
      speechs2s transcribe *.flac --model exp/librispeech/final --beam 10 --json > out.json
      speechs2s transcribe meeting.wav --hotwords "Nguyen, Kubernetes, Oyelaran"
      curl -s https://example.com/talk.mp3 | speechs2s transcribe - -f all
      arecord -f S16_LE -r 16000 -c 1 | speechs2s transcribe --stream -
    """
    import json
    from pathlib import Path

    if stream:
        if len(inputs) != 1 or output_format or output_dir:
            raise SpeechS2SError("--stream takes one input (a file or -) and no --output-format or --output-dir")
        asr, decode = _load_recognizer(model_name, beam, ctc_weight, lm, lm_weight, length_bonus, device, threads,
                                       hotwords, hotwords_file, hotword_bonus)
        _transcribe_stream(asr.stream(chunk_size, left_chunks, decode, final, endpoint_silence or None), inputs[0],
                           as_json, pace=not no_pace)
        return

    from speechs2s.asr import Transcript
    from speechs2s.transcript_writers import FORMATS, transcript_dict, write_transcript
    from speechs2s.utils import write_error_reason

    pairs = _audio_inputs(inputs)
    write_files = bool(output_format or output_dir)
    if write_files:  # find a bad output folder before transcribing
        _check_stems(pairs)
        try:
            Path(output_dir or ".").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SpeechS2SError(f"{output_dir}: cannot create the output folder ({write_error_reason(error)})") from None
    files = [audio for audio, _ in pairs if not isinstance(audio, Transcript)]
    asr, decode = _load_recognizer(model_name, beam, ctc_weight, lm, lm_weight, length_bonus, device, threads,
                                   hotwords, hotwords_file, hotword_bonus)
    decoded = iter(asr.transcribe_files(files, decode, progress=len(files) > 1 and sys.stderr.isatty()))
    transcripts = [audio if isinstance(audio, Transcript) else next(decoded) for audio, _ in pairs]
    for transcript in transcripts:
        if transcript.error:
            click.echo(f"error: {transcript.error}", err=True)
    if as_json:
        click.echo(json.dumps([transcript_dict(t) for t in transcripts], indent=2, ensure_ascii=False))
    else:
        for transcript in transcripts:
            if not transcript.error:
                click.echo(transcript.text if len(pairs) == 1 else f"{transcript.source}\t{transcript.text}")
    if write_files:
        formats = list(FORMATS) if output_format in (None, "all") else [output_format]
        for (_, stem), transcript in zip(pairs, transcripts):
            if not transcript.error:
                write_transcript(transcript, Path(output_dir or ".") / stem, formats)
    if any(transcript.error for transcript in transcripts):
        sys.exit(1)


def _transcribe_stream(stream, source: str, as_json: bool, pace: bool) -> None:
    """Feed ``source`` (a file, or - for raw PCM on stdin) to a :class:`~speechs2s.decode.stream.Stream`,
    printing each new partial text (over the last one on a terminal, as ``partial: text`` lines
    otherwise) and each segment's final text as it ends (a line of its own; ``final: text`` off a terminal),
    or, with ``as_json``, the whole transcript's JSON at the end."""
    import json

    from speechs2s.audio import iter_audio_blocks
    from speechs2s.decode.stream import paced, pcm_blocks
    from speechs2s.transcript_writers import transcript_dict

    sample_rate = stream.asr.features.sample_rate
    if source == "-":
        blocks = pcm_blocks(sys.stdin.buffer)
    else:
        blocks = iter_audio_blocks(source, 0.1, sample_rate)
        blocks = paced(blocks, sample_rate) if pace else blocks
    terminal, shown, ended = sys.stdout.isatty(), "", 0

    def show_ended() -> None:
        nonlocal shown, ended
        for segment in stream.segments[ended:]:
            if not as_json:
                click.echo(f"\r\033[K{segment.text}" if terminal else f"final: {segment.text}")
            shown, ended = "", ended + 1

    for block in blocks:
        partial = stream.accept(block)
        show_ended()
        if partial != shown:
            click.echo(f"\r\033[K{partial}" if terminal else f"partial: {partial}", nl=not terminal)
            shown = partial
    transcript = stream.finish()
    transcript.source = "<stdin>" if source == "-" else source
    if terminal:
        click.echo("\r\033[K", nl=False)
    show_ended()
    if as_json:
        click.echo(json.dumps(transcript_dict(transcript), indent=2, ensure_ascii=False))


@main.command()
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="JSONL manifest with audio and reference text.")
@_asr_options
@click.option("--report", type=click.Path(dir_okay=False, path_type=str),
              help="Write a per-utterance TSV (id, ref, hyp, sub, del, ins, error) here.")
def evaluate(manifest, model_name, beam, ctc_weight, lm, lm_weight, length_bonus, hotwords, hotwords_file,
             hotword_bonus, device, threads, report):
    """Transcribe a test manifest and print WER, CER (normalised text) and real-time factor.

    Utterances that fail to read count as all-deleted, are listed on stderr, and make the exit
    code 1 (the scores and report are still written).

    \b
    Example:
      speechs2s evaluate --model exp/fsdd/final --manifest data/fsdd_test.jsonl --report exp/fsdd/test.tsv
    """
    asr, decode = _load_recognizer(model_name, beam, ctc_weight, lm, lm_weight, length_bonus, device, threads,
                                   hotwords, hotwords_file, hotword_bonus)
    evaluation = asr.evaluate(manifest, decode, progress=sys.stderr.isatty())
    for row in evaluation.rows:
        if row["error"]:
            click.echo(f"error: {row['error']}", err=True)
    if report:
        evaluation.write_report(report)
    click.echo(evaluation.summary())
    if any(row["error"] for row in evaluation.rows):
        sys.exit(1)


@main.command("tune-lm")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Dev manifest (audio + text) to choose the weights on; not your test set, nor text the LM saw.")
@_asr_options
@click.option("--weights", default="0.1,0.2,0.3,0.4,0.5", show_default=True, help="LM weights to try (0 is always tried).")
@click.option("--bonuses", default="0,0.5,1,1.5", show_default=True, help="Length bonuses to try with each weight.")
def tune_lm(manifest, model_name, beam, ctc_weight, lm, lm_weight, length_bonus, hotwords, hotwords_file,
            hotword_bonus, device, threads, weights, bonuses):
    """Choose the LM weight and length bonus with the lowest WER on MANIFEST and store them with the LM.

    They go to fusion.json in the LM's folder, with the WER of every pair tried; --lm DIR then uses them.

    \b
    Example:
      speechs2s tune-lm --model default --lm exp/lm_lstm/final --manifest data/joe_dev_tune.jsonl
    """
    from speechs2s.fusion import tune_fusion

    if lm in (None, "none"):
        raise ConfigError("tune-lm: --lm DIR is required")
    grids = [_floats(weights, "--weights"), _floats(bonuses, "--bonuses")]
    asr, decode = _load_recognizer(model_name, beam, ctc_weight, lm, lm_weight, length_bonus, device, threads,
                                   hotwords, hotwords_file, hotword_bonus)
    report = tune_fusion(asr, lm, manifest, *grids, decode, progress=sys.stderr.isatty(), asr_name=model_name)
    for run in report["runs"]:
        click.echo(f"lm_weight {run['lm_weight']:g}  length_bonus {run['length_bonus']:g}  "
                   f"WER {100 * run['wer']:.2f}%  CER {100 * run['cer']:.2f}%")
    best = report["best"]
    click.echo(f"best: lm_weight {best['lm_weight']:g}, length_bonus {best['length_bonus']:g} (WER {100 * best['wer']:.2f}%), "
               f"stored in {lm}")


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def _recordings_options(command):
    """The options of the commands that run a TTS model over a manifest's recordings (durations, aligned-mels)."""
    for option in reversed([
        click.option("--feature-cache", type=click.Path(file_okay=False, path_type=str),
                     help="Folder of cached mels and pitch (a training run's data.feature_cache) to read and fill."),
        click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
        click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=str))
@click.argument("out", type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "model_name", default="tts-transformer", show_default=True,
              help="Trained attention TTS (Transformer-TTS or Tacotron2): checkpoint folder, training output folder or bundled name.")
@_recordings_options
def durations(manifest, out, model_name, feature_cache, device, threads):
    """Copy MANIFEST to OUT with the mel frames per token of every entry (FastSpeech's targets).

    The durations are read off the teacher-forced alignment of a trained attention model and fit
    its tokenizer and features: train FastSpeech with that model as trainer.init_from.

    \b
    Example:
      speechs2s durations data/joe_train.jsonl data/joe_train_durations.jsonl --model exp/ljspeech_tts/final
    """
    from speechs2s.data.durations import write_durations
    from speechs2s.utils import set_threads

    set_threads(threads)
    written, skipped = write_durations(manifest, out, model_name, device, feature_cache,
                                       progress=sys.stderr.isatty())
    click.echo(f"wrote {written} entries with durations to {out}" + (f" ({skipped} skipped, see the log)" if skipped else ""))


@main.command("aligned-mels")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=str))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--model", "model_name", default="default", show_default=True,
              help="FastSpeech or FastSpeech 2: checkpoint folder, training output folder or bundled name.")
@_recordings_options
def aligned_mels(manifest, out_dir, model_name, feature_cache, device, threads):
    """Write the mels a FastSpeech model makes on MANIFEST's own durations to OUT_DIR, with OUT_DIR/manifest.jsonl.

    MANIFEST needs durations ('speechs2s durations'). A vocoder fine-tuned on OUT_DIR/manifest.jsonl learns to turn
    this model's mels into the recorded audio.

    \b
    Example:
      speechs2s aligned-mels data/joe_train_durations.jsonl data/aligned_train --model default
      speechs2s train configs/vocoder_vocos_tiny.yaml --set data.train=data/aligned_train/manifest.jsonl \\
        --set trainer.init_from=speechs2s/pretrained/tts-default/vocoder
    """
    from speechs2s.data.durations import write_aligned_mels
    from speechs2s.utils import set_threads

    set_threads(threads)
    written, skipped = write_aligned_mels(manifest, out_dir, model_name, device, feature_cache,
                                          progress=sys.stderr.isatty())
    click.echo(f"wrote the mels of {written} entries and {out_dir}/manifest.jsonl"
               + (f" ({skipped} skipped, see the log)" if skipped else ""))


@main.command()
@click.argument("text", required=False)
@click.option("--file", "text_file", type=click.Path(dir_okay=False, path_type=str), help="Read the text from this UTF-8 file.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Audio file to write: .wav, .flac (16-bit), .ogg (Vorbis) or .mp3; - for WAV on stdout, "
                   "sent sentence by sentence as it is made (| aplay plays while the rest is synthesized).")
@click.option("--model", "model_name", default="default", show_default=True,
              help="TTS checkpoint folder, training output folder or bundled model name.")
@click.option("--vocoder", default="auto", show_default=True,
              help="auto (the model's own vocoder if it has one, else griffin-lim), griffin-lim, "
                   "or a vocoder checkpoint (HiFi-GAN or Vocos folder).")
@click.option("--plot-alignment", type=click.Path(dir_okay=False, path_type=str),
              help="Save the attention alignment (first sentences) as a PNG.")
@click.option("--speed", type=click.FloatRange(0.25, 4.0), default=1.0, show_default=True,
              help="Speaking rate: 1.25 speaks 25% faster (FastSpeech: shorter durations; attention models: mels resampled).")
@click.option("--pitch", type=click.FloatRange(-12.0, 12.0), default=0.0, show_default=True,
              help="Semitones up (negative: down), any model; timing and formants kept (TD-PSOLA on the waveform).")
@click.option("--sentence-silence", type=click.FloatRange(0.0, 10.0), default=0.25, show_default=True,
              help="Seconds of silence between sentences (Piper's option of that name).")
@click.option("--sample-rate", type=click.IntRange(8000, 192000), help="Sample rate of the file (default: the vocoder's).")
@click.option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
@click.option("--threads", type=click.IntRange(min=1), help=THREADS_HELP)
def speak(text, text_file, output, model_name, vocoder, plot_alignment, speed, pitch, sentence_silence, sample_rate, device,
          threads):
    """Synthesize TEXT (or "-" for stdin, or --file) into the audio file OUTPUT.

    Long text is split into sentences, synthesized in batches and streamed to the file. The format
    follows the suffix; folders are created; the file appears only when complete (Ctrl-C leaves none).
    With -o - the WAV goes to stdout as it is made, so a player starts with the first sentences.

    \b
    Example:
      speechs2s speak "Hello there. How are you?" -o hello.wav
      cat book.txt | speechs2s speak - -o book/chapter1.mp3 --model exp/ljspeech/final --vocoder exp/hifigan/final
      speechs2s speak "Hello." -o - | aplay
    """
    from pathlib import Path

    from speechs2s.errors import TextError
    from speechs2s.tts import load_tts
    from speechs2s.utils import set_threads

    if (text is None) == (text_file is None):
        raise click.UsageError("give the text as an argument, as '-' for stdin, or with --file (one of them)")
    if text_file is not None:
        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextError(f"{text_file}: cannot read text ({error})") from None
    elif text == "-":
        text = _stdin_pieces(sys.stdin) if output == "-" else sys.stdin.read()
    set_threads(threads)
    tts = load_tts(model_name, device, vocoder)
    tts.config.duration_scale, tts.pause_seconds = 1.0 / speed, sentence_silence
    seconds = tts.synthesize_to_file(text, output, plot_alignment=plot_alignment, progress=sys.stderr.isatty(),
                                     sample_rate=sample_rate, pitch=pitch)
    click.echo(f"wrote {seconds:.2f} s of speech to {'stdout' if output == '-' else output}", err=output == "-")


def _stdin_pieces(stdin, wait: float = 0.2):
    """Text from ``stdin`` as it arrives, in pieces: whatever has been read when no more comes within ``wait``
    seconds (or at the end) is one piece, so that lines typed or generated into ``speak - -o -`` are spoken at once
    (Piper's habit), while a file piped in is read as one text (its sentences batched, its wrapped lines joined)."""
    import select

    try:
        stdin.fileno()
    except (AttributeError, OSError, ValueError):  # not a file descriptor (tests, wrappers): all of it at once
        yield stdin.read()
        return
    lines = []
    for line in iter(stdin.readline, ""):
        lines.append(line)
        if not select.select([stdin], [], [], wait)[0]:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)

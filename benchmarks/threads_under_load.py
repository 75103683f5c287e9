"""Threads under load: is the default thread count ever slower than ``--threads 1`` while another
process keeps a core busy?

Runs the command line as a user does (a fresh ``python -m speechs2s`` per run, wall time from start to
exit, loading included) on a recording of about 2 minutes (joe-lj dev sentences joined with pauses,
16 kHz) and on a paragraph of text, with the default thread count, with each ``--threads N``, and with
the largest N under ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep instead of spinning while they
wait). Each runs twice: with the machine as it is ("idle"), and beside a busy-loop process pinned to
one core ("1 busy core"). ``vs --threads 1`` > 1 means slower than one thread.

    python benchmarks/threads_under_load.py                 # 120 s file, 3 repeats, --threads 1,<cores>
    python benchmarks/threads_under_load.py --quick         # 20 s file, one run each
    python benchmarks/threads_under_load.py --seconds 5 --text "One sentence." --repeats 1 --no-record
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, THREAD_VARIABLES, joe_lj_dev, parser, record, repeats, thread_counts

PARAGRAPH = ("The old lighthouse stood at the edge of the cliff for more than a hundred years. Every evening the "
             "keeper climbed its narrow stairs, lit the lamp and watched the ships pass in the dark. When the storm "
             "came in the autumn of that year, the light kept burning through the night. In the morning the village "
             "found every boat safe in the harbour, and nobody forgot who had kept them there.")


def long_recording(path: Path, seconds: float) -> float:
    """Write joe-lj dev sentences, 0.4 s apart, up to ``seconds`` long as a 16 kHz WAV; returns its length."""
    import numpy as np

    from speechs2s.audio import load_audio, save_audio

    rate, pieces, total = 16000, [], 0
    for entry in joe_lj_dev().entries:
        pieces += [load_audio(entry["audio"], rate).numpy(), np.zeros(int(0.4 * rate), np.float32)]
        total += len(pieces[-2]) + len(pieces[-1])
        if total >= seconds * rate:
            break
    audio = np.concatenate(pieces)[: int(seconds * rate)]
    save_audio(path, audio, rate)
    return len(audio) / rate


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """``(wall seconds, stdout)`` of ``python -m speechs2s ARGS`` with the thread variables unset (torch's own
    default) and ``env`` added."""
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES and k != "OMP_WAIT_POLICY"}
    clean |= {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), **env}
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "speechs2s", *args], capture_output=True, text=True, env=clean)
    seconds = time.perf_counter() - began
    if result.returncode:
        raise RuntimeError(f"speechs2s {' '.join(args)} failed: {result.stderr.strip()}")
    return seconds, result.stdout


def busy_loop(core: int) -> subprocess.Popen:
    """A process spinning on ``core`` (started, then given a second to get going)."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(process.pid, {core})
    time.sleep(1.0)
    return process


def main():
    cli = parser(__doc__)
    cli.set_defaults(threads=f"1,{len(os.sched_getaffinity(0))}")
    cli.add_argument("--seconds", type=float, help="length of the recording to transcribe (default 120, quick 20)")
    cli.add_argument("--text", default=PARAGRAPH, help="text to speak (default: a five-sentence paragraph)")
    cli.add_argument("--asr-model", default="default")
    cli.add_argument("--tts-model", default="default")
    args = cli.parse_args()
    counts = thread_counts(args)
    variants = [("default", [], {})] + [(f"--threads {n}", ["--threads", str(n)], {}) for n in counts]
    if max(counts) > 1:
        variants.append((f"--threads {max(counts)}, OMP_WAIT_POLICY=PASSIVE", ["--threads", str(max(counts))],
                         {"OMP_WAIT_POLICY": "PASSIVE"}))

    from speechs2s.utils import free_cores

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "long.wav"
        audio_seconds = long_recording(audio, args.seconds or (20 if args.quick else 120))
        tasks = {"transcribe": ["transcribe", str(audio), "--json", "--model", args.asr_model],
                 "speak": ["speak", args.text, "-o", str(Path(tmp) / "out.wav"), "--model", args.tts_model]}
        for condition in ("idle", "1 busy core"):
            busy = busy_loop(max(os.sched_getaffinity(0))) if condition != "idle" else None
            try:
                for task, task_args in tasks.items():
                    for label, extra, env in variants:
                        free = free_cores()
                        runs = [run_cli(task_args + extra, env) for _ in range(repeats(args))]
                        row = {"task": task, "condition": condition, "variant": label, "free_cores": free,
                               "wall_s": statistics.median(seconds for seconds, _ in runs)}
                        if task == "transcribe":
                            row["decode_s"] = statistics.median(json.loads(out)[0]["decode_seconds"] for _, out in runs)
                        rows.append(row)
                        print(row, file=sys.stderr)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    one = {(r["task"], r["condition"]): r["wall_s"] for r in rows if r["variant"] == "--threads 1"}
    for row in rows:
        reference = one.get((row["task"], row["condition"]))
        row["vs_one_thread"] = row["wall_s"] / reference if reference else None
    columns = [("task", "task", ""), ("condition", "machine", ""), ("variant", "threads", ""),
               ("free_cores", "free cores (sampled)", "d"), ("wall_s", "wall s", ".2f"),
               ("decode_s", "decode s", ".2f"), ("vs_one_thread", "vs --threads 1", ".2f")]
    notes = [f"transcribe: a {audio_seconds:.0f} s recording; speak: {len(args.text)} characters; "
             f"wall time of the whole command (import, load, run), median of {repeats(args)}."]
    record("threads_under_load", args, {"audio_seconds": audio_seconds, "text": args.text, "rows": rows},
           [("Default threads vs --threads N, idle and beside a busy loop", rows, columns)], notes)


if __name__ == "__main__":
    main()

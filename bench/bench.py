#!/usr/bin/env python3
"""Side-by-side speed and accuracy: earshot, whisper.cpp's whisper-cli, faster-whisper.

Run through bench/bench.sh, which installs and builds everything first. This script makes the
corpus (real speech from shared/eval, re-encoded as Telegram voice notes), runs every system
in alternating order (A B C A B C ...) for several rounds, and prints a Markdown table of
medians: wall time, x real time, peak RSS, WER (English) / CER (Russian).

Runs:
  short   one process per system over all short clips (< 30 s): the model loads once, so this
          is warm throughput, what a service or a batch sees;
  cold    one process per clip, for the first few clips: a single note's latency, model load
          included;
  long    one process over one ~10 minute file;
  noisy   (--noisy) the short notes of the measuring half with 3-6 s of room noise before
          and after and under the speech, re-encoded as Telegram voice notes (with
          `--half tune`, the tuning half's notes in the same noise: a twin to tune on).

The evaluation clips are split in two halves by a hash of the file name (`half()`):
thresholds and settings are tuned on "tune", and "measure" is only measured. Accuracy is
reported for both, with invented words (after the reference ends) and loops counted.
"""
import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from score import edits, invented, loops, normalize  # noqa: E402


def half(name):
    """'tune' or 'measure': a fixed split of the evaluation clips by a hash of the name."""
    stem = os.path.splitext(os.path.basename(name))[0]
    if stem.startswith("long_tune_"):
        return "tune"  # `--half tune`'s long files, made from the tuning half to tune on
    if stem.startswith("long_"):
        return "measure"  # the long files are made from the measuring half
    for prefix in ("noisy_",):
        stem = stem[len(prefix):] if stem.startswith(prefix) else stem
    return "tune" if int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) % 2 == 0 else "measure"


def room_tone(wavs, seconds, rms_dbfs, out):
    """Room noise cut from the pauses of real recordings (frames under each clip's 30th
    percentile level), joined, looped to `seconds` and set to `rms_dbfs` RMS; a 16 kHz WAV."""
    import numpy as np
    import wave
    pieces = []
    for w in wavs:
        raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", w, "-ac", "1", "-ar",
                              "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
        x = np.frombuffer(raw, dtype="<f4")
        frames = x[: len(x) // 480 * 480].reshape(-1, 480)
        if len(frames) < 10:
            continue
        rms = np.sqrt((frames ** 2).mean(axis=1))
        pieces.append(frames[rms <= np.percentile(rms, 30)].ravel())
    bed = np.concatenate(pieces)
    bed = np.resize(bed, int(seconds * 16000))
    bed *= 10 ** (rms_dbfs / 20) / max(float(np.sqrt((bed ** 2).mean())), 1e-9)
    with wave.open(out, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(bed, -1, 1) * 32767).astype("<i2").tobytes())

FW_SCRIPT = r"""
import json, sys, time
from faster_whisper import WhisperModel
ct2, threads, beam, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
model = WhisperModel(ct2, device="cpu", compute_type="int8", cpu_threads=threads, num_workers=1)
if "--batched" in files:
    # faster-whisper's BatchedInferencePipeline at its defaults (VAD cuts, batch size 8).
    from faster_whisper import BatchedInferencePipeline
    files.remove("--batched")
    model = BatchedInferencePipeline(model=model)
for f in files:
    segments, info = model.transcribe(f, beam_size=beam)
    text = "".join(s.text for s in segments).strip()
    print(json.dumps({"file": f, "text": text}, ensure_ascii=False), flush=True)
"""


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def encode_telegram(src, dst):
    """Re-encode as Telegram sends a voice note: Ogg Opus, mono, 48 kHz, 32 kb/s."""
    sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src, "-ac", "1", "-ar", "48000",
        "-c:a", "libopus", "-b:a", "32k", "-application", "voip", dst])


def to_wav16k(src, dst):
    """The note decoded back to 16 kHz WAV: whisper-cli reads no Opus, so it gets this."""
    sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", src, "-ac", "1", "-ar", "16000",
        "-c:a", "pcm_s16le", dst])


def duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", path], capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def make_corpus(a):
    """Returns {"short": [clip], "long": [clip]}; a clip is a dict with oga, wav, lang, ref, dur."""
    work = os.path.join(a.work, "corpus")
    os.makedirs(work, exist_ok=True)
    rows = []
    manifest = os.path.join(a.eval, "manifest.tsv")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r["language"] in ("ru", "en")]
        rows = [dict(r, src=os.path.join(a.eval, "clips", r["file"])) for r in rows]
    if not rows:
        # No evaluation set here (a bare CI checkout): a committed fixture keeps the smoke run real.
        print("bench: no shared/eval here; using tests/fixtures/goforward.flac", file=sys.stderr)
        rows = [{"file": "goforward.flac", "language": "en", "reference": "go forward ten meters",
                 "src": os.path.join(a.root, "tests", "fixtures", "goforward.flac")}]
    if a.smoke:
        rows = [r for r in rows if r["language"] == "ru"][:1] or rows[:1]
    elif a.clips:
        # An even spread over the manifest (both languages, short and long clips).
        step = max(1, len(rows) / a.clips)
        rows = [rows[int(i * step)] for i in range(min(a.clips, len(rows)))]

    def clip(name, src, lang, ref):
        oga = os.path.join(work, name + ".oga")
        wav = os.path.join(work, name + ".wav")
        if not os.path.exists(oga):
            encode_telegram(src, oga)
        if not os.path.exists(wav):
            to_wav16k(oga, wav)
        return {"name": name, "oga": oga, "wav": wav, "lang": lang, "ref": ref, "dur": duration(oga)}

    short = [clip(os.path.splitext(r["file"])[0], r["src"], r["language"], r["reference"]) for r in rows]
    corpus = {"short": short, "long": [], "noisy": []}
    if a.noisy and not a.smoke:
        # Noise from the tuning half's own pauses; speech from the measuring half.
        tune = [r["src"] for r in rows if half(r["file"]) == "tune"]
        bed = os.path.join(work, "room_tone.wav")
        if not os.path.exists(bed):
            room_tone(tune, 60, a.noise_dbfs, bed)
        # `--half tune` makes the tuning half's twin of the set instead (same bed, same
        # rule), to tune on: the noisy set reported is never tuned on.
        speech_half = "tune" if a.half == "tune" else "measure"
        for r in rows:
            if half(r["file"]) != speech_half:
                continue
            name = "noisy_" + os.path.splitext(r["file"])[0]
            h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
            before, after = 3 + h % 4, 3 + (h // 4) % 4  # 3-6 s each, fixed per clip
            noisy_wav = os.path.join(work, name + "_src.wav")
            if not os.path.exists(noisy_wav):
                sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", r["src"], "-i", bed,
                    "-filter_complex",
                    f"[0:a]aresample=16000,aformat=channel_layouts=mono,adelay={before * 1000},"
                    f"apad=pad_dur={after}[s];[s][1:a]amix=inputs=2:duration=first:normalize=0",
                    "-ac", "1", "-ar", "16000", noisy_wav])
            corpus["noisy"].append(clip(name, noisy_wav, r["language"], r["reference"]))
    if not a.smoke and not a.no_long:
        # Long Russian recordings from the measuring half's Russian clips only (the piece
        # length was tuned on the tuning half's), read one after another as often as needed,
        # with natural pauses between them: 0.5-2.4 s, fixed by position.
        ru = [r for r in rows if r["language"] == "ru"] or rows
        if os.path.exists(manifest):
            with open(manifest, encoding="utf-8") as f:
                ru = [dict(r, src=os.path.join(a.eval, "clips", r["file"]))
                      for r in csv.DictReader(f, delimiter="\t") if r["language"] == "ru"]
        # `--half tune` makes them from the tuning half instead, to tune on.
        long_half = "tune" if a.half == "tune" else "measure"
        ru = [r for r in ru if half(r["file"]) == long_half] or ru
        for seconds in sorted(float(s) for s in str(a.long_seconds).split(",")):
            listing, refs, total, parts, k = os.path.join(work, "long.txt"), [], 0.0, [], 0
            while total < seconds:
                for r in ru:
                    wav = os.path.join(work, "long_" + os.path.splitext(r["file"])[0] + ".wav")
                    if not os.path.exists(wav):
                        sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", r["src"], "-ac", "1",
                            "-ar", "16000", "-c:a", "pcm_s16le", wav])
                    g = 0.5 + int(hashlib.sha1(str(k).encode()).hexdigest()[:4], 16) % 20 / 10
                    gap = os.path.join(work, f"gap_{g:.1f}.wav")
                    if not os.path.exists(gap):
                        sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            "anullsrc=r=16000:cl=mono", "-t", f"{g:.1f}", "-c:a", "pcm_s16le", gap])
                    parts += [wav, gap]
                    refs.append(r["reference"])
                    total += float(r["duration_s"]) + g
                    k += 1
                    if total >= seconds:
                        break
            with open(listing, "w") as f:
                f.writelines(f"file '{p}'\n" for p in parts)
            name = ("long_tune_ru_%dmin" if long_half == "tune" else "long_ru_%dmin") % round(total / 60)
            joined = os.path.join(work, name + "_src.wav")
            if not os.path.exists(joined):
                sh(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", listing, "-c:a", "pcm_s16le", joined])
            with open(os.path.join(work, name + ".ref.txt"), "w", encoding="utf-8") as f:
                f.write(" ".join(refs))  # for scoring other runs of the same file
            corpus["long"].append(clip(name, joined, "ru", " ".join(refs)))
    return corpus


# ---- systems ------------------------------------------------------------------------------------

def run_timed(cmd, cwd=None):
    """Run one process under /usr/bin/time -v: (stdout, wall seconds, peak RSS MB)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.stdout, wall, int(m.group(1)) / 1024 if m else float("nan")


class Earshot:
    """earshot transcribe with the run's model, threads and beam, unless `defaults`: then its
    own defaults (the 8-bit model of the same size, greedy with the guard, its own jobs ×
    threads rule for the cores it has), which is what a user gets."""

    def __init__(self, a, label, extra, defaults=False, binary=None):
        self.a, self.label, self.extra, self.defaults = a, label, extra, defaults
        self.binary = binary or a.earshot

    def run(self, clips, beam):
        a = self.a
        if self.defaults:
            opts = {"--model": os.path.join(a.models_dir, f"ggml-{a.model}-q8_0.bin")}
        else:
            opts = {"--model": a.model_path, "--threads": str(a.threads), "--beam-size": str(beam)}
        extra = list(self.extra) + a.earshot_args.split()
        for flag in list(opts):
            if flag in extra:  # a variant's own value wins
                i = extra.index(flag)
                opts[flag] = extra[i + 1]
                del extra[i:i + 2]
        cmd = [self.binary, "transcribe", "-f", "json", "--quiet"]
        for k, v in opts.items():
            cmd += [k, v]
        cmd += extra + [c["oga"] for c in clips]
        out, wall, rss = run_timed(cmd)
        texts = {}
        for line in out.splitlines():
            if line.strip():
                r = json.loads(line)
                # One input prints its transcript alone, without a "file" key.
                texts[r.get("file", clips[0]["oga"])] = r.get("text", "")
        return [texts.get(c["oga"], "") for c in clips], wall, rss


class WhisperCli:
    label = "whisper-cli"

    def __init__(self, a):
        self.a = a

    def run(self, clips, beam):
        a = self.a
        cmd = [a.whisper_cli, "-m", a.model_path, "-t", str(a.threads), "-bs", str(beam), "-bo", "5",
               "-l", "auto", "-nt", "-np", "-otxt", "-sns"]
        if not a.flash_attn:
            cmd.append("-nfa")
        for c in clips:
            cmd += ["-f", c["wav"]]
        for c in clips:
            if os.path.exists(c["wav"] + ".txt"):
                os.remove(c["wav"] + ".txt")
        _, wall, rss = run_timed(cmd)
        texts = []
        for c in clips:
            with open(c["wav"] + ".txt", encoding="utf-8") as f:
                texts.append(" ".join(f.read().split()))
        return texts, wall, rss


class FasterWhisper:
    label = "faster-whisper int8"

    def __init__(self, a, batched=False):
        self.a, self.batched = a, batched
        if batched:
            self.label = "faster-whisper int8 batched"
        self.script = os.path.join(a.work, "fw_bench.py")
        with open(self.script, "w") as f:
            f.write(FW_SCRIPT)

    def run(self, clips, beam):
        a = self.a
        cmd = [a.fw_python, self.script, a.ct2, str(a.threads), str(beam)] + [c["oga"] for c in clips]
        if self.batched:
            cmd.append("--batched")
        out, wall, rss = run_timed(cmd)
        texts = {}
        for line in out.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                texts[r["file"]] = r["text"]
        return [texts.get(c["oga"], "") for c in clips], wall, rss


# ---- scoring and the table ----------------------------------------------------------------------

def score(clips, texts):
    """Corpus CER (ru) and WER (en) per half, invented words and loops, as a string."""
    t = {}
    inv = lp = 0
    for c, h in zip(clips, texts):
        g = normalize(c["ref"], c["lang"])
        h = normalize(h, c["lang"], g)
        s = t.setdefault((half(c["name"]), c["lang"]), [0, 0, 0, 0])
        s[0] += edits(h.split(), g.split())
        s[1] += len(g.split())
        s[2] += edits(h.replace(" ", ""), g.replace(" ", ""))
        s[3] += len(g.replace(" ", ""))
        inv += invented(h.split(), g.split())
        lp += loops(h.split())
    out = []
    for part in ("tune", "measure"):
        acc = []
        if (part, "ru") in t:
            x = t[(part, "ru")]
            acc.append("CER ru %.1f%%" % (100 * x[2] / max(1, x[3])))
        if (part, "en") in t:
            x = t[(part, "en")]
            acc.append("WER en %.1f%%" % (100 * x[0] / max(1, x[1])))
        if acc:
            out.append(f"{part}: " + ", ".join(acc))
    out.append(f"invented {inv}, loops {lp}")
    return "; ".join(out)


def per_clip(rows_by_system, clips):
    """Markdown: the clips where the systems' texts differ, each system's error on each."""
    lines = ["| clip | half | " + " | ".join(rows_by_system) + " |",
             "|---|---|" + "---|" * len(rows_by_system)]
    for i, c in enumerate(clips):
        g = normalize(c["ref"], c["lang"])
        hs = [normalize(texts[i], c["lang"], g) for texts in rows_by_system.values()]
        if len(set(hs)) == 1:
            continue
        cells = []
        for h in hs:
            if c["lang"] == "ru":
                e = edits(h.replace(" ", ""), g.replace(" ", "")) / max(1, len(g.replace(" ", "")))
            else:
                e = edits(h.split(), g.split()) / max(1, len(g.split()))
            cells.append(f"{100 * e:.0f}%: {h[:60]}")
        lines.append(f"| {c['name']} | {half(c['name'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bench(systems, clips, beam, rounds, what, work):
    """Alternate the systems for `rounds` rounds; the median of each system's walls."""
    runs = {s.label: [] for s in systems}
    for r in range(rounds):
        for s in systems:
            if what == "cold":
                walls, rsss, texts = [], [], []
                for c in clips:
                    tx, w, m = s.run([c], beam)
                    walls.append(w)
                    rsss.append(m)
                    texts += tx
                runs[s.label].append((texts, sum(walls), max(rsss), statistics.median(walls)))
            else:
                texts, wall, rss = s.run(clips, beam)
                runs[s.label].append((texts, wall, rss, None))
            print(f"bench: {what} beam {beam} round {r + 1}/{rounds} {s.label}: "
                  f"{runs[s.label][-1][1]:.1f} s", file=sys.stderr, flush=True)
    audio = sum(c["dur"] for c in clips)
    rows = []
    for s in systems:
        rs = runs[s.label]
        wall = statistics.median(x[1] for x in rs)
        rss = max(x[2] for x in rs)
        per_note = statistics.median(x[3] for x in rs) if what == "cold" else None
        # Accuracy from the last round (every round decodes the same way; fallbacks may differ).
        rows.append({"system": s.label, "what": what, "beam": beam, "audio": audio, "wall": wall,
                     "xrt": audio / wall, "rss": rss, "acc": score(clips, rs[-1][0]),
                     "per_note": per_note, "walls": [round(x[1], 2) for x in rs],
                     "texts": rs[-1][0], "clips": [c["oga"] for c in clips]})
    if what in ("short", "noisy"):
        diffs = per_clip({s.label: runs[s.label][-1][0] for s in systems}, clips)
        with open(os.path.join(work, f"per_clip_{what}_beam{beam}.md"), "w") as f:
            f.write(diffs)
    return rows


def table(rows, a):
    head = ("| run | system | settings | audio s | wall s (median) | × real time | peak RSS MB | accuracy |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        run = {"short": f"short notes ×{a.n_short}, warm",
               "cold": f"one note per process ×{a.n_cold}",
               "long": f"one {r['audio'] / 60:.0f} min file",
               "noisy": f"noisy notes ×{a.n_noisy}, warm"}[r["what"]]
        settings = ("greedy" if r["beam"] == 1 else f"beam {r['beam']}") + f", {a.threads} threads"
        if r["system"].startswith("earshot defaults"):
            decoding = "beam 5" if "beam 5" in r["system"] else "greedy + guard"
            settings = f"its defaults ({a.model}-q8_0, {decoding}, {os.cpu_count()} cores)"
        wall = f"{r['wall']:.1f}"
        if r["per_note"] is not None:
            wall += f" ({r['per_note']:.2f}/note)"
        lines.append(f"| {run} | {r['system']} | {settings} | {r['audio']:.0f} | {wall} | "
                     f"{r['xrt']:.1f}× | {r['rss']:.0f} | {r['acc']} |")
    return head + "\n".join(lines) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    p = argparse.ArgumentParser()
    p.add_argument("--earshot", required=True)
    p.add_argument("--whisper-cli", required=True)
    p.add_argument("--fw-python", required=True)
    p.add_argument("--model", default="base")
    p.add_argument("--models-dir", default=os.path.join(root, "models"))
    p.add_argument("--ct2", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--long-rounds", type=int, default=None)
    p.add_argument("--clips", type=int, default=0, help="use this many short clips (0: all)")
    p.add_argument("--cold-clips", type=int, default=3)
    p.add_argument("--long-seconds", default="60,600,3600",
                   help="lengths of the long files, comma-separated seconds")
    p.add_argument("--full", action="store_true", help="also beam 5 for every system")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--no-long", action="store_true")
    p.add_argument("--no-cold", action="store_true")
    p.add_argument("--noisy", action="store_true",
                   help="also the noisy set (measuring half; with --half tune, its tuning twin)")
    p.add_argument("--noise-dbfs", type=float, default=-40.0, help="room noise RMS, dBFS")
    p.add_argument("--half", choices=["tune", "measure", "all"], default="all",
                   help="short notes of one half only")
    p.add_argument("--systems", default="",
                   help="comma list: only the systems whose label contains one of these")
    p.add_argument("--flash-attn", action="store_true", help="whisper-cli with flash attention")
    p.add_argument("--earshot-args", default="",
                   help="more arguments for every earshot run (an A/B of one setting)")
    p.add_argument("--levers", action="store_true", help="earshot variants only (the levers)")
    p.add_argument("--earshot-native", metavar="BINARY",
                   help="the CPU variants: also a native build (GGML_NATIVE=ON) at its defaults, "
                        "and --earshot at its defaults with --cpu-kernels avx2 (what a CPU "
                        "without AVX-512 gets)")
    p.add_argument("--rescore", metavar="JSON",
                   help="score the texts of an earlier run's results.json again (no runs)")
    p.add_argument("--eval", default=os.path.join(root, "..", "shared", "eval"))
    p.add_argument("--work", default=os.path.join(root, "target", "bench"))
    p.add_argument("--out", default=os.path.join(root, "target", "bench", "results.md"))
    a = p.parse_args()
    a.root = root
    a.model_path = os.path.join(a.models_dir, f"ggml-{a.model}.bin")
    if a.smoke:
        a.rounds, a.no_long, a.cold_clips = 1, True, 1
    os.makedirs(a.work, exist_ok=True)
    if not shutil.which("/usr/bin/time"):
        sys.exit("bench: /usr/bin/time is missing (Debian package 'time')")

    corpus = make_corpus(a)
    short = [c for c in corpus["short"] if a.half == "all" or half(c["name"]) == a.half]
    a.n_short, a.n_cold = len(short), min(a.cold_clips, len(short))
    a.n_noisy = len(corpus["noisy"])
    beams = [1, 5] if a.full else [1]
    rows = []
    if a.rescore:
        # The scorer changed since a run: score the texts it kept again, nothing is run.
        with open(a.rescore) as f:
            rows = json.load(f)
        every = {c["oga"]: c for cs in corpus.values() for c in cs}
        by_len = {"short": corpus["short"], "noisy": corpus["noisy"], "long": corpus["long"]}
        for r in rows:
            clips = by_len.get(r["what"], [])
            if "clips" in r:
                # Runs since 2026-11-28 name their clips: no guessing from the order.
                missing = [o for o in r["clips"] if o not in every]
                if missing:
                    sys.exit(f"bench: --rescore: {len(missing)} clips of the run are not in "
                             f"the corpus now, e.g. {missing[0]}")
                clips = [every[o] for o in r["clips"]]
            elif r["what"] == "cold":
                clips = corpus["short"][:len(r["texts"])]
            elif r["what"] == "long":
                clips = [c for c in corpus["long"] if abs(c["dur"] - r["audio"]) < 1]
            elif len(clips) != len(r["texts"]):
                clips = [c for c in clips if half(c["name"]) == a.half][:len(r["texts"])]
            assert len(clips) == len(r["texts"]) and all(c["oga"] in every for c in clips)
            r["acc"] = score(clips, r["texts"])
        a.out = a.rescore.replace(".json", "_rescored.md")
    elif a.levers:
        variants = [
            ("earshot, full context", ["--audio-ctx", "full", "--keep-silence"]),
            ("earshot, auto context", ["--keep-silence"]),
            ("earshot, auto context, silence trimmed", []),
            ("earshot, auto, flash attention", ["--flash-attn", "on"]),
            ("earshot, auto, q8_0", ["--model", os.path.join(a.models_dir, f"ggml-{a.model}-q8_0.bin")]),
            ("earshot, auto, q5_0", ["--model", os.path.join(a.models_dir, f"ggml-{a.model}-q5_0.bin")]),
            ("earshot, auto, no fallback", ["--no-fallback"]),
            ("earshot, auto, 2 jobs × 1 thread", ["--jobs", "2", "--threads", "1"]),
        ]
        systems = [Earshot(a, label, extra) for label, extra in variants] + [
            Earshot(a, "earshot defaults", [], defaults=True),
            Earshot(a, "earshot defaults, --jobs 1", ["--jobs", "1"], defaults=True),
        ]
        for beam in beams:
            rows += bench(systems, short, beam, a.rounds, "short", a.work)
    else:
        systems = [Earshot(a, "earshot defaults", [], defaults=True),
                   Earshot(a, "earshot defaults, beam 5", ["--beam-size", "5"], defaults=True),
                   Earshot(a, "earshot f16", []),
                   Earshot(a, "earshot f16, full context", ["--audio-ctx", "full", "--keep-silence"]),
                   WhisperCli(a), FasterWhisper(a)]
        if a.earshot_native:
            systems[1:1] = [
                Earshot(a, "earshot defaults (native build)", [], defaults=True, binary=a.earshot_native),
                Earshot(a, "earshot defaults (AVX2 only)", ["--cpu-kernels", "avx2"], defaults=True),
            ]
        if a.systems:
            want = [w.strip() for w in a.systems.split(",") if w.strip()]
            systems = [s for s in systems if any(w == s.label or (w.endswith("*") and s.label.startswith(w[:-1])) for w in want)]
        for beam in beams:
            rows += bench(systems, short, beam, a.rounds, "short", a.work)
            if not a.no_cold:
                rows += bench(systems, short[:a.n_cold], beam, a.rounds, "cold", a.work)
            if corpus["noisy"]:
                rows += bench(systems, corpus["noisy"], beam, a.rounds, "noisy", a.work)
        if corpus["long"]:
            # Each long file alone, every system at its own defaults (faster-whisper's are
            # beam 5, plain and batched), one process per file: peak RSS is the file's.
            long_systems = [s for s in systems + [FasterWhisper(a, batched=True)]
                            if "full context" not in s.label and "f16" not in s.label
                            and "beam 5" not in s.label and not isinstance(s, WhisperCli)]
            if a.systems:
                long_systems = [s for s in long_systems if any(w == s.label for w in want)]
            for c in corpus["long"]:
                rows += bench(long_systems, [c], 5, a.long_rounds or a.rounds, "long", a.work)
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    md = (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {cpu}; model `{a.model}` "
          f"(f16 GGML for earshot and whisper-cli, the same weights as CTranslate2 int8 for "
          f"faster-whisper); {a.rounds} rounds, systems alternated, medians.\n\n" + table(rows, a))
    with open(a.out, "w") as f:
        f.write(md)
    with open(a.out.replace(".md", ".json"), "w") as f:
        json.dump(rows, f, indent=1, ensure_ascii=False)
    print(f"per-clip differences: {a.work}/per_clip_*.md", file=sys.stderr)
    print(md)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Voice notes whose level changes, and which of their phrases each system keeps (issue #34).

The evaluation clips are read or studio speech at one steady level. Real voice notes are not:
people trail off, turn away, walk towards the phone, bump it, or someone talks behind them.
This script builds such notes from real speech in shared/eval, re-encodes them as Telegram
voice notes, runs the systems over them and says, per phrase, whether it reached the text.

Kinds (each note is two or three clips of one half, one language, with pauses between):
  soft_end     the last phrase 8-20 dB under the first (trailing off, the phone moved away)
  soft_start   the first phrase 8-20 dB under the second (the speaker comes closer)
  soft_mid     three phrases, the middle one 8-20 dB under the others
  transient    two phrases at one level, and a click, knock, door or cough (50 ms-1 s, peak
               -3 to -10 dBFS) before them, between them or after them
  second_voice two phrases, and another recording 14-24 dB under them (a TV, a person across
               the room); its words are not the speaker's

A phrase is lost when under half of its words appear in the text (the issue's rule). A lost
phrase of 1 s or more must be flagged `skipped_speech` by earshot. "extra" counts words
written that are no phrase's (insertions against the note's reference): murmur or the
second voice written as words.

The clips are split by `bench.half()`: tune on `--half tune`, report `--half measure`.

    bench/levelset.py --half measure --earshot target/release/earshot \\
        [--fw-python target/bench/venv/bin/python --ct2 target/bench/ct2-base] [--out DIR]
"""
import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import FW_SCRIPT, encode_telegram, half  # noqa: E402
from score import insertions, normalize  # noqa: E402

RATE = 16000
KINDS = ("soft_end", "soft_start", "soft_mid", "transient", "second_voice")
# The speaker's level (the loud frames, as earshot's Level measures a note) before the change.
SPEAKER_DBFS = -20.0
# A quiet phone line's floor under everything.
FLOOR_DBFS = -62.0


def rng_for(*key):
    h = hashlib.sha1("/".join(map(str, key)).encode()).hexdigest()
    return np.random.default_rng(int(h[:12], 16))


def load(path):
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-ac", "1", "-ar",
                          str(RATE), "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


def speech_dbfs(x):
    """The 95th percentile of 30 ms frame RMS, in dBFS (earshot's `Level::speech_dbfs`)."""
    n = len(x) // 480 * 480
    if n == 0:
        return -120.0
    rms = np.sqrt((x[:n].reshape(-1, 480) ** 2).mean(axis=1))
    return 20 * np.log10(max(float(np.percentile(rms, 95)), 1e-6))


def at_level(x, dbfs):
    return x * 10 ** ((dbfs - speech_dbfs(x)) / 20)


def silence(seconds):
    return np.zeros(int(seconds * RATE))


def transient(r):
    """A click, knock, door or cough: (name, samples) with its peak at -3 to -10 dBFS."""
    kind = ["click", "knock", "door", "cough"][r.integers(4)]
    if kind == "click":
        n = int(0.05 * RATE)
        t = np.arange(n) / RATE
        x = np.zeros(n)
        for at in r.uniform(0, 0.03, size=3):
            k = t >= at
            x[k] += np.exp(-(t[k] - at) / 0.002) * r.choice([-1, 1])
        x += r.normal(0, 0.05, n) * np.exp(-t / 0.01)
    elif kind == "knock":
        n = int(r.uniform(0.12, 0.3) * RATE)
        t = np.arange(n) / RATE
        f = r.uniform(70, 160)
        x = np.sin(2 * np.pi * f * t) * np.exp(-t / 0.04) + r.normal(0, 0.3, n) * np.exp(-t / 0.008)
    elif kind == "door":
        n = int(r.uniform(0.6, 1.0) * RATE)
        t = np.arange(n) / RATE
        noise = np.convolve(r.normal(0, 1, n), np.ones(8) / 8, mode="same")
        x = np.sin(2 * np.pi * 55 * t) * np.exp(-t / 0.08) + 0.6 * noise * np.exp(-t / 0.25)
    else:  # cough: a noise burst shaped like a voiced release
        n = int(r.uniform(0.25, 0.45) * RATE)
        t = np.arange(n) / RATE
        noise = r.normal(0, 1, n)
        noise = np.convolve(noise, np.hanning(9), mode="same") - np.convolve(noise, np.hanning(61) / 30, mode="same")
        env = np.minimum(t / 0.02, 1) * np.exp(-t / 0.12)
        x = noise * env * (1 + 0.5 * np.sin(2 * np.pi * r.uniform(110, 220) * t))
    peak_db = r.uniform(-10, -3)
    return kind, x / max(np.abs(x).max(), 1e-9) * 10 ** (peak_db / 20)


def build(a, which):
    """The notes of one half: a list of dicts (file, kind, lang, phrases, detail)."""
    work = os.path.join(a.out, which)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(a.eval, "manifest.tsv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t")
                if r["language"] in ("ru", "en") and half(r["file"]) == which]
    audio = {r["file"]: load(os.path.join(a.eval, "clips", r["file"])) for r in rows}
    by_lang = {l: [r for r in rows if r["language"] == l] for l in ("ru", "en")}
    notes = []
    for kind in KINDS:
        for i in range(a.per_kind):
            r = rng_for(which, kind, i)
            lang = "ru" if i % 3 != 2 else "en"  # most notes are Russian
            pool = by_lang[lang]
            n_phrases = 3 if kind == "soft_mid" else 2
            # Clips of this language, none twice, short enough for one note of under a minute.
            picks = [pool[k] for k in r.permutation(len(pool))[:n_phrases]]
            drop = float(r.uniform(8, 20))
            speaker = SPEAKER_DBFS + float(r.uniform(-4, 4))
            levels = [speaker] * n_phrases
            affected = []
            if kind == "soft_end":
                levels[-1] -= drop
                affected = [n_phrases - 1]
            elif kind == "soft_start":
                levels[0] -= drop
                affected = [0]
            elif kind == "soft_mid":
                levels[1] -= drop
                affected = [1]
            parts, phrases, t = [silence(r.uniform(0.3, 1.0))], [], 0.0
            t = len(parts[0]) / RATE
            bump = None
            if kind == "transient":
                bump = transient(r)
                where = ["before", "between", "after"][i % 3]
                affected = [0, 1]
            for k, (clip, lvl) in enumerate(zip(picks, levels)):
                if bump and k == 0 and where == "before":
                    parts += [bump[1], silence(r.uniform(0.2, 0.6))]
                    t += (len(bump[1]) + len(parts[-1])) / RATE
                x = at_level(audio[clip["file"]], lvl)
                phrases.append({"ref": clip["reference"], "start": t, "end": t + len(x) / RATE,
                                "db": round(lvl - speaker, 1), "affected": k in affected})
                parts.append(x)
                t += len(x) / RATE
                if k + 1 < n_phrases:
                    gap = r.uniform(0.6, 1.5)
                    if bump and where == "between":
                        pre = silence(r.uniform(0.2, 0.5))
                        parts += [pre, bump[1], silence(gap)]
                        t += (len(pre) + len(bump[1])) / RATE + gap
                    else:
                        parts.append(silence(gap))
                        t += gap
            if bump and where == "after":
                parts += [silence(r.uniform(0.2, 0.6)), bump[1]]
            parts.append(silence(r.uniform(0.3, 1.0)))
            x = np.concatenate(parts)
            detail = ""
            if kind == "second_voice":
                others = [o for o in rows if o["file"] not in {p["file"] for p in picks}]
                other = others[r.integers(len(others))]
                under = float(r.uniform(14, 24))
                bed = np.resize(audio[other["file"]], len(x))
                x = x + at_level(bed, speaker - under)
                detail = f"{other['file']} {under:.0f} dB under"
                affected = [0, 1]
                for p in phrases:
                    p["affected"] = True
            elif kind == "transient":
                detail = f"{bump[0]} {where}, peak {20 * np.log10(np.abs(bump[1]).max()):.0f} dBFS"
            else:
                detail = f"{drop:.0f} dB softer"
            x = x + r.normal(0, 10 ** (FLOOR_DBFS / 20), len(x))
            name = f"lv_{which}_{kind}_{i:02d}"
            wav = os.path.join(work, name + ".wav")
            oga = os.path.join(work, name + ".oga")
            if not os.path.exists(oga):
                import wave
                with wave.open(wav, "wb") as f:
                    f.setnchannels(1)
                    f.setsampwidth(2)
                    f.setframerate(RATE)
                    f.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
                encode_telegram(wav, oga)
                os.remove(wav)
            notes.append({"file": oga, "name": name, "kind": kind, "lang": lang,
                          "phrases": phrases, "detail": detail})
    return notes


def run_earshot(a, notes, extra):
    cmd = [a.earshot, "transcribe", "-f", "verbose_json", "--quiet"] + extra + [n["file"] for n in notes]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"levelset: earshot failed:\n{out.stderr[-3000:]}")
    res = {}
    for line in out.stdout.splitlines():
        if line.strip():
            j = json.loads(line)
            res[j.get("file", notes[0]["file"])] = j
    return res, wall


def run_fw(a, notes, beam):
    script = os.path.join(a.out, "fw_levelset.py")
    with open(script, "w") as f:
        f.write(FW_SCRIPT)
    cmd = [a.fw_python, script, a.ct2, str(a.threads), str(beam)] + [n["file"] for n in notes]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"levelset: faster-whisper failed:\n{out.stderr[-3000:]}")
    res = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            res[j["file"]] = {"text": j["text"]}
    return res, wall


def kept(phrase_words, hyp_words):
    """How many of a phrase's words the text has (each text word used once)."""
    pool = {}
    for w in hyp_words:
        pool[w] = pool.get(w, 0) + 1
    n = 0
    for w in phrase_words:
        if pool.get(w, 0) > 0:
            pool[w] -= 1
            n += 1
    return n


def judge(note, result):
    """Per note: the affected phrases lost, the seconds of them lost, whether it was flagged
    (and why), and the extra words."""
    lang = note["lang"]
    ref = normalize(" ".join(p["ref"] for p in note["phrases"]), lang)
    hyp = normalize(result.get("text", ""), lang, ref).split()
    lost, lost_s = [], 0.0
    for k, p in enumerate(note["phrases"]):
        words = normalize(p["ref"], lang).split()
        if p["affected"] and kept(words, hyp) * 2 < len(words):
            lost.append(k)
            lost_s += p["end"] - p["start"]
    review = result.get("review") or {}
    reasons = review.get("reasons", [])
    extra = insertions(hyp, ref.split())
    return {"lost": lost, "lost_s": lost_s, "flagged": bool(review.get("needed")),
            "skipped": "skipped_speech" in reasons, "reasons": reasons, "extra": extra,
            "text": result.get("text", "")}


def report(notes, systems):
    """Markdown: per kind and system, affected phrases kept, notes flagged, extra words."""
    lines = ["| kind | notes | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    totals = {s: [0, 0, 0, 0, 0] for s in systems}
    for kind in KINDS + ("all",):
        ks = [n for n in notes if kind in ("all", n["kind"])]
        cells = []
        for s, judged in systems.items():
            aff = sum(sum(p["affected"] for p in n["phrases"]) for n in ks)
            lost = sum(len(judged[n["name"]]["lost"]) for n in ks)
            notes_lost = sum(bool(judged[n["name"]]["lost"]) for n in ks)
            unflagged = sum(1 for n in ks if judged[n["name"]]["lost_s"] >= 1.0
                            and not judged[n["name"]]["skipped"])
            flagged = sum(judged[n["name"]]["flagged"] for n in ks)
            extra = sum(judged[n["name"]]["extra"] for n in ks)
            cell = (f"kept {aff - lost}/{aff} phrases; notes intact {len(ks) - notes_lost}/{len(ks)}"
                    f" ({100 * (len(ks) - notes_lost) / max(1, len(ks)):.0f}%); extra words {extra}")
            if s.startswith("earshot"):
                cell += f"; flagged {flagged}; lost ≥1 s unflagged {unflagged}"
            cells.append(cell)
        lines.append(f"| {kind} | {len(ks)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--half", choices=["tune", "measure"], required=True)
    p.add_argument("--per-kind", type=int, default=12)
    p.add_argument("--earshot", default=os.path.join(root, "target", "release", "earshot"))
    p.add_argument("--earshot-args", default="", help="extra arguments for earshot transcribe")
    p.add_argument("--label", default="earshot defaults")
    p.add_argument("--fw-python", help="a python with faster-whisper (bench/bench.sh makes one)")
    p.add_argument("--ct2", help="the CTranslate2 model for faster-whisper")
    p.add_argument("--fw-beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", default=os.path.join(root, "..", "shared", "eval"))
    p.add_argument("--out", default=os.path.join(root, "target", "levelset"))
    p.add_argument("--list", action="store_true", help="print each note's texts and verdicts")
    p.add_argument("--make-only", action="store_true", help="make the notes, run nothing")
    a = p.parse_args()
    notes = build(a, a.half)
    if a.make_only:
        print(f"levelset: {len(notes)} notes in {os.path.join(a.out, a.half)}")
        return
    systems, walls = {}, {}
    res, walls[a.label] = run_earshot(a, notes, a.earshot_args.split())
    systems[a.label] = {n["name"]: judge(n, res.get(n["file"], {})) for n in notes}
    if a.fw_python and a.ct2:
        label = f"faster-whisper beam {a.fw_beam}"
        res, walls[label] = run_fw(a, notes, a.fw_beam)
        systems[label] = {n["name"]: judge(n, res.get(n["file"], {})) for n in notes}
    md = (f"Level-change notes, {a.half} half: {len(notes)} notes, "
          + ", ".join(f"{s} {w:.1f} s" for s, w in walls.items()) + "\n\n" + report(notes, systems))
    with open(os.path.join(a.out, f"results_{a.half}.json"), "w") as f:
        json.dump({"notes": notes, "systems": systems}, f, ensure_ascii=False, indent=1)
    if a.list:
        for n in notes:
            print(f"{n['name']} ({n['detail']}; phrases at "
                  + ", ".join(f"{p['start']:.1f}-{p['end']:.1f}s {p['db']:+.0f} dB" for p in n["phrases"]) + ")")
            for s, judged in systems.items():
                j = judged[n["name"]]
                print(f"   {s}: lost {j['lost']} flagged {j['reasons']} extra {j['extra']}: {j['text'][:160]}")
    print(md)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How well the review verdict points at the notes whose text is wrong (issue #18).

    python3 bench/review_eval.py --earshot target/release/earshot [--model base-q8_0]

Makes four versions of every evaluation clip (shared/eval), each re-encoded as a Telegram
voice note:
  clean   the clip as recorded;
  noisy   room noise (the tuning half's own pauses, raised to -40 dBFS RMS) under the
          speech and for 3 s before and after it;
  quiet   lowered to a peak of -50 dBFS over faint room noise (-90 dBFS RMS);
  far     far-field: band-limited to a phone's 300-3400 Hz, with a room's echo, lowered to
          a peak of -42 dBFS, over room noise at -75 dBFS RMS.
Runs `earshot transcribe -f verbose_json` over them, scores each note (CER, numbers spelled
out), and counts, per half of the clips (bench.py's `half()`): of the notes with CER over
15% ("bad"), how many are flagged `review.needed` (recall), and how many flagged notes are
bad (precision). Thresholds for `low_confidence` and `language_uncertain` are chosen on the
tuning half (highest recall with precision at least 0.8, else the best F1) and reported on
the measuring half, next to the shipped ones ("before"). Writes target/bench/review.md.
"""
import argparse
import csv
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import encode_telegram, half, room_tone  # noqa: E402
from score import edits, normalize  # noqa: E402

BAD_CER = 0.15
# The first guesses ("before"); engine::review ships what `choose` picked ("after").
SHIPPED = {"confidence": 0.6, "language": 0.7}
FIXED = {"quiet_audio", "no_speech", "speech_but_no_text", "suspect_text", "truncated",
         "damaged_audio", "repeated_text", "too_much_text", "skipped_speech"}
# The reasons about the text (the ones about the audio, quiet_audio and truncated, are true of
# a note however well it was transcribed).
TEXT_FIXED = {"no_speech", "speech_but_no_text", "suspect_text", "repeated_text", "too_much_text",
              "skipped_speech"}


def sh(cmd):
    subprocess.run(cmd, check=True)


def read16k(path, filt=None):
    import numpy as np
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path]
    if filt:
        cmd += ["-af", filt]
    raw = subprocess.run(cmd + ["-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<f4").copy()


def write16k(x, path):
    import numpy as np
    import wave
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


# variant: (ffmpeg filter before leveling, speech peak dBFS, noise RMS dBFS, seconds of noise
# before and after)
VARIANTS = {
    "clean": None,
    "noisy": (None, None, -40.0, 3),
    "quiet": (None, -50.0, -90.0, 0),
    "far": ("highpass=f=300,lowpass=f=3400,aecho=0.8:0.6:40|70:0.35|0.2", -42.0, -75.0, 0),
}


def variants(rows, work, bed):
    """{variant: [(path, row)]}, made once and kept under `work`."""
    import numpy as np
    noise = read16k(bed)
    noise /= max(float(np.sqrt((noise ** 2).mean())), 1e-9)
    out = {}
    for v, spec in VARIANTS.items():
        d = os.path.join(work, v)
        os.makedirs(d, exist_ok=True)
        out[v] = []
        for r in rows:
            stem = os.path.splitext(r["file"])[0]
            oga = os.path.join(d, stem + ".oga")
            if not os.path.exists(oga):
                if spec is None:
                    encode_telegram(r["src"], oga)
                else:
                    filt, peak, noise_db, pad = spec
                    x = read16k(r["src"], filt)
                    if peak is not None:
                        x *= 10 ** (peak / 20) / max(float(np.abs(x).max()), 1e-9)
                    x = np.concatenate([np.zeros(pad * 16000), x, np.zeros(pad * 16000)])
                    x += np.resize(noise, len(x)) * 10 ** (noise_db / 20)
                    wav = os.path.join(d, stem + ".wav")
                    write16k(x, wav)
                    encode_telegram(wav, oga)
                    os.remove(wav)
            out[v].append((oga, r))
    return out


def flagged(rec, th, fixed=FIXED):
    rv = rec["review"]
    if fixed & set(rv["reasons"]):
        return True
    conf = rv.get("confidence")
    if conf is not None and conf < th["confidence"]:
        return True
    lp = rec.get("language_probability")
    return lp is not None and lp < th["language"]


def stats(notes, th, fixed=FIXED):
    bad = [n for n in notes if n["cer"] > BAD_CER]
    good = len(notes) - len(bad)
    flag = [n for n in notes if flagged(n["rec"], th, fixed)]
    hit = [n for n in flag if n["cer"] > BAD_CER]
    recall = len(hit) / len(bad) if bad else float("nan")
    precision = len(hit) / len(flag) if flag else float("nan")
    clean_flagged = len([n for n in flag if n["cer"] <= BAD_CER])
    return {"notes": len(notes), "bad": len(bad), "flagged": len(flag), "recall": recall,
            "precision": precision, "clean_flagged": clean_flagged,
            "good_flagged": clean_flagged / good if good else float("nan")}


def choose(notes):
    """On the text reasons: the highest recall that flags at most 1 good note in 5, then the
    fewest flagged."""
    best = None
    for c in [x / 100 for x in range(30, 96, 1)]:
        for lang in (0.5, 0.6, 0.7, 0.8, 0.9):
            th = {"confidence": c, "language": lang}
            s = stats(notes, th, TEXT_FIXED)
            if s["flagged"] == 0:
                continue
            key = (s["good_flagged"] <= 0.2, s["recall"], -s["flagged"])
            if best is None or key > best[0]:
                best = (key, th)
    return best[1] if best else dict(SHIPPED)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    p = argparse.ArgumentParser()
    p.add_argument("--earshot", default=os.path.join(root, "target", "release", "earshot"))
    p.add_argument("--model", default="base-q8_0")
    p.add_argument("--eval", default=os.path.join(root, "..", "shared", "eval"))
    p.add_argument("--work", default=os.path.join(root, "target", "bench", "review"))
    p.add_argument("--rescore", action="store_true",
                   help="score the last run's transcripts again (target/bench/review_raw.json)")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.eval, "manifest.tsv"), encoding="utf-8") as f:
        rows = [dict(r, src=os.path.join(a.eval, "clips", r["file"]))
                for r in csv.DictReader(f, delimiter="\t")]
    bed = os.path.join(a.work, "room_tone.wav")
    if not os.path.exists(bed):
        room_tone([r["src"] for r in rows if half(r["file"]) == "tune"], 60, -40.0, bed)
    notes = []
    raw_path = os.path.join(root, "target", "bench", "review_raw.json")
    cached = {}
    if a.rescore:
        with open(raw_path, encoding="utf-8") as f:
            cached = json.load(f)
    raw = {}
    for v, items in variants(rows, a.work, bed).items():
        recs = {}
        if a.rescore:
            recs = cached[v]
        else:
            out = subprocess.run([a.earshot, "transcribe", "--quiet", "-f", "verbose_json",
                                  "--model", a.model] + [p for p, _ in items],
                                 capture_output=True, text=True, cwd=root)
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    recs[r["file"]] = r
        raw[v] = recs
        for path, r in items:
            rec = recs.get(path)
            if rec is None:
                print(f"review_eval: no result for {path}", file=sys.stderr)
                continue
            lang = r["language"]
            g = normalize(r["reference"], lang)
            h = normalize(rec.get("text", ""), lang, g)
            cer = edits(h.replace(" ", ""), g.replace(" ", "")) / max(1, len(g.replace(" ", "")))
            notes.append({"variant": v, "half": half(r["file"]), "file": r["file"], "cer": cer,
                          "rec": rec, "text": rec.get("text", "")})
    if not a.rescore:
        with open(raw_path, "w", encoding="utf-8") as f:
            json.dump(raw, f, ensure_ascii=False)
    tune = [n for n in notes if n["half"] == "tune"]
    measure = [n for n in notes if n["half"] == "measure"]
    chosen = choose(tune)
    lines = [f"Review verdict, {len(notes)} notes ({len(rows)} clips × clean/noisy/quiet/far), "
             f"model {a.model}; bad = CER over {BAD_CER:.0%}.", "",
             "| half | reasons counted | thresholds | notes | bad | flagged | recall | precision | good notes flagged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, part in (("tune", tune), ("measure", measure)):
        for view, fixed in (("all", FIXED), ("text only", TEXT_FIXED)):
            for label, th in (("before", SHIPPED), ("after", chosen)):
                s = stats(part, th, fixed)
                lines.append(f"| {name} | {view} | {label}: confidence < {th['confidence']:.2f}, "
                             f"language < {th['language']:.2f} | {s['notes']} | {s['bad']} | "
                             f"{s['flagged']} | {s['recall']:.0%} | {s['precision']:.0%} | "
                             f"{s['clean_flagged']} ({s['good_flagged']:.0%}) |")
    lines += ["", "By variant (measuring half, chosen thresholds):", "",
              "| variant | notes | bad | flagged | recall | precision | mean CER | empty |",
              "|---|---|---|---|---|---|---|---|"]
    for v in ("clean", "noisy", "quiet", "far"):
        part = [n for n in measure if n["variant"] == v]
        if not part:
            continue
        s = stats(part, chosen)
        empty = len([n for n in part if not n["text"].strip()])
        lines.append(f"| {v} | {s['notes']} | {s['bad']} | {s['flagged']} | {s['recall']:.0%} | "
                     f"{s['precision']:.0%} | {sum(n['cer'] for n in part) / len(part):.1%} | "
                     f"{empty} |")
    silent = [n for n in notes if not n["text"].strip() and not n["rec"]["review"]["needed"]]
    lines += ["", f"Empty transcripts without review.needed: {len(silent)}."]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(root, "target", "bench", "review.md"), "w") as f:
        f.write(md)
    with open(os.path.join(root, "target", "bench", "review.json"), "w") as f:
        json.dump({"chosen": chosen, "notes": [{k: v for k, v in n.items() if k != "rec"} | {
            "review": n["rec"]["review"], "language_probability":
                n["rec"].get("language_probability")} for n in notes]}, f, ensure_ascii=False,
            indent=1)
    print(md)


if __name__ == "__main__":
    main()

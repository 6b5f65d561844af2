#!/usr/bin/env python3
"""Token by token: where whisper.cpp (earshot) and CTranslate2 (faster-whisper) part ways at
beam 5 on the same weights (issue #12, item 4). Tuning half of the clips only.

    target/bench/venv/bin/python bench/token_compare.py \
        --earshot target/release/earshot --ct2 target/bench/ct2-base

Both sides get the language from the manifest (so detection plays no part), beam 5, the full
30 s window, temperature fallback 0-1 by 0.2, thresholds 2.4 / -1.0 / 0.6, and earshot's
voice-activity step and silence trimming off, so each decodes the whole clip in one window
as faster-whisper does. Three runs per clip:

  ES  earshot on the Telegram .oga (its own decoder and resampler)
  EP  earshot on the samples PyAV decodes and resamples (faster-whisper's decode_audio),
      as a 16 kHz WAV, which earshot passes through unresampled
  FP  faster-whisper on the .oga (PyAV), int8 weights as the bench runs it
  FF  faster-whisper on the .oga, float32 weights

ES vs EP isolates the audio front end (decoder, resampler); FP vs FF the int8 quantization;
EP vs FF then differ only in the runtime: mel, suppression, beam search, timestamp rules
(and f16 against f32 weights). For each pair the script
counts clips with identical text tokens and, where they differ, the first differing token
and what each side wrote there. Writes target/bench/token_compare.md.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import half  # noqa: E402
from score import edits, normalize  # noqa: E402

EOT = 50257  # multilingual vocabulary: text tokens are below it


def write_wav(samples, path):
    import numpy as np
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(pcm)


def earshot(a, path, lang):
    cmd = [a.earshot, "transcribe", "-f", "verbose_json", "--quiet", "--model", a.model,
           "--threads", str(a.threads), "--jobs", "1", "--beam-size", "5", "--audio-ctx", "full",
           "--keep-silence", "--vad-model", "none", "--language", lang, path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    toks = [t for s in r["segments"] for t in s["tokens"] if t < EOT]
    return toks, r["text"]


def faster(model, audio, lang):
    segs, _ = model.transcribe(audio, beam_size=5, language=lang)
    segs = list(segs)
    toks = [t for s in segs for t in s.tokens if t < EOT]
    return toks, "".join(s.text for s in segs).strip()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser()
    p.add_argument("--earshot", default=os.path.join(root, "target", "release", "earshot"))
    p.add_argument("--model", default=os.path.join(root, "models", "ggml-base.bin"))
    p.add_argument("--ct2", default=os.path.join(root, "target", "bench", "ct2-base"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval", default=os.path.join(root, "..", "shared", "eval"))
    p.add_argument("--work", default=os.path.join(root, "target", "bench", "tokens"))
    p.add_argument("--corpus", default=os.path.join(root, "target", "bench", "corpus"))
    p.add_argument("--out", default=os.path.join(root, "target", "bench", "token_compare.md"))
    a = p.parse_args()
    from faster_whisper import WhisperModel, decode_audio
    from faster_whisper.tokenizer import Tokenizer
    os.makedirs(a.work, exist_ok=True)
    model = WhisperModel(a.ct2, device="cpu", compute_type="int8", cpu_threads=a.threads)
    model32 = WhisperModel(a.ct2, device="cpu", compute_type="float32", cpu_threads=a.threads)
    with open(os.path.join(a.eval, "manifest.tsv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["language"] in ("ru", "en")]
    runs = {}
    for r in rows:
        stem = os.path.splitext(r["file"])[0]
        oga = os.path.join(a.corpus, stem + ".oga")
        if half(stem) != "tune" or not os.path.exists(oga):
            continue
        lang = r["language"]
        pyav = decode_audio(oga)  # faster-whisper's own front end, 16 kHz float
        pyav_wav = os.path.join(a.work, stem + "_pyav.wav")
        write_wav(pyav, pyav_wav)
        runs[stem] = {
            "lang": lang, "ref": r["reference"],
            "ES": earshot(a, oga, lang), "EP": earshot(a, pyav_wav, lang),
            "FP": faster(model, oga, lang),
            "FF": faster(model32, oga, lang),
        }
        print(stem, {k: len(v[0]) for k, v in runs[stem].items() if k in ("ES", "EP", "FP", "FF")},
              file=sys.stderr)
    tok = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")

    def err(run, text):
        g = normalize(run["ref"], run["lang"])
        h = normalize(text, run["lang"], g)
        return edits(h.replace(" ", ""), g.replace(" ", "")) / max(1, len(g.replace(" ", "")))

    lines = [f"# Token comparison, beam 5, full window, language given ({len(runs)} tuning clips)", ""]
    for x, y, what in (("ES", "EP", "earshot: its decoder vs PyAV's samples"),
                       ("FP", "FF", "faster-whisper: int8 vs float32 weights"),
                       ("EP", "FF", "same samples (PyAV): whisper.cpp vs CTranslate2 float32"),
                       ("ES", "FP", "as shipped: earshot vs faster-whisper")):
        same = [s for s, r in runs.items() if r[x][0] == r[y][0]]
        lines += [f"## {x} vs {y}: {what}", "",
                  f"identical text tokens: {len(same)} of {len(runs)}", ""]
        diff = [s for s in runs if s not in same]
        if diff:
            lines += ["| clip | first differing token | " + x + " there | " + y + " there | CER " + x
                      + " | CER " + y + " |", "|---|---|---|---|---|---|"]
            for s in diff:
                r = runs[s]
                tx, ty = r[x][0], r[y][0]
                i = next((k for k in range(min(len(tx), len(ty))) if tx[k] != ty[k]), min(len(tx), len(ty)))
                wx = tok.decode(tx[i:i + 4]).replace("|", "/")
                wy = tok.decode(ty[i:i + 4]).replace("|", "/")
                lines.append(f"| {s} | {i} of {len(tx)}/{len(ty)} | {wx!r} | {wy!r} | "
                             f"{100 * err(r, r[x][1]):.1f}% | {100 * err(r, r[y][1]):.1f}% |")
            lines.append("")
    md = "\n".join(lines) + "\n"
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Does a glossary of the names in a note lower its CER? (issue #18, item 6)

    python3 bench/glossary_eval.py [--earshot target/release/earshot] [--half tune]

For every Russian clip of the half (bench.py's `half()`) whose reference names someone or
something (a capitalized word that does not start a sentence), transcribes the clip, as a
Telegram voice note, twice: with the defaults, and with those names as the glossary
(`serve --glossary` gives Whisper "Name, Name." as its initial prompt; the CLI's --prompt
takes the same text). Prints the CER of both, over those clips and on the names alone.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import encode_telegram, half  # noqa: E402
from score import edits, normalize  # noqa: E402


def names(ref):
    out = []
    for sentence in re.split(r"[.!?]\s+|\s-\s", ref):
        words = re.findall(r"[\w-]+", sentence)
        out += [w for w in words[1:] if w[:1].isupper()]
    return list(dict.fromkeys(out))


def run(earshot, oga, prompt, root):
    cmd = [earshot, "transcribe", "--quiet", "-f", "json", "--language", "ru", oga]
    if prompt:
        cmd += ["--prompt", prompt]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True).stdout
    return json.loads(out)["text"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    p = argparse.ArgumentParser()
    p.add_argument("--earshot", default=os.path.join(root, "target", "release", "earshot"))
    p.add_argument("--half", default="tune", choices=["tune", "measure"])
    p.add_argument("--eval", default=os.path.join(root, "..", "shared", "eval"))
    p.add_argument("--work", default=os.path.join(root, "target", "bench", "glossary"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.eval, "manifest.tsv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t")
                if r["language"] == "ru" and half(r["file"]) == a.half and names(r["reference"])]
    tot = {"plain": [0, 0], "glossary": [0, 0]}
    hit = {"plain": 0, "glossary": 0}
    n_names = 0
    for r in rows:
        oga = os.path.join(a.work, os.path.splitext(r["file"])[0] + ".oga")
        if not os.path.exists(oga):
            encode_telegram(os.path.join(a.eval, "clips", r["file"]), oga)
        ns = names(r["reference"])
        n_names += len(ns)
        g = normalize(r["reference"], "ru")
        for kind, prompt in (("plain", None), ("glossary", ", ".join(ns) + ".")):
            h = normalize(run(a.earshot, oga, prompt, root), "ru")
            e = edits(h.replace(" ", ""), g.replace(" ", ""))
            tot[kind][0] += e
            tot[kind][1] += len(g.replace(" ", ""))
            hit[kind] += sum(normalize(n, "ru") in h.split() for n in ns)
            print(f"{r['file']} {kind}: {e} edits: {h[:70]}", file=sys.stderr)
    print(f"{len(rows)} Russian clips of the {a.half} half with {n_names} names:")
    for kind in ("plain", "glossary"):
        print(f"  {kind:8}: CER {100 * tot[kind][0] / max(1, tot[kind][1]):.1f}%, "
              f"names written right {hit[kind]}/{n_names}")


if __name__ == "__main__":
    main()

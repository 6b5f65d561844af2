#!/usr/bin/env python3
"""Score transcripts against the evaluation set's references (corpus-level WER/CER).

    earshot transcribe DIR -f json > out.jsonl
    scripts/score.py out.jsonl [--manifest ../shared/eval/manifest.tsv]

Each JSON line needs "file" and "text"; files are matched to manifest rows by stem.
Normalization follows shared/eval/README.md: NFC, lowercase, punctuation to spaces,
apostrophes removed, ё→е, whitespace collapsed. CER ignores spaces.
"""
import argparse
import csv
import json
import os
import sys
import unicodedata


def normalize(s):
    s = unicodedata.normalize("NFC", s).lower().replace("ё", "е")
    s = "".join(c for c in s if c not in "'’")
    s = "".join(c if c.isalnum() else " " for c in s)
    return " ".join(s.split())


def edits(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a):
        cur = [i + 1]
        for j, y in enumerate(b):
            cur.append(min(prev[j] + (x != y), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("jsonl")
    p.add_argument("--manifest", default=os.path.join(here, "..", "..", "shared", "eval", "manifest.tsv"))
    a = p.parse_args()
    refs = {}
    with open(a.manifest, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            refs[os.path.splitext(row["file"])[0]] = (row["language"], row["reference"])
    totals = {}
    with open(a.jsonl, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            stem = os.path.splitext(os.path.basename(r["file"]))[0]
            if stem not in refs:
                continue
            lang, ref = refs[stem]
            h, g = normalize(r.get("text", "")), normalize(ref)
            t = totals.setdefault(lang, [0, 0, 0, 0, 0])
            t[0] += edits(h.split(), g.split())
            t[1] += len(g.split())
            t[2] += edits(h.replace(" ", ""), g.replace(" ", ""))
            t[3] += len(g.replace(" ", ""))
            t[4] += 1
    for lang, (we, wn, ce, cn, n) in sorted(totals.items()):
        print(f"{lang}: {n} clips, WER {100 * we / max(wn, 1):.1f}%, CER {100 * ce / max(cn, 1):.1f}%")
    if not totals:
        print("no transcripts matched the manifest", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

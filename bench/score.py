#!/usr/bin/env python3
"""Score transcripts against the evaluation set's references (corpus-level WER/CER).

    earshot transcribe DIR -f json > out.jsonl
    bench/score.py out.jsonl [--manifest ../shared/eval/manifest.tsv]

Each JSON line needs "file" and "text"; files are matched to manifest rows by stem.
Normalization follows shared/eval/README.md: NFC, lowercase, punctuation to spaces,
apostrophes removed, ё→е, whitespace collapsed, and numbers spelled out in the clip's
language with num2words (pip install num2words), because Whisper writes "7" and "семь" at
random. CER ignores spaces. Also counted: invented words (hypothesis words after the
reference's last word) and loops (a phrase repeated back to back).
"""
import argparse
import csv
import json
import os
import re
import sys
import unicodedata

try:
    from num2words import num2words
except ImportError:  # scoring still works; digits then count as written
    num2words = None
    print("score: num2words is not installed; digits are not spelled out", file=sys.stderr)


def spell_numbers(s, lang, ref=None):
    """'7 дней' -> 'семь дней' (ru, en; other languages are left as digits).

    A run of digits is read as one number ("29340" -> "twenty-nine thousand ..."), unless
    `ref` (the normalized reference) reads those digits one by one ("two nine three four
    zero"), as people read order and phone numbers: then it is spelled digit by digit.
    Either way the words said are the same; only the writing differs."""
    if num2words is None or lang not in ("ru", "en"):
        return s

    def word(m):
        g = m.group(0)
        try:
            if ref and len(g) > 1:
                each = " ".join(num2words(int(c), lang=lang) for c in g)
                each = " ".join(each.replace("ё", "е").replace("-", " ").split())
                if f" {each} " in f" {ref} ":
                    return " " + each + " "
            return " " + num2words(int(g), lang=lang) + " "
        except (ValueError, NotImplementedError, OverflowError):
            return g

    return re.sub(r"\d+", word, s)


def normalize(s, lang=None, ref=None):
    """Lower case, no punctuation, ё→е, numbers spelled out in `lang`. Give the normalized
    reference as `ref` when normalizing a hypothesis (see `spell_numbers`)."""
    s = unicodedata.normalize("NFC", s).lower().replace("ё", "е")
    s = "".join(c for c in s if c not in "'’")
    s = "".join(c if c.isalnum() else " " for c in s)
    if lang:
        s = spell_numbers(s, lang, ref).replace("ё", "е")
        s = "".join(c if c.isalnum() else " " for c in s)
    return " ".join(s.split())


def edit_table(hyp_words, ref_words):
    """The full table of least edits between every prefix of the two word lists."""
    n, m = len(hyp_words), len(ref_words)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j - 1] + (hyp_words[i - 1] != ref_words[j - 1]),
                          d[i - 1][j] + 1, d[i][j - 1] + 1)
    return d


def insertions(hyp_words, ref_words):
    """Words of the hypothesis that a least-edit alignment matches to nothing."""
    d = edit_table(hyp_words, ref_words)
    i, j, ins = len(hyp_words), len(ref_words), 0
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (hyp_words[i - 1] != ref_words[j - 1]):
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            ins, i = ins + 1, i - 1
        else:
            j -= 1
    return ins


def invented(hyp_words, ref_words):
    """Hypothesis words after the last one aligned with the reference's last word: text
    nobody said at the end (trailing insertions of the edit alignment)."""
    n, m = len(hyp_words), len(ref_words)
    d = edit_table(hyp_words, ref_words)
    # Walk back from the end while the best step is an insertion (a hypothesis word that
    # matches nothing after the reference's last aligned word).
    i, j, extra = n, m, 0
    # On a tie, a trailing word counts as inserted.
    while i > 0 and d[i][j] == d[i - 1][j] + 1:
        extra += 1
        i -= 1
    return extra


def loops(words, min_reps=3):
    """Whether a phrase of 2-16 words (or one word 5 times) repeats back to back."""
    for start in range(len(words)):
        for n in range(1, min(16, (len(words) - start) // 2) + 1):
            reps = 1
            while words[start + reps * n:start + (reps + 1) * n] == words[start:start + n]:
                reps += 1
            if reps >= (5 if n == 1 else min_reps):
                return True
    return False


def edits(a, b):
    """Levenshtein distance between two sequences (characters or words)."""
    if len(a) * len(b) > 4_000_000:
        return edits_long(a, b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a):
        cur = [i + 1]
        for j, y in enumerate(b):
            cur.append(min(prev[j] + (x != y), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1]


def edits_long(a, b):
    """`edits` for long recordings (an hour is ~50,000 characters), a row at a time in numpy:
    with d = the row before and c = this row, c[j] = min(d[j-1] + cost, d[j] + 1) and then
    c[j] = min(c[j], c[j-1] + 1), which is j + the running minimum of c[k] - k."""
    import numpy as np
    ids = {}
    xs = [ids.setdefault(x, len(ids)) for x in a]
    ys = np.array([ids.setdefault(y, len(ids)) for y in b], dtype=np.int64)
    j = np.arange(len(ys) + 1, dtype=np.int64)
    prev = j.copy()
    cur = np.empty_like(prev)
    for i, x in enumerate(xs):
        cur[0] = i + 1
        np.minimum(prev[:-1] + (ys != x), prev[1:] + 1, out=cur[1:])
        prev = j + np.minimum.accumulate(cur - j)
    return int(prev[-1])


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
            g = normalize(ref, lang)
            h = normalize(r.get("text", ""), lang, g)
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

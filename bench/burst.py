#!/usr/bin/env python3
"""A burst of synchronous requests through the official OpenAI Python SDK (issue #39).

Starts `earshot serve` (the release binary by default) on a free port with its defaults,
then:
1. sends N requests at once through the SDK with its default retries (2), and counts how
   many come back with text, how long the burst took;
2. with --probe M: sends M requests at once with no retries, records which were refused
   (503) and the Retry-After each carried; then probes once every 0.25 s, with no retries,
   until a request is admitted again, and compares each refusal's Retry-After with when a
   place actually became free (the target: within 2x either way).

Usage: bench/burst.py [--bin target/release/earshot] [--model base-q8_0] [--n 32]
                      [--probe 100] [--file tests/fixtures/telegram_ru.oga]
Needs `pip install openai` (scripts/test.sh installs it).
"""
import argparse
import os
import re
import subprocess
import tempfile
import threading
import time

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, model, data):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--model", model],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        m = re.match(r"earshot: listening on http://(\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    raise SystemExit("the server did not start")


def burst(addr, audio, n, retries):
    client = openai.OpenAI(base_url=f"http://{addr}/v1", api_key="unused", max_retries=retries, timeout=600)
    out = [None] * n

    def one(i):
        t = time.monotonic()
        try:
            r = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("note.oga", audio))
            out[i] = ("ok", time.monotonic() - t, None, r.parse().text)
        except openai.APIStatusError as e:
            out[i] = (e.status_code, time.monotonic() - t, e.response.headers.get("retry-after"), str(e))
        except Exception as e:  # noqa: BLE001 (reported)
            out[i] = ("error", time.monotonic() - t, None, str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "earshot"))
    ap.add_argument("--model", default="base-q8_0")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--probe", type=int, default=0)
    ap.add_argument("--file", default=os.path.join(ROOT, "tests", "fixtures", "telegram_ru.oga"))
    a = ap.parse_args()
    audio = open(a.file, "rb").read()
    with tempfile.TemporaryDirectory() as data:
        proc, addr = start(a.bin, a.model, data)
        try:
            # One note first, so the speed is measured as in a running service.
            burst(addr, audio, 1, 0)
            out, wall = burst(addr, audio, a.n, 2)
            ok = sum(1 for r in out if r[0] == "ok")
            print(f"burst of {a.n} with the SDK's default retries: {ok} ok, {a.n - ok} failed, "
                  f"{wall:.1f} s; slowest answer {max(r[1] for r in out):.1f} s")
            for r in out:
                if r[0] != "ok":
                    print("  failed:", r[0], r[3][:200])
            if a.probe:
                got = [None] * a.probe
                refused_at = [None] * a.probe
                bare = openai.OpenAI(base_url=f"http://{addr}/v1", api_key="unused", max_retries=0, timeout=600)

                def send():
                    try:
                        bare.audio.transcriptions.create(model="whisper-1", file=("note.oga", audio))
                        return (200, None)
                    except openai.APIStatusError as e:
                        return (e.status_code, e.response.headers.get("retry-after"))

                t0 = time.monotonic()

                def one(i):
                    got[i] = send()
                    if got[i][0] == 503:
                        refused_at[i] = time.monotonic()

                threads = [threading.Thread(target=one, args=(i,)) for i in range(a.probe)]
                for t in threads:
                    t.start()
                # Probe until a request is admitted again.
                time.sleep(0.5)
                free_at = None
                while free_at is None:
                    sent = time.monotonic()
                    if send()[0] == 200:
                        # Admitted when it was sent (the answer came after its own work).
                        free_at = sent
                    else:
                        time.sleep(0.25)
                for t in threads:
                    t.join()
                refused = [(g, refused_at[i]) for i, g in enumerate(got) if g and g[0] == 503]
                admitted = sum(1 for g in got if g and g[0] == 200)
                ratios = []
                for (_, ra), at in refused:
                    actual = max(free_at - at, 0.25)
                    ratios.append(float(ra) / actual)
                inside = sum(1 for x in ratios if 0.5 <= x <= 2.0)
                print(f"burst of {a.probe}, no retries: {admitted} admitted, {len(refused)} refused with 503 in "
                      f"{refused_at and max((x for x in refused_at if x), default=t0) - t0:.1f} s; a place was free "
                      f"again {free_at - t0:.1f} s after the burst began")
                if ratios:
                    ras = sorted(int(g[1]) for g, _ in refused)
                    print(f"  Retry-After {ras[0]}-{ras[-1]} s; Retry-After / actual wait: "
                          f"{min(ratios):.2f}-{max(ratios):.2f}; within 2x: {inside} of {len(ratios)}")
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()

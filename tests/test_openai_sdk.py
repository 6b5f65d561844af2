"""The official OpenAI Python SDK against a real `earshot serve` (the binary `cargo test` built).

Needs `pip install openai` (scripts/test.sh installs it) and the base model.
"""

import os
import re
import subprocess
import tempfile
import threading
import unittest

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug", "earshot")
FIX = os.path.join(ROOT, "tests", "fixtures")


def normalize(s):
    s = s.lower().replace("ё", "е")
    return " ".join("".join(c if c.isalnum() else " " for c in s).split())


class OpenAISdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BIN):
            subprocess.run(["cargo", "build", "--quiet"], cwd=ROOT, check=True)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", cls.tmp.name, "--model", "base", "--api-key", "sk-local-test"],
            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        cls.addr = None
        for line in cls.proc.stderr:
            m = re.match(r"earshot: listening on http://(\S+)", line)
            if m:
                cls.addr = m.group(1)
                break
        assert cls.addr, "server did not start"
        threading.Thread(target=lambda: [None for _ in cls.proc.stderr], daemon=True).start()
        cls.client = openai.OpenAI(base_url=f"http://{cls.addr}/v1", api_key="sk-local-test", max_retries=0, timeout=300)

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait()
        cls.tmp.cleanup()

    def test_transcribes_a_telegram_oga(self):
        with open(os.path.join(FIX, "telegram_ru.oga"), "rb") as f:
            t = self.client.audio.transcriptions.create(model="whisper-1", file=f)
        self.assertIn("барышни", normalize(t.text))
        self.assertIn("в голове", normalize(t.text))

    def test_verbose_json_and_translation(self):
        with open(os.path.join(FIX, "telegram_jfk.oga"), "rb") as f:
            t = self.client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json", language="en")
        self.assertIn("ask not what your country can do for you", normalize(t.text))
        self.assertEqual(t.language, "english")
        self.assertGreater(len(t.segments), 0)
        with open(os.path.join(FIX, "telegram_ru.oga"), "rb") as f:
            tr = self.client.audio.translations.create(model="whisper-1", file=f)
        self.assertTrue(tr.text and not re.search("[а-яА-Я]", tr.text), tr.text)

    def test_errors_come_back_as_openai_errors(self):
        with open(os.path.join(FIX, "broken", "cdn_error.ogg"), "rb") as f:
            with self.assertRaises(openai.BadRequestError) as e:
                self.client.audio.transcriptions.create(model="whisper-1", file=f)
        self.assertEqual(e.exception.code, "not_audio")
        bad = openai.OpenAI(base_url=f"http://{self.addr}/v1", api_key="wrong", max_retries=0)
        with open(os.path.join(FIX, "goforward.flac"), "rb") as f:
            with self.assertRaises(openai.AuthenticationError):
                bad.audio.transcriptions.create(model="whisper-1", file=f)
        models = [m.id for m in self.client.models.list()]
        self.assertIn("whisper-1", models)

    def test_a_burst_of_32_with_the_default_retries_all_succeeds(self):
        """Issue #39: 32 simultaneous requests through the SDK with its default retries (2)
        all come back with their text: requests wait while the work ahead is within
        --sync-max-wait, and a refused one is told when to come back."""
        client = openai.OpenAI(base_url=f"http://{self.addr}/v1", api_key="sk-local-test", timeout=600)
        with open(os.path.join(FIX, "telegram_jfk.oga"), "rb") as f:
            audio = f.read()
        results = [None] * 32

        def one(i):
            try:
                results[i] = client.audio.transcriptions.create(
                    model="whisper-1", file=("jfk.oga", audio), language="en").text
            except Exception as e:  # noqa: BLE001 (counted below)
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(failed, [], f"{len(failed)} of 32 failed")
        for r in results:
            self.assertIn("ask not what your country can do for you", normalize(r))


if __name__ == "__main__":
    unittest.main()

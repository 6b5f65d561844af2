//! The operator inbox page in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/setup-debian.sh` installs), driven over WebDriver against
//! the real `earshot serve` on a random port, with an API key set.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::server::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const KEY: &str = "inbox-test-key-7f3a";
const XSS_NAME: &str = "<img src=x onerror=alert(1)>.ogg";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> (Driver, String) {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromedriver is missing: install Debian's chromium and chromium-driver (scripts/setup-debian.sh does)");
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, profile: &Path, lang: &str, width: u32) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", format!("--lang={lang}"),
                format!("--window-size={width},900"),
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"intl.accept_languages": lang},
        }
    });
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session starts")
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect(script)
}

/// Poll `script` (which returns a value, null/false meaning not yet) until it is truthy.
async fn wait_js(c: &Client, script: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = js(c, script).await;
        if !(v.is_null() || v == Value::Bool(false)) {
            return v;
        }
        if Instant::now() > deadline {
            let body = js(c, "return document.body.innerText").await;
            panic!("timed out waiting for {script}\npage text:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Type `key` into the page's key form and submit it.
async fn log_in(c: &Client, key: &str) {
    let field = c.find(Locator::Css("#key")).await.unwrap();
    field.send_keys(key).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = crate::common::root().join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_uploads_a_note_and_reads_its_text() {
    let server = Server::start("tiny.en", &["--api-key", KEY]);
    let base = format!("http://{}", server.addr);
    let (_driver, driver_url) = chromedriver();
    let tmp = tempfile::tempdir().unwrap();
    // The fixture under a hostile name: it must show up as text, never as markup.
    let upload = tmp.path().join(XSS_NAME);
    std::fs::copy(crate::common::fixture("telegram_jfk.oga"), &upload).unwrap();

    let c = browser(&driver_url, &tmp.path().join("profile"), "en-US", 1100).await;
    c.goto(&base).await.unwrap();
    // An alert from injected markup would be recorded here.
    js(
        &c,
        "window.alert = () => { window.__xss = true; }; return 1",
    )
    .await;

    // With keys configured the page asks for one, and shows nothing before it.
    c.wait().for_element(Locator::Css("#key")).await.unwrap();
    assert_eq!(
        js(&c, "return document.getElementById('app').hidden").await,
        true
    );
    log_in(&c, "wrong-key").await;
    wait_js(
        &c,
        "const e = document.getElementById('login-error'); return !document.getElementById('login').hidden && e.textContent.includes('not accepted')",
        Duration::from_secs(10),
    )
    .await;
    log_in(&c, KEY).await;
    wait_js(
        &c,
        "return !document.getElementById('app').hidden && document.getElementById('conn').textContent === 'Live'",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        js(&c, "return sessionStorage.getItem('earshot.key')").await,
        KEY
    );

    // Upload through the page's file picker.
    c.find(Locator::Css("#files"))
        .await
        .unwrap()
        .send_keys(upload.to_str().unwrap())
        .await
        .unwrap();
    let text = wait_js(
        &c,
        "const r = document.querySelector('li.job.done'); return r && r.querySelector('.text').textContent",
        Duration::from_secs(120),
    )
    .await;
    let text = text.as_str().unwrap().to_lowercase();
    assert!(
        text.contains("ask not what your country can do for you"),
        "{text}"
    );

    // The hostile file name is shown as text, and no markup came from it.
    let name = js(
        &c,
        "return document.querySelector('li.job .name').textContent",
    )
    .await;
    assert_eq!(name, XSS_NAME);
    assert_eq!(
        js(&c, "return document.querySelectorAll('#list img').length").await,
        0
    );
    assert_eq!(js(&c, "return window.__xss === undefined").await, true);
    let meta = js(
        &c,
        "return document.querySelector('li.job .meta').textContent",
    )
    .await;
    assert_eq!(meta, "0:11 · English");

    // The player streams the original from the API, with seeking (Range), without a
    // Bearer header: the URL carries its own signature.
    let src = js(
        &c,
        "return document.querySelector('li.job audio').getAttribute('src')",
    )
    .await;
    let src = src.as_str().unwrap().to_string();
    assert!(src.contains("/audio?expires="), "{src}");
    let full = server.req("GET", &src, &[], b"");
    assert_eq!(full.status, 200);
    assert_eq!(
        full.body,
        std::fs::read(crate::common::fixture("telegram_jfk.oga")).unwrap()
    );
    let part = server.req("GET", &src, &[("Range", "bytes=100-199")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 100);
    let unsigned = src.split('?').next().unwrap();
    assert_eq!(server.req("GET", unsigned, &[], b"").status, 401);
    let tampered = src
        .replace("/audio?", "/audio?x=1&")
        .replace("sig=", "sig=00");
    assert_eq!(server.req("GET", &tampered, &[], b"").status, 401);
    // The browser itself plays it: metadata loads and the duration is the note's.
    js(
        &c,
        "const a = document.querySelector('li.job audio'); a.preload = 'metadata'; a.load(); return 1",
    )
    .await;
    let dur = wait_js(
        &c,
        "const a = document.querySelector('li.job audio'); return a.readyState >= 1 && a.duration",
        Duration::from_secs(20),
    )
    .await;
    assert!((dur.as_f64().unwrap() - 11.0).abs() < 0.5, "{dur}");

    // Search (full text) and the status filter.
    let q = c.find(Locator::Css("#q")).await.unwrap();
    q.send_keys("COUNTRY fell").await.unwrap();
    wait_js(
        &c,
        "return document.querySelectorAll('li.job').length === 1",
        Duration::from_secs(10),
    )
    .await;
    q.send_keys(" zebra").await.unwrap();
    wait_js(
        &c,
        "return document.querySelectorAll('li.job').length === 0 && !document.getElementById('empty').hidden",
        Duration::from_secs(10),
    )
    .await;
    q.clear().await.unwrap();
    js(&c, "const s = document.getElementById('status'); s.value = 'failed'; s.dispatchEvent(new Event('change')); return 1").await;
    wait_js(
        &c,
        "return document.querySelectorAll('li.job').length === 0",
        Duration::from_secs(10),
    )
    .await;
    js(&c, "const s = document.getElementById('status'); s.value = ''; s.dispatchEvent(new Event('change')); return 1").await;

    // A job created elsewhere (the API) appears without a reload; a failed one says why and
    // offers a retry.
    let (ct, body) =
        crate::common::server::multipart_body(&[], Some(("notes.txt", b"hello, not audio")));
    let created = server.req(
        "POST",
        "/v1/jobs",
        &[
            ("Content-Type", &ct),
            ("Authorization", &format!("Bearer {KEY}")),
        ],
        &body,
    );
    assert_eq!(created.status, 202);
    let why = wait_js(
        &c,
        "const r = document.querySelector('li.job.failed'); return r && r.querySelector('.why').textContent",
        Duration::from_secs(30),
    )
    .await;
    assert!(why.as_str().unwrap().contains("not audio"), "{why}");
    assert_eq!(
        js(
            &c,
            "return document.querySelector('li.job.failed .retry').hidden"
        )
        .await,
        false
    );
    // Newest first.
    assert_eq!(
        js(
            &c,
            "return document.querySelector('li.job .name').textContent"
        )
        .await,
        "notes.txt"
    );

    // A link from the Telegram bot's operators' chat, /#job=ID, marks that note.
    let older = js(
        &c,
        "return document.querySelectorAll('li.job')[1].dataset.id",
    )
    .await;
    let older = older.as_str().unwrap().to_string();
    js(&c, &format!("location.hash = '#job={older}'; return 1")).await;
    let focused = wait_js(
        &c,
        "const r = document.querySelector('li.job.focus'); return r && r.dataset.id",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(focused, older.as_str());

    // Every control has an accessible name.
    let unlabeled = js(
        &c,
        "return [...document.querySelectorAll('input, select, button, audio')].filter(e => {
            if (e.closest('[hidden]')) return false;
            const byFor = e.id && document.querySelector(`label[for='${e.id}']`);
            return !(byFor || e.getAttribute('aria-label') || (e.textContent || '').trim());
        }).map(e => e.outerHTML)",
    )
    .await;
    assert_eq!(unlabeled, json!([]));

    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("inbox.png"), png).unwrap();

    // Phone width: nothing sticks out sideways.
    c.set_window_size(360, 800).await.unwrap();
    let overflow = wait_js(
        &c,
        "return window.innerWidth <= 400 && [document.documentElement.scrollWidth, window.innerWidth]",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        overflow[0].as_u64() <= overflow[1].as_u64(),
        "horizontal overflow at phone width: {overflow}"
    );
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("inbox-phone.png"), png).unwrap();
    c.close().await.unwrap();

    // A Russian browser gets the Russian interface; the key is per tab (a new session asks again).
    let ru = browser(&driver_url, &tmp.path().join("profile-ru"), "ru", 1100).await;
    ru.goto(&base).await.unwrap();
    ru.wait().for_element(Locator::Css("#key")).await.unwrap();
    let label = js(&ru, "return [document.documentElement.lang, document.querySelector('label[for=key]').textContent]").await;
    assert_eq!(label, json!(["ru", "Ключ API"]));
    log_in(&ru, KEY).await;
    let status = wait_js(
        &ru,
        "const r = document.querySelector('li.job.done'); return r && r.querySelector('.status').textContent",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, "Готово");
    // Not one English string of the page's table is left in the Russian page, in its text
    // or its labels; and the reverse after the switch to English.
    const LEFT_OVER: &str = "const other = arguments[0];
        const flat = (o) => Object.values(o).flatMap(v => typeof v === 'string' ? [v] : flat(v));
        const mine = new Set(flat(STRINGS[document.documentElement.lang]));
        const shown = document.body.innerText + ' ' + [...document.querySelectorAll('[aria-label],[title],[placeholder]')]
            .map(e => [e.getAttribute('aria-label'), e.getAttribute('title'), e.getAttribute('placeholder')].join(' ')).join(' ');
        return flat(STRINGS[other]).filter(s => s.length >= 4 && !mine.has(s) && shown.includes(s));";
    let left = ru.execute(LEFT_OVER, vec![json!("en")]).await.unwrap();
    assert_eq!(left, json!([]), "English left in the Russian page");
    ru.find(Locator::Css("#langs button[data-lang=en]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = wait_js(
        &ru,
        "const r = document.documentElement.lang === 'en' && document.querySelector('li.job.done'); return r && r.querySelector('.status').textContent",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        status, "Done",
        "the switch turns the page English, the key kept"
    );
    let pressed = js(
        &ru,
        "return document.querySelector('#langs button[aria-pressed=true]').dataset.lang",
    )
    .await;
    assert_eq!(pressed, "en");
    let left = ru.execute(LEFT_OVER, vec![json!("ru")]).await.unwrap();
    assert_eq!(left, json!([]), "Russian left in the English page");
    // The choice is kept in this browser over its own language.
    ru.refresh().await.unwrap();
    let lang = wait_js(
        &ru,
        "return document.querySelector('li.job.done') && document.documentElement.lang",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(lang, "en");
    ru.close().await.unwrap();
}

/// Where the player of the card that `card` (a JS expression) finds is, once it has loaded
/// enough to seek.
async fn player_at(c: &Client, card: &str) -> f64 {
    let at = wait_js(
        c,
        &format!(
            "const a = {card}.querySelector('audio'); return a.readyState >= 1 && a.currentTime"
        ),
        Duration::from_secs(20),
    )
    .await;
    at.as_f64().unwrap()
}

/// A note that needs a listen wears a "Listen" badge with the reason in words, unsure words
/// are marked in its text, and clicking any word plays the note from that word. Notes made
/// through the API: room noise (no speech), an English note played backwards (speech-like
/// sound the model guesses at: unsure words), the clean note (no badge), and the clean note
/// with murmur after it that has no text (the badge says where to listen from).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_badge_unsure_words_and_click_to_seek() {
    let server = Server::start("tiny.en", &["--api-key", KEY]);
    let auth = format!("Bearer {KEY}");
    let jfk = crate::common::read_fixture("telegram_jfk.oga");
    let mut backwards = earshot::audio::decode(&jfk, &Default::default())
        .unwrap()
        .samples;
    backwards.reverse();
    // Kennedy, a second's pause, then the same speech backwards 24 dB under him (murmur
    // nobody can read): speech with no text, which the page says where to listen from.
    let forwards = earshot::audio::decode(&jfk, &Default::default())
        .unwrap()
        .samples;
    let skipped: Vec<f32> = forwards
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, 16_000))
        .chain(backwards.iter().map(|x| x * 10f32.powf(-24.0 / 20.0)))
        .collect();
    let notes = [
        (
            "noise.oga",
            crate::common::read_fixture("low_noise_10s.oga"),
        ),
        (
            "backwards.wav",
            crate::common::wav16k(backwards.clone(), None),
        ),
        ("jfk.oga", jfk.clone()),
        ("skipped.wav", crate::common::wav16k(skipped, None)),
    ];
    let mut ids = Vec::new();
    for (name, bytes) in &notes {
        let r = server.req(
            "POST",
            &format!("/v1/jobs?external_id={name}"),
            &[
                ("Content-Type", "application/octet-stream"),
                ("Authorization", &auth),
            ],
            bytes,
        );
        assert_eq!(r.status, 202, "{}", r.text());
        ids.push(r.json()["id"].as_str().unwrap().to_string());
    }
    let jobs: Vec<Value> = ids
        .iter()
        .map(|id| {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let j = server
                    .req(
                        "GET",
                        &format!("/v1/jobs/{id}"),
                        &[("Authorization", &auth)],
                        b"",
                    )
                    .json();
                if j["status"] == "done" {
                    break j;
                }
                assert!(Instant::now() < deadline, "{j}");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .collect();
    assert_eq!(jobs[0]["review"]["reasons"], json!(["no_speech"]));
    assert_eq!(jobs[2]["review"]["needed"], false, "{}", jobs[2]["review"]);
    // The API returns words only when asked; the job keeps them for the page.
    let words = jobs[2]["transcript"]["words"].as_array().unwrap().clone();
    assert!(words.len() > 15);
    let plain = server.req(
        "GET",
        &format!("/v1/jobs/{}/transcript?format=verbose_json", ids[2]),
        &[("Authorization", &auth)],
        b"",
    );
    assert!(plain.json().get("words").is_none());

    let base = format!("http://{}", server.addr);
    let (_driver, driver_url) = chromedriver();
    let tmp = tempfile::tempdir().unwrap();
    let c = browser(&driver_url, &tmp.path().join("profile"), "en-US", 1100).await;
    c.goto(&base).await.unwrap();
    c.wait().for_element(Locator::Css("#key")).await.unwrap();
    log_in(&c, KEY).await;
    wait_js(
        &c,
        "return document.querySelectorAll('li.job.done').length === 4",
        Duration::from_secs(20),
    )
    .await;
    let card = |f: &str| format!("document.querySelector('li.job[data-id=\"{}\"]')", f);
    let badge = |i: usize| {
        format!(
            "const b = {}.querySelector('.badge'); return [b.hidden, b.textContent]",
            card(&ids[i])
        )
    };
    assert_eq!(
        js(&c, &badge(0)).await,
        json!([false, "Listen: no speech found"])
    );
    assert_eq!(
        js(&c, &badge(2)).await[0],
        true,
        "a clean note has no badge"
    );
    // The backwards note: a badge exactly when the API says so, with its reasons in words.
    let words_for = |r: &Value| match r.as_str().unwrap() {
        "low_confidence" => "the words are uncertain".to_string(),
        "language_uncertain" => "the language is uncertain".to_string(),
        "suspect_text" => "the text repeated itself".to_string(),
        "speech_but_no_text" => "speech heard, but no words recognized".to_string(),
        "repeated_text" => "a phrase comes twice in a row".to_string(),
        "too_much_text" => "more words than the speech could hold".to_string(),
        "skipped_speech" => {
            let start = jobs[1]["review"]["skipped_speech"][0]["start"]
                .as_f64()
                .unwrap();
            let s = start.round() as u64;
            format!(
                "part of this note has no text: listen from {}:{:02}",
                s / 60,
                s % 60
            )
        }
        other => panic!("unexpected reason {other}"),
    };
    let want = if jobs[1]["review"]["needed"] == true {
        let reasons: Vec<String> = jobs[1]["review"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(words_for)
            .collect();
        json!([false, format!("Listen: {}", reasons.join("; "))])
    } else {
        json!([true, ""])
    };
    assert_eq!(js(&c, &badge(1)).await, want);
    let unsure = js(
        &c,
        &format!(
            "return {}.querySelectorAll('.w.unsure').length",
            card(&ids[1])
        ),
    )
    .await;
    // The marked words are exactly the ones under the threshold, and backwards speech has
    // some.
    let low = jobs[1]["transcript"]["words"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["probability"].as_f64().unwrap() < 0.5)
        .count();
    assert!(low > 0, "{}", jobs[1]["transcript"]["words"]);
    assert_eq!(unsure.as_u64().unwrap() as usize, low);

    // Click the word "country" (its first occurrence): the player seeks there and plays.
    let i = words
        .iter()
        .position(|w| {
            w["word"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .starts_with("country")
        })
        .expect("JFK says country");
    let start = words[i]["start"].as_f64().unwrap();
    assert!(start > 2.0, "{start}");
    c.find(Locator::Css(&format!(
        "li.job[data-id=\"{}\"] .text .w:nth-of-type({})",
        ids[2],
        i + 1
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let at = player_at(&c, &card(&ids[2])).await;
    assert!(
        at >= start - 0.5 && at <= start + 1.5,
        "clicked a word at {start:.2} s, the player is at {at:.2} s"
    );
    // Speech with no text: the badge says where to listen from, and plays from there.
    let skipped = &jobs[3]["review"]["skipped_speech"][0];
    assert!(
        jobs[3]["review"]["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("skipped_speech")),
        "{}",
        jobs[3]["review"]
    );
    let from = skipped["start"].as_f64().unwrap();
    assert!(
        from >= 11.0,
        "the stretch is the backwards speech: {skipped}"
    );
    let s = from.round() as u64;
    let badge_text = js(&c, &badge(3)).await;
    assert!(
        badge_text[1].as_str().unwrap().contains(&format!(
            "part of this note has no text: listen from {}:{:02}",
            s / 60,
            s % 60
        )),
        "{badge_text}"
    );
    c.find(Locator::Css(&format!(
        "li.job[data-id=\"{}\"] .badge",
        ids[3]
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let at = player_at(&c, &card(&ids[3])).await;
    assert!(
        at >= from - 1.0 && at <= from + 1.5,
        "the badge names {from:.2} s, the player is at {at:.2} s"
    );
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("inbox-review.png"), png).unwrap();

    // The filter shows only the notes that need a listen.
    js(&c, "const s = document.getElementById('status'); s.value = 'review'; s.dispatchEvent(new Event('change')); return 1").await;
    let flagged = jobs
        .iter()
        .filter(|j| j["review"]["needed"] == true)
        .count();
    wait_js(
        &c,
        &format!("return document.querySelectorAll('li.job').length === {flagged}"),
        Duration::from_secs(10),
    )
    .await;
    c.close().await.unwrap();
}

/// Issue #39: the page opened with a client key shows that client's notes only, and with an
/// admin key every client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_sees_its_own_notes_on_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(
        "tiny.en",
        &[
            "--api-key",
            "shop-a=page-secret-a",
            "--api-key",
            "shop-b=page-secret-b",
            "--admin-api-key",
            "ops=page-secret-ops",
        ],
    );
    let audio = crate::common::read_fixture("telegram_jfk.oga");
    for (key, name) in [
        ("page-secret-a", "from-a.oga"),
        ("page-secret-b", "from-b.oga"),
    ] {
        let auth = format!("Bearer {key}");
        let disposition = format!("attachment; filename=\"{name}\"");
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[
                ("Authorization", &auth),
                ("Content-Type", "audio/ogg"),
                ("Content-Disposition", &disposition),
            ],
            &audio,
        );
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let (_driver, driver_url) = chromedriver();
    let base = format!("http://{}/", s.addr);
    let names = "return [...document.querySelectorAll('li.job')].map(li => li.textContent.includes('from-a.oga') ? 'a' : li.textContent.includes('from-b.oga') ? 'b' : '?').sort().join(',')";
    for (profile, key, want) in [
        ("profile-a", "page-secret-a", "a"),
        ("profile-b", "page-secret-b", "b"),
        ("profile-ops", "page-secret-ops", "a,b"),
    ] {
        let c = browser(&driver_url, &tmp.path().join(profile), "en", 1100).await;
        c.goto(&base).await.unwrap();
        c.wait().for_element(Locator::Css("#key")).await.unwrap();
        log_in(&c, key).await;
        let wanted =
            format!("const got = (function() {{ {names} }})(); return got === '{want}' && got");
        let shown = wait_js(&c, &wanted, Duration::from_secs(15)).await;
        assert_eq!(shown, want, "{key}");
        c.close().await.unwrap();
    }
}

//! `earshot serve --telegram` against a fake Bot API (in this process, on a random port, with
//! the documented JSON shapes): voice notes, audio files and round videos answered in their
//! chats, business notes posted to the operators' chat only, strangers refused without a
//! job, a 429 waited out, a poll cut mid-way, a restart mid-download, and the token never in
//! a log line, an error or a stored row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::common::server::Server;
use crate::common::{cer, read_fixture, TcpProxy};

const TOKEN: &str = "7011223344:AAH-secret_TokenValue-xyz0123456789";
const RU: &str = "Что, у этой барышни, было в голове, - не пойму до сих пор.";

/// One stored file: its bytes, or the error `getFile` gives.
struct FakeFile {
    unique: String,
    bytes: Vec<u8>,
    missing: bool,
}

#[derive(Default)]
struct Fake {
    updates: Mutex<Vec<Value>>,
    files: Mutex<HashMap<String, FakeFile>>,
    /// Every `sendMessage` body, in order.
    sent: Mutex<Vec<Value>>,
    /// Every `sendChatAction` chat.
    typing: Mutex<Vec<i64>>,
    /// `getFile` calls, by file id.
    get_file: Mutex<Vec<String>>,
    /// `sendMessage` calls still to answer 429.
    send_429: AtomicU32,
    /// `deleteWebhook` was called.
    webhook_deleted: AtomicBool,
    /// Answer `getMe` as a bot in privacy mode.
    privacy: AtomicBool,
    /// Serve the next `getUpdates` from 0, whatever the offset (an update seen twice).
    replay_once: AtomicBool,
    /// Hold file downloads this long.
    download_delay_ms: AtomicU32,
    /// `getFile` (and the downloads) asked for: seen, to kill a server mid-download.
    downloads: AtomicU32,
    wake: tokio::sync::Notify,
}

impl Fake {
    fn push(&self, update: Value) -> i64 {
        let mut u = self.updates.lock().unwrap();
        let id = 1000 + u.len() as i64;
        let mut update = update;
        update["update_id"] = json!(id);
        u.push(update);
        drop(u);
        self.wake.notify_waiters();
        id
    }

    fn file(&self, id: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(
            id.into(),
            FakeFile {
                unique: format!("uniq-{id}"),
                bytes,
                missing: false,
            },
        );
    }

    fn sent_to(&self, chat: i64) -> Vec<Value> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["chat_id"] == json!(chat))
            .cloned()
            .collect()
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn refused(code: u16, description: &str, extra: Value) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if !extra.is_null() {
        body["parameters"] = extra;
    }
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

async fn method(
    State(fake): State<Arc<Fake>>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return refused(401, "Unauthorized", Value::Null);
    }
    let p = body.map(|Json(v)| v).unwrap_or(json!({}));
    match method.as_str() {
        "getMe" => ok(json!({
            "id": 7011223344i64, "is_bot": true, "first_name": "Earshot", "username": "earshot_test_bot",
            "can_join_groups": true,
            "can_read_all_group_messages": !fake.privacy.load(Ordering::SeqCst),
            "supports_inline_queries": false,
        })),
        "deleteWebhook" => {
            fake.webhook_deleted.store(true, Ordering::SeqCst);
            ok(json!(true))
        }
        "getUpdates" => {
            let mut offset = p["offset"].as_i64().unwrap_or(0);
            if fake.replay_once.swap(false, Ordering::SeqCst) {
                offset = 0;
            }
            let wait = Duration::from_secs(p["timeout"].as_u64().unwrap_or(0).min(50));
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = fake.wake.notified();
                let due: Vec<Value> = fake
                    .updates
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
                    .cloned()
                    .collect();
                if !due.is_empty() || tokio::time::Instant::now() >= deadline {
                    return ok(json!(due));
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        "getFile" => {
            let id = p["file_id"].as_str().unwrap_or("").to_string();
            fake.get_file.lock().unwrap().push(id.clone());
            let files = fake.files.lock().unwrap();
            match files.get(&id) {
                Some(f) if !f.missing => ok(json!({
                    "file_id": id, "file_unique_id": f.unique, "file_size": f.bytes.len(),
                    "file_path": format!("voice/{id}.bin"),
                })),
                _ => refused(
                    400,
                    "Bad Request: wrong file_id or the file is temporarily unavailable",
                    Value::Null,
                ),
            }
        }
        "getBusinessConnection" => {
            if p["business_connection_id"] == json!("bc-shop") {
                ok(json!({
                    "id": "bc-shop",
                    "user": {"id": 333, "is_bot": false, "first_name": "Shop", "language_code": "ru"},
                    "user_chat_id": 333, "date": 1_796_600_000, "is_enabled": true,
                }))
            } else {
                refused(
                    400,
                    "Bad Request: business connection not found",
                    Value::Null,
                )
            }
        }
        "sendChatAction" => {
            fake.typing
                .lock()
                .unwrap()
                .push(p["chat_id"].as_i64().unwrap());
            ok(json!(true))
        }
        "sendMessage" => {
            if fake
                .send_429
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return refused(
                    429,
                    "Too Many Requests: retry after 1",
                    json!({"retry_after": 1}),
                );
            }
            let mut sent = fake.sent.lock().unwrap();
            sent.push(p.clone());
            ok(json!({
                "message_id": 50_000 + sent.len(), "date": 1_796_612_700,
                "chat": {"id": p["chat_id"], "type": "private"}, "text": p["text"],
            }))
        }
        _ => refused(404, "Not Found: method not found", Value::Null),
    }
}

async fn download(
    State(fake): State<Arc<Fake>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return refused(401, "Unauthorized", Value::Null);
    }
    fake.downloads.fetch_add(1, Ordering::SeqCst);
    let delay = fake.download_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    let id = path
        .trim_start_matches("voice/")
        .trim_end_matches(".bin")
        .to_string();
    match fake.files.lock().unwrap().get(&id) {
        Some(f) => f.bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The fake on a random port, on its own thread and runtime; and a proxy in front of it that
/// the test can cut (the server going away mid-poll).
fn start_fake() -> (Arc<Fake>, TcpProxy) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/{bot}/{method}", post(method).get(method))
        .route("/file/{bot}/{*path}", get(download))
        .with_state(fake.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            })
    });
    (fake, TcpProxy::start(addr))
}

fn user(id: i64, name: &str, lang: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name, "username": name.to_lowercase(), "language_code": lang})
}

/// A message update with `kind` (`voice`, `audio`, `video_note`, `document`) of file `file`.
fn note(
    chat: i64,
    chat_type: &str,
    message_id: i64,
    from: Value,
    kind: &str,
    file: &str,
    size: usize,
) -> Value {
    let mut att = json!({"file_id": file, "file_unique_id": format!("uniq-{file}"), "file_size": size, "duration": 5});
    match kind {
        "voice" => att["mime_type"] = json!("audio/ogg"),
        "audio" => {
            att["mime_type"] = json!("audio/mp4");
            att["file_name"] = json!("order.m4a");
        }
        "video_note" => att["length"] = json!(240),
        _ => {
            att["mime_type"] = json!("audio/ogg");
            att["file_name"] = json!("note.oga");
        }
    }
    json!({"message": {
        "message_id": message_id, "date": 1_796_612_700, "from": from,
        "chat": {"id": chat, "type": chat_type}, kind: att,
    }})
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn telegram_args(proxy: &TcpProxy, hook: &str) -> Vec<String> {
    [
        "--telegram",
        "--telegram-api-url",
        &format!("http://{}", proxy.addr),
        "--telegram-allow-chat",
        "111",
        "--telegram-allow-chat=-100222",
        "--telegram-allow-chat",
        "333",
        "--telegram-forward-chat=-100999",
        "--public-url",
        "http://inbox.example",
        "--telegram-callback-url",
        hook,
        "--webhook-allow-private",
    ]
    .map(String::from)
    .to_vec()
}

fn start(dir: &std::path::Path, proxy: &TcpProxy) -> Server {
    start_with_hook(dir, proxy, "http://127.0.0.1:9/unused")
}

fn start_with_hook(dir: &std::path::Path, proxy: &TcpProxy, hook: &str) -> Server {
    let args = telegram_args(proxy, hook);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with(
        dir,
        dir,
        "base",
        &args,
        &[
            ("EARSHOT_TELEGRAM_BOT_TOKEN", TOKEN.to_string()),
            ("RUST_LOG", "trace,whisper_rs=off,symphonia_core=off,symphonia_format_ogg=off,symphonia_format_isomp4=off,symphonia_codec_aac=off,h2=off,hyper=off,hyper_util=off,tower=off".into()),
        ],
    )
}

fn jobs_of(s: &Server) -> Vec<Value> {
    s.get("/v1/jobs?limit=100").json()["data"]
        .as_array()
        .unwrap()
        .clone()
}

/// Every log line and every message sent: none holds the token.
fn assert_no_token_logged(s: &Server, fake: &Fake) {
    let secret = TOKEN.split(':').nth(1).unwrap();
    let log = s.log.lock().unwrap();
    assert!(log.len() > 20, "{log:?}");
    for line in log.iter() {
        assert!(!line.contains(secret), "the token is in a log line: {line}");
    }
    for m in fake.sent.lock().unwrap().iter() {
        assert!(!m.to_string().contains(secret), "the token was sent: {m}");
    }
}

/// [`assert_no_token_logged`], and not in any job's JSON either.
fn assert_no_token(s: &Server, fake: &Fake) {
    assert_no_token_logged(s, fake);
    let jobs = s.get("/v1/jobs?limit=100").text();
    assert!(!jobs.contains(TOKEN.split(':').nth(1).unwrap()));
}

#[test]
fn telegram_bot_answers_notes_where_they_were_sent() {
    let (fake, proxy) = start_fake();
    fake.privacy.store(true, Ordering::SeqCst);
    fake.file("voice-1", read_fixture("telegram_ru.oga"));
    fake.file("audio-1", read_fixture("messenger_ru.mp4"));
    fake.file("round-1", read_fixture("round_video_ru.mp4"));
    fake.file("stranger-1", read_fixture("telegram_ru.oga"));
    fake.file("biz-1", read_fixture("whatsapp_ru.opus"));
    fake.files.lock().unwrap().insert(
        "gone-1".into(),
        FakeFile {
            unique: "uniq-gone-1".into(),
            bytes: vec![],
            missing: true,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hooks/earshot", hook.local_addr().unwrap());
    let hooks = crate::common::receiver(hook, 0);
    let s = start_with_hook(tmp.path(), &proxy, &hook_url);
    // Privacy mode: one warning at start, with the way out.
    wait_until("the privacy warning", Duration::from_secs(20), || {
        s.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("privacy mode") && l.contains("/setprivacy"))
    });

    wait_until("deleteWebhook", Duration::from_secs(10), || {
        fake.webhook_deleted.load(Ordering::SeqCst)
    });
    let anna = user(111, "Anna", "ru");
    // A private chat: a voice note, an audio file; a group: a round video.
    fake.push(note(
        111,
        "private",
        1,
        anna.clone(),
        "voice",
        "voice-1",
        20_000,
    ));
    fake.push(note(
        111,
        "private",
        2,
        anna.clone(),
        "audio",
        "audio-1",
        30_000,
    ));
    fake.push(note(
        -100222,
        "supergroup",
        3,
        user(112, "Boris", "en"),
        "video_note",
        "round-1",
        29_000,
    ));
    // A stranger, twice: one refusal, no download, no job.
    fake.push(note(
        444,
        "private",
        4,
        user(444, "Eve", "en"),
        "voice",
        "stranger-1",
        20_000,
    ));
    fake.push(note(
        444,
        "private",
        5,
        user(444, "Eve", "en"),
        "voice",
        "stranger-1",
        20_000,
    ));
    // A customer writing to the shop's own account (Telegram Business).
    let mut biz = note(
        555,
        "private",
        6,
        user(555, "Customer", "ru"),
        "voice",
        "biz-1",
        15_000,
    );
    biz["business_message"] = biz["message"].take();
    biz["business_message"]["business_connection_id"] = json!("bc-shop");
    biz.as_object_mut().unwrap().remove("message");
    fake.push(biz);
    // Over 20 MB on the cloud API, and a file Telegram no longer has.
    fake.push(note(
        111,
        "private",
        7,
        anna.clone(),
        "voice",
        "huge-1",
        21 * 1024 * 1024,
    ));
    fake.push(note(
        111,
        "private",
        8,
        anna.clone(),
        "voice",
        "gone-1",
        9_000,
    ));

    wait_until("the answers in chat 111", Duration::from_secs(120), || {
        fake.sent_to(111).len() >= 4
    });
    wait_until("the round video's answer", Duration::from_secs(60), || {
        !fake.sent_to(-100222).is_empty()
    });
    wait_until("the operators' post", Duration::from_secs(60), || {
        !fake.sent_to(-100999).is_empty()
    });
    let reply_to = |m: &Value| m["reply_parameters"]["message_id"].as_i64();
    let in_111 = fake.sent_to(111);
    let by_note = |id: i64| -> Vec<Value> {
        in_111
            .iter()
            .filter(|m| reply_to(m) == Some(id))
            .cloned()
            .collect()
    };
    for id in [1, 2] {
        let m = by_note(id);
        assert_eq!(m.len(), 1, "note {id}: {m:?}");
        let text = m[0]["text"].as_str().unwrap();
        assert!(
            cer(text.lines().next().unwrap(), RU) < 0.15,
            "note {id}: {text}"
        );
    }
    let round = fake.sent_to(-100222);
    assert_eq!((round.len(), reply_to(&round[0])), (1, Some(3)));
    assert!(
        cer(
            round[0]["text"].as_str().unwrap().lines().next().unwrap(),
            RU
        ) < 0.15,
        "{round:?}"
    );
    let huge = by_note(7);
    assert!(
        huge.len() == 1 && huge[0]["text"].as_str().unwrap().contains("20 МБ"),
        "{huge:?}"
    );
    let gone = by_note(8);
    assert!(
        gone.len() == 1 && gone[0]["text"].as_str().unwrap().contains("удалили"),
        "{gone:?}"
    );

    // The stranger: one refusal naming the chat's ID, in their language; nothing fetched.
    let eve = fake.sent_to(444);
    assert_eq!(eve.len(), 1, "{eve:?}");
    assert!(
        eve[0]["text"].as_str().unwrap().contains("ID is 444"),
        "{eve:?}"
    );
    assert!(!fake
        .get_file
        .lock()
        .unwrap()
        .iter()
        .any(|f| f == "stranger-1"));

    // The business note: to the operators' chat, who/when/how long, a link to the page;
    // never to the customer.
    assert!(
        fake.sent_to(555).is_empty(),
        "answered into the customer's chat"
    );
    let post = fake.sent_to(-100999);
    assert_eq!(post.len(), 1, "{post:?}");
    let text = post[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Customer (@customer), 07.12.2026 в 03:05 UTC, 0:05:\n"),
        "{text}"
    );
    assert!(post[0].get("reply_parameters").is_none());

    // Jobs: one per note that was fetched, source telegram, external id tg:<chat>:<message>.
    let jobs = jobs_of(&s);
    let mut ext: Vec<&str> = jobs
        .iter()
        .map(|j| j["external_id"].as_str().unwrap())
        .collect();
    ext.sort();
    assert_eq!(ext, ["tg:-100222:3", "tg:111:1", "tg:111:2", "tg:555:6"]);
    assert!(jobs
        .iter()
        .all(|j| j["source"] == "telegram" && j["status"] == "done"));
    let biz_job = jobs
        .iter()
        .find(|j| j["external_id"] == "tg:555:6")
        .unwrap();
    assert!(
        text.contains(&format!(
            "http://inbox.example/#job={}",
            biz_job["id"].as_str().unwrap()
        )),
        "{text}"
    );
    // Each job's webhook fired, as for an upload (--telegram-callback-url).
    let mut hooked = Vec::new();
    while hooked.len() < 4 {
        let (headers, body) = hooks
            .recv_timeout(Duration::from_secs(30))
            .expect("a webhook for each note");
        assert_eq!(
            crate::common::header(&headers, "x-earshot-event"),
            "job.done"
        );
        let job: Value = serde_json::from_slice(&body).unwrap();
        hooked.push(job["external_id"].as_str().unwrap().to_string());
    }
    hooked.sort();
    assert_eq!(hooked, ["tg:-100222:3", "tg:111:1", "tg:111:2", "tg:555:6"]);
    // "typing" was shown in the chats waiting for text, never in the customer's.
    assert!(fake.typing.lock().unwrap().contains(&111));
    assert!(!fake.typing.lock().unwrap().contains(&555));

    // The same update again (a server that ignored the offset), and the same file sent again
    // in another message: no second job, no second answer to the first; the second message
    // gets the first's text.
    fake.replay_once.store(true, Ordering::SeqCst);
    fake.push(note(
        111,
        "private",
        9,
        anna.clone(),
        "voice",
        "voice-1",
        20_000,
    ));
    wait_until(
        "the answer to the forwarded copy",
        Duration::from_secs(30),
        || fake.sent_to(111).iter().any(|m| reply_to(m) == Some(9)),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(by_note(1).len(), 1);
    assert_eq!(
        fake.sent_to(111)
            .iter()
            .filter(|m| reply_to(m) == Some(1))
            .count(),
        1
    );
    assert_eq!(jobs_of(&s).len(), 4);
    assert_eq!(
        fake.get_file
            .lock()
            .unwrap()
            .iter()
            .filter(|f| *f == "voice-1")
            .count(),
        1
    );

    // 429 on sending: waited out, sent once.
    fake.send_429.store(2, Ordering::SeqCst);
    fake.file("voice-2", read_fixture("android_ru_opus.m4a"));
    fake.push(note(
        111,
        "private",
        10,
        anna.clone(),
        "voice",
        "voice-2",
        20_000,
    ));
    wait_until("the answer after 429s", Duration::from_secs(60), || {
        fake.sent_to(111).iter().any(|m| reply_to(m) == Some(10))
    });
    assert_eq!(fake.send_429.load(Ordering::SeqCst), 0);
    assert!(s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("retry_after_s")));

    // The Bot API server goes away in the middle of a poll, and comes back.
    std::thread::sleep(Duration::from_millis(500));
    proxy.set_up(false);
    std::thread::sleep(Duration::from_secs(2));
    proxy.set_up(true);
    fake.file("voice-3", read_fixture("whatsapp_ru.opus"));
    fake.push(note(111, "private", 11, anna, "voice", "voice-3", 15_000));
    wait_until(
        "the answer after the server came back",
        Duration::from_secs(90),
        || fake.sent_to(111).iter().any(|m| reply_to(m) == Some(11)),
    );
    assert_eq!(
        fake.sent_to(111)
            .iter()
            .filter(|m| reply_to(m) == Some(11))
            .count(),
        1
    );

    assert_no_token(&s, &fake);
    // The start-up printout masks it too, and says where it came from.
    assert!(s
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("token=EARSHOT_TELEGRAM_BOT_TOKEN (masked)")));
}

#[test]
fn telegram_restart_mid_download_answers_once() {
    let (fake, proxy) = start_fake();
    fake.file("voice-1", read_fixture("telegram_ru.oga"));
    fake.download_delay_ms.store(60_000, Ordering::SeqCst);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path(), &proxy);
    fake.push(note(
        111,
        "private",
        1,
        user(111, "Anna", "ru"),
        "voice",
        "voice-1",
        20_000,
    ));
    wait_until("the download to start", Duration::from_secs(30), || {
        fake.downloads.load(Ordering::SeqCst) > 0
    });
    s.kill9();
    assert_no_token_logged(&s, &fake);
    assert!(fake.sent.lock().unwrap().is_empty());

    // Restarted: the update is read again (the offset never passed it), fetched, answered.
    fake.download_delay_ms.store(0, Ordering::SeqCst);
    let mut s = start(tmp.path(), &proxy);
    wait_until(
        "the answer after the restart",
        Duration::from_secs(90),
        || !fake.sent_to(111).is_empty(),
    );
    let job = &jobs_of(&s)[0];
    assert_eq!(job["status"], "done", "{job}");
    s.kill9();

    // Once more, after the answer: nothing is sent again, no job is added.
    let s = start(tmp.path(), &proxy);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fake.sent_to(111).len(), 1, "{:?}", fake.sent_to(111));
    assert_eq!(jobs_of(&s).len(), 1);
    assert_no_token(&s, &fake);
}

/// `POST /v1/jobs` with `source.telegram`: fetched with the bot (getFile afresh), or failed
/// with the code that says why.
#[test]
fn a_job_fetches_a_telegram_file_by_its_id() {
    let (fake, proxy) = start_fake();
    fake.file("voice-1", read_fixture("telegram_ru.oga"));
    fake.file("huge-1", vec![0u8; 21 * 1024 * 1024]);
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path(), &proxy);
    let post = |file_id: &str| -> Value {
        let body = json!({"source": {"telegram": {"file_id": file_id}}, "external_id": format!("crm-{file_id}"), "language": "ru"});
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let j = r.json();
        assert_eq!(
            (j["status"].as_str(), j["source"].as_str()),
            (Some("fetching"), Some("telegram"))
        );
        j
    };
    let ids: Vec<String> = ["voice-1", "missing-1", "huge-1"]
        .iter()
        .map(|f| post(f)["id"].as_str().unwrap().to_string())
        .collect();
    let end = |id: &str| -> Value {
        let mut j = Value::Null;
        wait_until("the job to end", Duration::from_secs(60), || {
            j = s.get(&format!("/v1/jobs/{id}")).json();
            j["status"] == "done" || j["status"] == "failed"
        });
        j
    };
    let done = end(&ids[0]);
    assert!(cer(done["text"].as_str().unwrap(), RU) < 0.15, "{done}");
    assert_eq!(end(&ids[1])["error"]["code"], "source_expired");
    assert_eq!(end(&ids[2])["error"]["code"], "source_too_large");
    // Nothing was posted in any chat for these.
    assert!(fake.sent.lock().unwrap().is_empty());
    assert_no_token(&s, &fake);
}

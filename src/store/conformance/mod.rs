//! The behaviour every [`Store`] backend must show, as tests run against each of them
//! ([`behaviour!`] in `sqlite` and `postgres`): search, crash-loop protection, one job per
//! Idempotency-Key under concurrent inserts, exclusive claims, a job finished once,
//! retention, the webhook outbox and the stored pieces of long jobs. And what every
//! [`Blobs`] backend must show ([`blobs_behaviour!`] in `blobs_fs` and `blobs_s3`): bytes
//! back as stored, by their hash, once per content, in one PUT or in parts, gone when
//! removed, and stored by a commit even when removed after being staged.

pub(super) mod clients;
pub(super) mod rows;

use std::collections::HashSet;

use super::{Blobs, Store};
use crate::engine::Transcript;
use crate::error::ErrorCode;
use crate::job::{
    Deleted, DeliveryStatus, Event, JobOptions, JobResult, ListFilter, NewJob, Priority, Status,
};

/// The tests of this module, for a backend opened by `$open` (an expression giving
/// `Option<impl Store>`; `None` skips, where the backend's server is not there).
macro_rules! behaviour {
    ($open:expr) => {
        #[test]
        fn full_text_search_over_transcripts_and_names() {
            if let Some(db) = $open {
                super::super::conformance::full_text_search(&db);
            }
        }
        #[test]
        fn crash_loop_protection() {
            if let Some(db) = $open {
                super::super::conformance::crash_loop_protection(&db);
            }
        }
        #[test]
        fn one_job_per_idempotency_key_under_concurrent_inserts() {
            if let Some(db) = $open {
                super::super::conformance::one_job_per_key(&db);
            }
        }
        #[test]
        fn concurrent_claims_take_each_job_once() {
            if let Some(db) = $open {
                super::super::conformance::exclusive_claims(&db);
            }
        }
        #[test]
        fn a_job_is_finished_once() {
            if let Some(db) = $open {
                super::super::conformance::finished_once(&db);
            }
        }
        #[test]
        fn retention_takes_finished_jobs_past_their_age() {
            if let Some(db) = $open {
                super::super::conformance::retention(&db);
            }
        }
        #[test]
        fn webhook_outbox_and_stored_pieces() {
            if let Some(db) = $open {
                super::super::conformance::outbox_and_pieces(&db);
            }
        }
        #[test]
        fn queue_limits_hold_under_concurrent_inserts() {
            if let Some(db) = $open {
                super::super::conformance::clients::queue_limits(&db);
            }
        }
        #[test]
        fn clients_take_turns_in_the_queue() {
            if let Some(db) = $open {
                super::super::conformance::clients::fair_share(&db);
            }
        }
        #[test]
        fn a_job_that_fetches_its_audio_is_claimed_stored_and_queued() {
            if let Some(db) = $open {
                super::super::conformance::fetches(&db);
            }
        }
        #[test]
        fn bot_offsets_and_replies_are_filed_once() {
            if let Some(db) = $open {
                super::super::conformance::chats(&db);
            }
        }
        #[test]
        fn a_row_that_does_not_read_is_an_error_never_a_default() {
            if let Some(db) = $open {
                super::super::conformance::rows::corrupt_rows(&db, |sql| db.execute_for_test(sql));
            }
        }
    };
}
pub(super) use behaviour;

pub(crate) fn new_job(name: &str) -> NewJob {
    NewJob {
        sha256: "00".repeat(32),
        size: 1,
        content_type: None,
        filename: Some(name.into()),
        external_id: None,
        source: None,
        options: JobOptions::default(),
        priority: Priority::Queued,
        idempotency_key: None,
        callback_url: None,
        client: None,
        limit: None,
        fetch: None,
    }
}

/// A done job's result with this text.
pub(super) fn result(language: &str, text: &str) -> JobResult {
    JobResult {
        transcript: Transcript {
            text: text.into(),
            language: language.into(),
            language_probability: None,
            duration: 1.0,
            segments: Vec::new(),
            words: None,
            review: Default::default(),
        },
        warnings: Vec::new(),
        task: "transcribe".into(),
    }
}

pub(super) fn search(db: &dyn Store, q: &str) -> Vec<String> {
    db.list(&ListFilter {
        search: Some(q.into()),
        limit: 10,
        ..Default::default()
    })
    .unwrap()
    .into_iter()
    .map(|j| j.filename.unwrap())
    .collect()
}

pub(super) fn full_text_search(db: &dyn Store) {
    let a = db.insert(new_job("a.oga")).unwrap().into_job().unwrap();
    let b = db.insert(new_job("b.oga")).unwrap().into_job().unwrap();
    db.insert(new_job("заказ_2.oga")).unwrap();
    db.finish_done(&a.id, &result("ru", "Где мой заказ? Жёлтая коробка."))
        .unwrap();
    db.finish_done(&b.id, &result("en", "Ask not what your country"))
        .unwrap();
    // Case, ё/е and prefixes fold; every word must match; query syntax is neutralised.
    assert_eq!(search(db, "ЗАКАЗ"), ["заказ_2.oga", "a.oga"]);
    assert_eq!(search(db, "желтая кор"), ["a.oga"]);
    assert_eq!(search(db, "country ask"), ["b.oga"]);
    assert_eq!(search(db, "country заказ"), Vec::<String>::new());
    assert_eq!(search(db, "\"ask) (*country:"), ["b.oga"]);
    // No words at all: no filter.
    assert_eq!(search(db, "&|!:*'"), ["заказ_2.oga", "b.oga", "a.oga"]);
    // A transcript replaced (retry) or a job deleted leaves no stale match.
    db.requeue(&b.id, true).unwrap();
    db.finish_done(&b.id, &result("en", "something else"))
        .unwrap();
    assert!(search(db, "country").is_empty());
    db.delete(&a.id).unwrap();
    assert_eq!(search(db, "заказ"), ["заказ_2.oga"]);
}

/// Issue #13, item 1: a job that was running each time the process died three times is
/// failed as `crashed_worker`, not requeued into a fourth crash; a shutdown does not count.
pub(super) fn crash_loop_protection(db: &dyn Store) {
    let a = db.insert(new_job("bomb.wav")).unwrap().into_job().unwrap();
    for round in 1..=3u32 {
        // A lease already run out: the process is as good as killed.
        let claimed = db.claim(-1, 30_000, 3).unwrap().expect("claimable");
        assert_eq!(
            (claimed.id.as_str(), claimed.attempts),
            (a.id.as_str(), round)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        // kill -9 here; the next process starts:
        let (requeued, failed) = db.recover_running(3).unwrap();
        if round < 3 {
            assert_eq!((requeued, failed), (1, 0), "round {round}");
        } else {
            assert_eq!((requeued, failed), (0, 1));
        }
    }
    let j = db.get(&a.id).unwrap().unwrap();
    assert_eq!(j.status, Status::Failed);
    assert_eq!(j.failure.unwrap().code, ErrorCode::CrashedWorker);
    assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
    // Retried by hand, it runs again from a clean count.
    db.requeue(&a.id, true).unwrap();
    let again = db.claim(60_000, 30_000, 3).unwrap().unwrap();
    assert_eq!(again.attempts, 1);
    assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
    // An interrupted (shut down) attempt is not counted.
    db.requeue_interrupted(&a.id).unwrap();
    assert_eq!(db.get(&a.id).unwrap().unwrap().attempts, 0);
    // A lease that ran out after the last attempt fails the job at the next claim.
    for _ in 0..3 {
        db.claim(-1, 30_000, 3).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
    let j = db.get(&a.id).unwrap().unwrap();
    assert_eq!(j.failure.unwrap().code, ErrorCode::CrashedWorker);
}

/// The same Idempotency-Key sent by 8 clients at once makes one job, and every client gets
/// that job.
pub(super) fn one_job_per_key(db: &dyn Store) {
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut n = new_job("same.oga");
                    n.idempotency_key = Some("k-1".into());
                    let inserted = db.insert(n).unwrap();
                    let created = inserted.created();
                    (inserted.into_job().unwrap().id, created)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let ids: HashSet<_> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
}

/// Four workers claiming at once take each of 24 jobs exactly once.
pub(super) fn exclusive_claims(db: &dyn Store) {
    let mut all = HashSet::new();
    for i in 0..24 {
        all.insert(
            db.insert(new_job(&format!("{i}.oga")))
                .unwrap()
                .into_job()
                .unwrap()
                .id,
        );
    }
    let claimed: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(j) = db.claim(60_000, 30_000, 3).unwrap() {
                        mine.push(j.id);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(claimed.len(), 24, "a job was claimed twice or not at all");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), all);
}

/// A finished job with a callback has one delivery in the outbox, due now, that keeps its id
/// through retries. Pieces stay while the job runs and go when it is done.
pub(super) fn outbox_and_pieces(db: &dyn Store) {
    let mut n = new_job("hook.oga");
    n.callback_url = Some("http://127.0.0.1:9/hook".into());
    let a = db.insert(n).unwrap().into_job().unwrap();
    let plain = db.insert(new_job("plain.oga")).unwrap().into_job().unwrap();
    let claimed = db.claim(60_000, 30_000, 3).unwrap().unwrap();
    let claimed2 = db.claim(60_000, 30_000, 3).unwrap().unwrap();
    assert_eq!(
        [claimed.id.as_str(), claimed2.id.as_str()]
            .into_iter()
            .collect::<HashSet<_>>(),
        [a.id.as_str(), plain.id.as_str()].into_iter().collect()
    );
    let piece = result("ru", "первая часть").transcript;
    db.save_piece(&a.id, 0, 16_000, &piece).unwrap();
    let kept = db.pieces(&a.id).unwrap();
    assert_eq!(
        kept.iter()
            .map(|p| (p.start, p.end, &p.transcript))
            .collect::<Vec<_>>(),
        [(0, 16_000, &piece)]
    );
    db.finish_done(&a.id, &result("ru", "всё")).unwrap();
    db.finish_done(&plain.id, &result("ru", "x")).unwrap();
    assert!(db.pieces(&a.id).unwrap().is_empty());
    let due = db.due_deliveries(16).unwrap();
    assert_eq!(due.len(), 1, "one delivery, for the job with a callback");
    assert_eq!(
        (due[0].job_id.as_str(), due[0].event),
        (a.id.as_str(), Event::Done)
    );
    db.delivery_retry(&due[0].id, "connection refused", 0)
        .unwrap();
    let again = db.due_deliveries(16).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, due[0].id, "a retry keeps its delivery id");
    db.delivery_done(&again[0].id).unwrap();
    assert!(db.due_deliveries(16).unwrap().is_empty());
    let last = db.latest_delivery(&a.id).unwrap().unwrap();
    assert_eq!((last.status, last.attempts), (DeliveryStatus::Delivered, 2));
    // Deleting the job takes its outbox rows with it; the audio is another job's too.
    assert_eq!(db.delete(&a.id).unwrap(), Deleted::AudioShared);
    assert!(db.latest_delivery(&a.id).unwrap().is_none());
    assert_eq!(
        db.delete(&plain.id).unwrap(),
        Deleted::AudioUnused("00".repeat(32))
    );
    assert_eq!(db.delete(&plain.id).unwrap(), Deleted::Missing);
}

/// A worker that lost its lease and finishes after another worker finished the job changes
/// nothing: the first transcript stays, and its webhook is queued once.
pub(super) fn finished_once(db: &dyn Store) {
    let mut n = new_job("once.oga");
    n.callback_url = Some("http://127.0.0.1:9/hook".into());
    let job = db.insert(n).unwrap().into_job().unwrap();
    let claimed = db.claim(60_000, 1_000_000, 3).unwrap().expect("the job");
    assert_eq!(claimed.id, job.id);
    db.finish_done(&job.id, &result("ru", "первый")).unwrap();
    db.finish_done(&job.id, &result("ru", "второй")).unwrap();
    db.finish_failed(&job.id, ErrorCode::InferenceFailed, "late")
        .unwrap();
    let got = db.get(&job.id).unwrap().unwrap();
    assert_eq!(got.status, Status::Done);
    assert_eq!(got.result.unwrap().transcript.text, "первый");
    let queued = db.due_deliveries(100).unwrap();
    let mine: Vec<_> = queued.iter().filter(|d| d.job_id == job.id).collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].event, Event::Done);
}

/// Retention picks finished jobs older than the age given, never queued or running ones;
/// a job it picks is gone after its delete.
/// A job with a source starts `fetching` with no audio; a claim leases it (one taker), a
/// retry time holds it back, `fetched` queues it with its audio once, a failure ends it, and
/// a retry by hand of a failed fetch fetches again.
pub(super) fn fetches(db: &dyn Store) {
    use crate::job::Source;
    let mut n = new_job("fetched.ogg");
    n.sha256 = String::new();
    n.size = 0;
    n.fetch = Some(Source::Url("https://files.example.com/a.ogg".into()));
    let job = db.insert(n.clone()).unwrap().into_job().unwrap();
    assert_eq!((job.status, job.has_audio()), (Status::Fetching, false));
    assert_eq!(job.fetch, n.fetch);
    // Claims: other fetching jobs of a shared database may come first; take ours.
    let mut mine = None;
    while let Some(j) = db.claim_fetch(60_000).unwrap() {
        if j.id == job.id {
            mine = Some(j);
            break;
        }
    }
    let claimed = mine.expect("the fetching job is claimed");
    assert_eq!(claimed.attempts, 1);
    let again = std::iter::from_fn(|| db.claim_fetch(60_000).unwrap()).find(|j| j.id == job.id);
    assert!(again.is_none(), "a leased fetch is not claimed twice");
    db.fetch_later(&job.id, crate::store::now_ms() - 1).unwrap();
    let again = std::iter::from_fn(|| db.claim_fetch(60_000).unwrap()).find(|j| j.id == job.id);
    assert_eq!(again.map(|j| j.attempts), Some(2));
    assert!(db.fetched(&job.id, &"ab".repeat(32), 1234).unwrap());
    assert!(
        !db.fetched(&job.id, &"cd".repeat(32), 1).unwrap(),
        "stored once"
    );
    let queued = db.get(&job.id).unwrap().unwrap();
    assert_eq!(
        (
            queued.status,
            queued.sha256.as_str(),
            queued.size,
            queued.attempts
        ),
        (Status::Queued, "ab".repeat(32).as_str(), 1234, 0)
    );
    // Another fails while fetching; a retry by hand fetches it again.
    let other = db.insert(n).unwrap().into_job().unwrap();
    db.finish_failed(&other.id, ErrorCode::SourceExpired, "gone")
        .unwrap();
    let failed = db.get(&other.id).unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.failure.unwrap().code, ErrorCode::SourceExpired);
    assert!(db.requeue(&other.id, true).unwrap());
    assert_eq!(db.get(&other.id).unwrap().unwrap().status, Status::Fetching);
    db.finish_failed(&other.id, ErrorCode::SourceExpired, "gone")
        .unwrap();
}

/// A bot's offset only moves forward; a reply is filed once by its id, is due with its job's
/// status, records its parts, and leaves the due list once sent, failed or put off.
pub(super) fn chats(db: &dyn Store) {
    use crate::job::{NewReply, ReplyStatus};
    let bot = format!("bot-{}", uuid::Uuid::now_v7());
    assert_eq!(db.bot_offset(&bot).unwrap(), 0);
    db.set_bot_offset(&bot, 42).unwrap();
    db.set_bot_offset(&bot, 41).unwrap();
    assert_eq!(
        db.bot_offset(&bot).unwrap(),
        42,
        "an offset never goes back"
    );

    let key = format!("telegram:{}", uuid::Uuid::now_v7());
    assert_eq!(db.job_by_key(&key).unwrap(), None);
    let mut n = new_job("voice.ogg");
    n.idempotency_key = Some(key.clone());
    let job = db.insert(n).unwrap().into_job().unwrap();
    assert_eq!(
        db.job_by_key(&key).unwrap().as_deref(),
        Some(job.id.as_str())
    );

    let tag = uuid::Uuid::now_v7().to_string();
    let reply = NewReply {
        id: format!("tg:{tag}:1"),
        job_id: Some(job.id.clone()),
        chat_id: -100123,
        reply_to: Some(7),
        language: "ru".into(),
        text: None,
        typing: true,
    };
    let fixed = NewReply {
        id: format!("tg:{tag}:refusal"),
        job_id: None,
        chat_id: 5,
        reply_to: None,
        language: "en".into(),
        text: Some("no".into()),
        typing: false,
    };
    assert!(db.file_reply(&reply).unwrap());
    assert!(!db.file_reply(&reply).unwrap(), "filed twice, kept once");
    assert!(db.file_reply(&fixed).unwrap());
    let mine = |db: &dyn Store| -> Vec<crate::job::Reply> {
        db.due_replies(1000)
            .unwrap()
            .into_iter()
            .filter(|r| r.id.contains(&tag))
            .collect()
    };
    let due = mine(db);
    assert_eq!(due.len(), 2, "{due:?}");
    assert_eq!(
        due[0].id, fixed.id,
        "a reply ready to send comes before one still waiting"
    );
    let r = due.iter().find(|r| r.id == reply.id).unwrap();
    assert_eq!(
        (
            r.chat_id,
            r.reply_to,
            r.typing,
            r.status,
            r.parts_sent,
            r.job_status
        ),
        (
            -100123,
            Some(7),
            true,
            ReplyStatus::Pending,
            0,
            Some(Status::Queued)
        )
    );
    assert!(!r.ready(), "a reply waits for its job");
    let f = due.iter().find(|r| r.id == fixed.id).unwrap();
    assert!(f.ready() && f.text.as_deref() == Some("no"));

    db.finish_failed(&job.id, ErrorCode::TranscriptionFailed, "x")
        .unwrap();
    db.reply_progress(&reply.id, 2).unwrap();
    let r = mine(db).into_iter().find(|r| r.id == reply.id).unwrap();
    assert_eq!((r.parts_sent, r.job_status), (2, Some(Status::Failed)));
    assert!(r.ready());

    db.reply_retry(&fixed.id, "429", crate::store::now_ms() + 60_000)
        .unwrap();
    db.reply_sent(&reply.id).unwrap();
    assert!(mine(db).is_empty(), "sent and put off: none due");
    db.reply_retry(&fixed.id, "429", crate::store::now_ms() - 1)
        .unwrap();
    let f = mine(db);
    assert_eq!((f.len(), f[0].attempts), (1, 2));
    db.reply_failed(&fixed.id, "403").unwrap();
    assert!(mine(db).is_empty());
}

pub(super) fn retention(db: &dyn Store) {
    let done = db.insert(new_job("done.oga")).unwrap().into_job().unwrap();
    let failed = db
        .insert(new_job("failed.oga"))
        .unwrap()
        .into_job()
        .unwrap();
    let waiting = db
        .insert(new_job("waiting.oga"))
        .unwrap()
        .into_job()
        .unwrap();
    db.finish_done(&done.id, &result("ru", "да")).unwrap();
    db.finish_failed(&failed.id, ErrorCode::Corrupt, "bad")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(db.expired(1).unwrap().is_empty(), "nothing is a day old");
    let mut old = db.expired(0).unwrap();
    old.sort();
    let mut want = vec![done.id.clone(), failed.id.clone()];
    want.sort();
    assert_eq!(old, want, "finished jobs only");
    for id in &old {
        db.delete(id).unwrap();
    }
    assert!(db.expired(0).unwrap().is_empty());
    assert!(db.get(&waiting.id).unwrap().is_some());
}

/// The tests of [`Blobs`], for a store opened by `$open` (an expression giving
/// `Option<(impl Blobs, guard)>`; `None` skips; the guard keeps a temp folder alive).
macro_rules! blobs_behaviour {
    ($open:expr, stage_stores: $stage_stores:expr) => {
        #[test]
        fn bytes_come_back_by_hash_stored_once_and_go_when_removed() {
            if let Some((blobs, _keep)) = $open {
                super::super::conformance::blob_round_trip(&blobs, 100_000);
            }
        }
        #[test]
        fn an_upload_past_one_part_comes_back_whole() {
            if let Some((blobs, _keep)) = $open {
                super::super::conformance::blob_round_trip(&blobs, (10 << 20) + 12_345);
            }
        }
        #[test]
        fn a_staged_upload_commits_even_if_removed_in_between() {
            if let Some((blobs, _keep)) = $open {
                super::super::conformance::blob_staged(&blobs, $stage_stores);
            }
        }
    };
}
pub(super) use blobs_behaviour;

/// Bytes no earlier run stored: the run's own id, then a pattern.
pub(super) fn unique_bytes(len: usize) -> Vec<u8> {
    let mut bytes = uuid::Uuid::now_v7().as_bytes().to_vec();
    bytes.extend((0..len.saturating_sub(16)).map(|i| (i * 7 + i / 251) as u8));
    bytes
}

pub(super) fn blob_round_trip(blobs: &dyn Blobs, len: usize) {
    use sha2::Digest;
    blobs.check().expect("the store answers");
    let bytes = unique_bytes(len);
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let store = |bytes: &[u8]| {
        let mut p = blobs.begin().unwrap();
        for chunk in bytes.chunks(64 << 10) {
            p.write(chunk).unwrap();
        }
        assert_eq!(p.sha256(), sha);
        blobs.commit(p).unwrap()
    };
    assert_eq!(store(&bytes), (sha.clone(), len as u64));
    assert!(blobs.read(&sha).unwrap() == bytes, "the bytes come back");
    // The same bytes again: the same blob, still readable.
    assert_eq!(store(&bytes), (sha.clone(), len as u64));
    assert!(blobs.read(&sha).unwrap() == bytes);
    // An upload given up on is not stored.
    let mut p = blobs.begin().unwrap();
    p.write(&unique_bytes(1000)).unwrap();
    let dropped = p.sha256();
    drop(p);
    assert_eq!(
        blobs.read(&dropped).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    blobs.remove(&sha).unwrap();
    assert_eq!(
        blobs.read(&sha).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    blobs
        .remove(&sha)
        .expect("removing what is not there is not an error");
}

/// Staging then committing stores the bytes; staging the same bytes again reports them as
/// already there; and when they are removed between the stage and the commit (the last job
/// using them deleted meanwhile), the commit stores them again. `stage_stores`: whether the
/// backend's stage already stores (a bucket: the PUT) or only prepares (a folder: the fsync).
pub(super) fn blob_staged(blobs: &dyn Blobs, stage_stores: bool) {
    let bytes = unique_bytes(50_000);
    let spool = |bytes: &[u8]| {
        let mut p = blobs.begin().unwrap();
        p.write(bytes).unwrap();
        p
    };
    let mut p = spool(&bytes);
    assert_eq!(blobs.stage(&mut p).unwrap(), stage_stores);
    let (sha, _) = blobs.commit(p).unwrap();
    assert!(blobs.read(&sha).unwrap() == bytes);

    let mut again = spool(&bytes);
    assert!(
        !blobs.stage(&mut again).unwrap(),
        "bytes already stored are not sent again"
    );
    blobs.remove(&sha).unwrap();
    blobs.commit(again).unwrap();
    assert!(
        blobs.read(&sha).unwrap() == bytes,
        "removed between stage and commit, the bytes are stored again"
    );
    blobs.remove(&sha).unwrap();
}

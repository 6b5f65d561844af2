//! The PostgreSQL store's tests: the shared ones in `conformance`, and what several nodes
//! on one database need. They run where `EARSHOT_TEST_DATABASE_URL` names a server
//! (`scripts/test.sh` starts one), and pass without running elsewhere.

use super::super::conformance::{new_job, result};
use super::*;
use crate::store::{Outbox, Queue};

/// A fresh database on the server that `EARSHOT_TEST_DATABASE_URL` names (scripts/test.sh
/// starts one). Without it the tests are skipped, except under CI, where they must run.
fn open() -> Option<Postgres> {
    let Ok(url) = std::env::var("EARSHOT_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: scripts/test.sh starts a server and sets EARSHOT_TEST_DATABASE_URL"
        );
        eprintln!("skipped: EARSHOT_TEST_DATABASE_URL is not set (scripts/test.sh sets it)");
        return None;
    };
    let mut admin = postgres::Client::connect(&url, NoTls).expect("the test server");
    let name = format!("earshot_t_{}", uuid::Uuid::now_v7().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let mut config: postgres::Config = url.parse().unwrap();
    config.dbname(&name);
    Some(Postgres::with_config(config).expect("the test database"))
}

super::super::conformance::behaviour!(open());

/// The "needs review" list can read the partial index (with sequential scans off, as
/// they would be too costly on a big table; a tiny one is scanned either way).
#[test]
fn the_review_list_uses_its_index() {
    let Some(db) = open() else { return };
    let mut c = db.conn().unwrap();
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = c
        .query(
            &format!(
                "EXPLAIN SELECT id FROM jobs WHERE true{} ORDER BY id DESC LIMIT 50",
                review_clause(Some(true))
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute("RESET enable_seqscan").unwrap();
    assert!(plan.iter().any(|l| l.contains("jobs_review")), "{plan:?}");
}

/// The connection settings of `db`'s database, for another node on it.
fn config_of(db: &Postgres) -> postgres::Config {
    let name: String = db
        .conn()
        .unwrap()
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    let mut config: postgres::Config = std::env::var("EARSHOT_TEST_DATABASE_URL")
        .unwrap()
        .parse()
        .unwrap();
    config.dbname(&name);
    config
}

/// Search finds other forms of a Russian or English word (stems), beyond SQLite's prefixes.
#[test]
fn search_finds_russian_and_english_word_forms() {
    let Some(db) = open() else { return };
    let a = db.insert(new_job("a.oga")).unwrap().into_job().unwrap();
    let b = db.insert(new_job("b.oga")).unwrap().into_job().unwrap();
    db.finish_done(&a.id, &result("ru", "Где мои заказы? Доставка опоздала."))
        .unwrap();
    db.finish_done(&b.id, &result("en", "The parcels were delivered"))
        .unwrap();
    let search = |q| super::super::conformance::search(&db, q);
    assert_eq!(search("заказ доставку"), ["a.oga"]);
    assert_eq!(search("parcel deliver"), ["b.oga"]);
    assert!(search("заказ parcel").is_empty());
}

/// A running job whose lease holds belongs to another node: a node starting up leaves
/// it; deliveries read by one node are not handed to another until their lease runs out.
#[test]
fn leases_keep_other_nodes_off() {
    let Some(db) = open() else { return };
    let mut n = new_job("hook.oga");
    n.callback_url = Some("http://127.0.0.1:9/hook".into());
    let a = db.insert(n).unwrap().into_job().unwrap();
    db.claim(60_000, 30_000, 3).unwrap().unwrap();
    assert_eq!(db.recover_running(3).unwrap(), (0, 0));
    assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
    db.finish_done(&a.id, &result("ru", "x")).unwrap();
    assert_eq!(db.due_deliveries(16).unwrap().len(), 1);
    assert!(
        db.due_deliveries(16).unwrap().is_empty(),
        "leased to the first reader"
    );
}

/// The audio lock of one hash is held by one node at a time (each `Postgres` here stands
/// for a node: its own pool, so its own sessions); other hashes do not wait.
#[test]
fn the_audio_lock_spans_nodes() {
    let Some(node_a) = open() else { return };
    let node_b = Postgres::with_config(config_of(&node_a)).unwrap();
    let held = node_a.lock_audio("aa").unwrap();
    drop(node_b.lock_audio("bb").unwrap());
    let step = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let _l = node_b.lock_audio("aa").unwrap();
            step.store(1, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            step.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "node B did not wait"
        );
        drop(held);
        waiter.join().unwrap();
    });
    assert_eq!(step.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A job queued through one node wakes the workers of another at once (`LISTEN/NOTIFY`),
/// and so does a retry.
#[test]
fn a_job_queued_on_one_node_wakes_another() {
    let Some(node_a) = open() else { return };
    let node_b = Postgres::with_config(config_of(&node_a)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    node_b.on_queued(Box::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    let wait = std::time::Duration::from_secs(1);
    // The listener connects on its own thread: the first inserts may come before it.
    let woken = (0..20).any(|i| {
        node_a.insert(new_job(&format!("{i}.oga"))).unwrap();
        rx.recv_timeout(wait).is_ok()
    });
    assert!(woken, "no wake-up for jobs queued on the other node");
    while rx.try_recv().is_ok() {}
    let job = node_a.claim(60_000, 30_000, 3).unwrap().unwrap();
    node_a.finish_done(&job.id, &result("ru", "x")).unwrap();
    while rx.try_recv().is_ok() {}
    node_a.requeue(&job.id, true).unwrap();
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("a retry wakes the other node");
}

/// Two nodes starting on one new database migrate it once.
#[test]
fn nodes_starting_together_migrate_once() {
    let Some(db) = open() else { return };
    let config = config_of(&db);
    db.conn()
        .unwrap()
        .batch_execute("DROP TABLE pieces, deliveries, jobs, earshot_migrations")
        .unwrap();
    std::thread::scope(|s| {
        let nodes: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Postgres::with_config(config.clone()).map(|_| ())))
            .collect();
        for n in nodes {
            n.join().unwrap().expect("every node starts");
        }
    });
    let versions: i64 = db
        .conn()
        .unwrap()
        .query_one("SELECT count(*) FROM earshot_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions as usize, MIGRATIONS.len());
}

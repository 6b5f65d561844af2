//! What both record stores must do for several clients (issue #39): queue limits counted in
//! the inserting transaction, in all and per client, and turns between clients in the claim.

use std::collections::HashSet;

use super::{new_job, result};
use crate::job::{Inserted, QueueLimit};
use crate::store::Store;

fn of(client: &str, name: &str, limit: Option<QueueLimit>) -> crate::job::NewJob {
    let mut n = new_job(name);
    n.client = Some(client.into());
    n.limit = limit;
    n
}

/// Eight inserts at once under a limit of 3 queued jobs make 3 jobs, not more (issue #40,
/// item 8: the count and the insert are one step); a client over its own limit is refused
/// while another client's job still goes in; an insert without a limit (a synchronous
/// request) is never refused.
pub(in crate::store) fn queue_limits(db: &dyn Store) {
    let limit = QueueLimit {
        total: 3,
        per_client: None,
    };
    let made: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    db.insert(of("a", &format!("{i}.oga"), Some(limit)))
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| matches!(h.join().unwrap(), Inserted::New(_)))
            .collect()
    });
    assert_eq!(made.iter().filter(|m| **m).count(), 3, "{made:?}");
    match db.insert(of("b", "b.oga", Some(limit))).unwrap() {
        Inserted::Full(full) => assert_eq!((full.queued, full.limit, full.client), (3, 3, false)),
        other => panic!("over the service's limit: {other:?}"),
    }
    assert!(db.insert(of("b", "sync.oga", None)).unwrap().created());
    // Per client: "a" has 3 queued, "b" has 1.
    let per_client = QueueLimit {
        total: 100,
        per_client: Some(3),
    };
    match db.insert(of("a", "a4.oga", Some(per_client))).unwrap() {
        Inserted::Full(full) => assert_eq!((full.queued, full.limit, full.client), (3, 3, true)),
        other => panic!("over the client's limit: {other:?}"),
    }
    assert!(db
        .insert(of("b", "b2.oga", Some(per_client)))
        .unwrap()
        .created());
}

/// One worker, client "a" with ten notes queued, then "b" with two: b's notes are not kept
/// behind a's backlog; each claim goes to the client whose recent work is least.
pub(in crate::store) fn fair_share(db: &dyn Store) {
    for i in 0..10 {
        db.insert(of("a", &format!("a{i}.oga"), None)).unwrap();
    }
    let b: HashSet<String> = (0..2)
        .map(|i| {
            db.insert(of("b", &format!("b{i}.oga"), None))
                .unwrap()
                .into_job()
                .unwrap()
                .id
        })
        .collect();
    let mut order = Vec::new();
    while let Some(j) = db.claim(60_000, 30_000, 3).unwrap() {
        order.push(j.id.clone());
        db.finish_done(&j.id, &result("ru", "да")).unwrap();
    }
    assert_eq!(order.len(), 12);
    let b_at: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, id)| b.contains(*id))
        .map(|(i, _)| i)
        .collect();
    // Turns: a, b, a, a (level, and a's jobs are older), b: both of b's in the first five.
    assert!(
        b_at.iter().all(|&i| i < 5),
        "b's two notes at claims {b_at:?} of 12; they should take turns with a's"
    );
}

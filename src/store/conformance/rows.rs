//! What both record stores do with a row that does not read (issue #35): an error naming the
//! job and the column, never a default.

use crate::job::{ListFilter, Priority, Status};
use crate::store::{StorageError, Store};

use super::new_job;

/// A row changed behind the store's back (`raw` runs SQL on it) does not read as anything
/// but an error: an unknown status is not a queued job, unreadable options are not the
/// defaults (such a job fails when claimed, and is not run), and a list leaves the row out
/// while showing the others.
pub(in crate::store) fn corrupt_rows(db: &dyn Store, raw: impl Fn(&str)) {
    let bad_status = db
        .insert(new_job("status.oga"))
        .unwrap()
        .into_job()
        .unwrap();
    let bad_options = db
        .insert(new_job("options.oga"))
        .unwrap()
        .into_job()
        .unwrap();
    let fine = db.insert(new_job("fine.oga")).unwrap().into_job().unwrap();
    raw(&format!(
        "UPDATE jobs SET status = 'paused' WHERE id = '{}'",
        bad_status.id
    ));
    raw(&format!(
        "UPDATE jobs SET options = '{{\"translate\": \"yes\"}}' WHERE id = '{}'",
        bad_options.id
    ));
    let corrupt_column = |id: &str| match db.get(id) {
        Err(StorageError::Corrupt {
            id: got, column, ..
        }) => {
            assert_eq!(got, id);
            column
        }
        other => panic!("{id}: {other:?}"),
    };
    assert_eq!(corrupt_column(&bad_status.id), "status");
    assert_eq!(corrupt_column(&bad_options.id), "options");
    let listed = db
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [fine.id.as_str()]
    );
    // The job with unreadable options is claimed first (it is older than `fine`): the claim
    // fails it instead of running it with the defaults, and the next claim takes `fine`.
    assert!(matches!(
        db.claim(60_000, 30_000, 3),
        Err(StorageError::Corrupt { .. })
    ));
    let next = db
        .claim(60_000, 30_000, 3)
        .unwrap()
        .expect("the readable job");
    assert_eq!(next.id, fine.id);
    assert!(db.claim(60_000, 30_000, 3).unwrap().is_none());
    let counts = db.count_by_status();
    assert!(
        matches!(counts, Err(StorageError::Corrupt { .. })),
        "a status this version does not know is not counted as another: {counts:?}"
    );
    raw(&format!(
        "UPDATE jobs SET status = 'failed' WHERE id = '{}'",
        bad_status.id
    ));
    let counts = db.count_by_status().unwrap();
    assert!(counts.contains(&(Status::Failed, 2)), "{counts:?}");
    assert!(counts.contains(&(Status::Running, 1)), "{counts:?}");
    assert_eq!(db.queued_count(Some(Priority::Sync)).unwrap(), 0);
}

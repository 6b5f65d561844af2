//! Where the service and docs/api.md disagreed (issue #40), one test each, against a real
//! server: the ones fixed so far.

use crate::common::server::Server;
use crate::common::*;

fn post(s: &Server) -> String {
    let r = s.req(
        "POST",
        "/v1/jobs",
        &[("Content-Type", "audio/ogg")],
        &read_fixture("telegram_jfk.oga"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// Item 5: `has_more` is true exactly when another page follows; the exact last page says
/// false (it used to say true, and the next page was empty).
#[test]
fn has_more_is_exact() {
    let s = Server::start("tiny.en", &[]);
    let ids: Vec<String> = (0..3).map(|_| post(&s)).collect();
    let page = |q: &str| s.get(&format!("/v1/jobs?{q}")).json();
    let all = page("limit=3");
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    assert_eq!(all["has_more"], false, "the exact last page");
    let first = page("limit=2");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let last_id = first["data"][1]["id"].as_str().unwrap();
    let second = page(&format!("limit=2&before={last_id}"));
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["has_more"], false);
    assert_eq!(second["data"][0]["id"].as_str(), Some(ids[0].as_str()));
}

/// Item 9: `filename*` is as safe as `filename`: no folders, no leading dots, whatever the
/// upload was called; a Unicode name survives in `filename*`.
#[test]
fn the_download_name_names_no_path_in_either_form() {
    let s = Server::start("tiny.en", &[]);
    for (given, ascii, star) in [
        ("../../etc/passwd", "passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini", "boot.ini"),
        (
            "заказ/../Жёлтая коробка.oga",
            "______ _______.oga",
            "%D0%96%D1%91%D0%BB%D1%82%D0%B0%D1%8F%20%D0%BA%D0%BE%D1%80%D0%BE%D0%B1%D0%BA%D0%B0.oga",
        ),
        ("..", "", ""),
    ] {
        let r = s.multipart(
            "/v1/jobs",
            &[],
            Some((given, &read_fixture("telegram_jfk.oga"))),
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["id"].as_str().unwrap().to_string();
        let a = s.get(&format!("/v1/jobs/{id}/audio"));
        assert_eq!(a.status, 200);
        let (ascii, star) = if ascii.is_empty() {
            (format!("{id}.bin"), format!("{id}.bin"))
        } else {
            (ascii.to_string(), star.to_string())
        };
        assert_eq!(
            a.header("content-disposition"),
            Some(format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{star}").as_str()),
            "uploaded as {given:?}"
        );
    }
}

/// Item 10: a signed audio URL keeps working when the same API keys are listed in another
/// order (a restart with the list rewritten), and stops when a key changes.
#[test]
fn signed_urls_do_not_depend_on_the_order_of_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = {
        let s = Server::start_in(
            dir.path(),
            "tiny.en",
            &["--api-key", "key-a", "--api-key", "key-b"],
        );
        let r = s.req(
            "POST",
            "/v1/jobs",
            &[
                ("Content-Type", "audio/ogg"),
                ("Authorization", "Bearer key-a"),
            ],
            &read_fixture("telegram_jfk.oga"),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        let url = r.json()["audio_url"].as_str().unwrap().to_string();
        assert!(url.contains("sig="), "{url}");
        assert_eq!(s.get(&url).status, 200);
        url
    };
    let s = Server::start_in(
        dir.path(),
        "tiny.en",
        &["--api-key", "key-b", "--api-key", "key-a"],
    );
    assert_eq!(s.get(&url).status, 200, "the same keys in another order");
    drop(s);
    let s = Server::start_in(
        dir.path(),
        "tiny.en",
        &["--api-key", "key-b", "--api-key", "key-c"],
    );
    assert_eq!(s.get(&url).status, 401, "a key changed");
}

use super::*;

fn q(name: &str) -> Queued {
    parse_queued(name).unwrap_or_else(|| panic!("not a queued log: {name}"))
}

#[test]
fn queued_names_map_to_zeek_archivers_archive_names() {
    let cases = [
        (
            "conn__2026-12-06-09-49-25__2026-12-06-10-00-00__.log",
            "2026-12-06",
            "conn.09:49:25-10:00:00.log.gz",
        ),
        (
            "test__2020-07-16-09-43-10__2020-07-16-09-43-10__log_suffix=logger-test__.log",
            "2020-07-16",
            "test.09:43:10-09:43:10-logger-test.log.gz",
        ),
        // Other metadata is dropped; empty metadata is fine.
        (
            "test__2020-07-16-09-43-10__2020-07-16-09-43-10__log_suffix=logger-test,pid=4711__.log",
            "2020-07-16",
            "test.09:43:10-09:43:10-logger-test.log.gz",
        ),
        (
            "test__2020-07-16-09-43-10__2020-07-16-09-43-10____.log",
            "2020-07-16",
            "test.09:43:10-09:43:10.log.gz",
        ),
    ];
    for (name, day, archived) in cases {
        let q = q(name);
        assert_eq!(
            (q.day.as_str(), q.archive_name().as_str()),
            (day, archived),
            "{name}"
        );
    }
    // What zeek-archiver skips is left alone.
    for name in [
        "conn.log",
        ".tmp.conn.log",
        "conn__2026-12-06__2026-12-06-10-00-00__.log",
        "test__2020-07-16-09-43-10__2020-07-16-09-43-10__log_suffix,invalid=4711__.log",
        "test__2020-07-16-09-43-10__2020-07-16-09-43-10__log_suffix=logger-test,__.log",
        "test__2020-07-16-09-43-10__2020-07-16-09-43-10__ __.log",
    ] {
        assert_eq!(parse_queued(name), None, "{name}");
    }
}

#[test]
fn the_script_rotates_into_the_queue_without_a_post_processor() {
    let mut c = Configuration {
        nodes: vec![
            Node::new("manager", "a", Role::Manager),
            Node::new("w", "a", Role::Worker),
        ],
        ..Configuration::default()
    };
    let s = node_script(&c, Path::new("/srv/cluster/log-queue"), 3600);
    for line in [
        "redef Log::default_rotation_dir = \"/srv/cluster/log-queue\";",
        "redef Log::rotation_format_func = rotation_format;",
        "redef Log::default_rotation_postprocessor_cmd = \"\";",
        "redef Log::default_rotation_interval = 3600 secs;",
        "redef LogAscii::enable_leftover_log_rotation = T;",
    ] {
        assert!(s.contains(line), "{line}\n{s}");
    }
    assert!(!s.contains("log_suffix"), "one logger: no suffix\n{s}");
    assert!(writes_logs(&c.nodes[0], &c) && !writes_logs(&c.nodes[1], &c));
    // Several loggers: each names its files by its node.
    c.nodes.push(Node::new("logger-1", "a", Role::Logger));
    c.nodes.push(Node::new("logger-2", "a", Role::Logger));
    let s = node_script(&c, Path::new("/q"), 5);
    assert!(s.contains("log_suffix=%s__\", base, Cluster::node)"), "{s}");
    assert!(!writes_logs(&c.nodes[0], &c) && writes_logs(&c.nodes[2], &c));
    // No cluster: every node writes its own logs.
    let alone = Configuration {
        nodes: vec![Node::new("z", "a", Role::Worker)],
        ..Configuration::default()
    };
    assert!(writes_logs(&alone.nodes[0], &alone));
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(File::open(path).expect("archive"))
        .read_to_string(&mut s)
        .expect("gzip");
    s
}

fn queue_one(queue: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(queue).expect("queue");
    let p = queue.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const NAME: &str = "conn__2026-12-06-09-49-25__2026-12-06-10-00-00__.log";

#[test]
fn a_file_is_archived_compressed_and_removed_from_the_queue() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (queue, archive) = (tmp.path().join("q"), tmp.path().join("a"));
    let src = queue_one(&queue, NAME, "line 1\nline 2\n");
    let steps = std::cell::RefCell::new(Vec::new());
    let done = archive_file(&src, &q(NAME), &archive, 6, &|s| steps.borrow_mut().push(s))
        .expect("archived");
    assert_eq!(
        done.path,
        archive.join("2026-12-06/conn.09:49:25-10:00:00.log.gz")
    );
    assert_eq!(done.bytes, 14);
    assert_eq!(gunzip(&done.path), "line 1\nline 2\n");
    assert!(!src.exists());
    assert_eq!(*steps.borrow(), [Step::Written, Step::Renamed]);
    assert_eq!(queued(&queue), []);
}

#[test]
fn a_run_stopped_at_any_step_archives_each_line_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (queue, archive) = (tmp.path().join("q"), tmp.path().join("a"));
    let text = "a\nb\nc\n";
    let dest = archive.join("2026-12-06/conn.09:49:25-10:00:00.log.gz");

    // Stopped after writing: a temporary file left, the queued file kept.
    let src = queue_one(&queue, NAME, text);
    let _ = std::panic::catch_unwind(|| {
        archive_file(&src, &q(NAME), &archive, 6, &|s| {
            if s == Step::Written {
                panic!("killed");
            }
        })
    });
    assert!(src.exists() && !dest.exists());
    assert_eq!(remove_leftovers(&archive), 1);
    assert_eq!(remove_leftovers(&archive), 0);

    // Stopped after the rename: the next run removes the queued file and
    // writes nothing twice.
    let _ = std::panic::catch_unwind(|| {
        archive_file(&src, &q(NAME), &archive, 6, &|s| {
            if s == Step::Renamed {
                panic!("killed");
            }
        })
    });
    assert!(src.exists() && dest.exists());
    let done = archive_file(&src, &q(NAME), &archive, 6, &|_| {}).expect("archived");
    assert_eq!(done.path, dest);
    assert!(!src.exists());
    assert_eq!(gunzip(&dest), text);
    assert_eq!(kept(&archive).len(), 1);

    // Another log under the same name (of the same length, even) is
    // archived beside it, not taken for it.
    let src = queue_one(&queue, NAME, "d\ne\nf\n");
    let done = archive_file(&src, &q(NAME), &archive, 6, &|_| {}).expect("archived");
    assert_eq!(
        done.path,
        archive.join("2026-12-06/conn.09:49:25-10:00:00-2.log.gz")
    );
    assert_eq!(gunzip(&done.path), "d\ne\nf\n");
    assert_eq!(gunzip(&dest), text);
}

#[test]
fn an_archive_error_leaves_the_file_queued() {
    let tmp = tempfile::tempdir().expect("tmp");
    let queue = tmp.path().join("q");
    let src = queue_one(&queue, NAME, "x\n");
    // The archive "directory" is a file: its day directory cannot be made.
    let archive = tmp.path().join("a");
    std::fs::write(&archive, "").expect("file");
    let err = archive_file(&src, &q(NAME), &archive, 6, &|_| {}).expect_err("fails");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot archive {}: creating its day directory: ",
            src.display()
        )),
        "{err}"
    );
    assert!(src.exists());
}

#[test]
fn expiry_takes_the_oldest_days_and_keeps_under_the_cap() {
    let f = |day: &str, name: &str, bytes| Kept {
        day: day.into(),
        path: PathBuf::from(format!("{day}/{name}")),
        bytes,
    };
    let files = [
        f("2026-11-30", "conn", 100),
        f("2026-12-01", "conn", 100),
        f("2026-12-05", "conn", 100),
        f("2026-12-06", "conn", 100),
    ];
    let paths = |v: Vec<PathBuf>| {
        v.into_iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    };
    // Off: keep everything.
    assert!(expired(&files, "2026-12-06", 0, 0).is_empty());
    // Two days kept: today and yesterday.
    assert_eq!(
        paths(expired(&files, "2026-12-06", 2, 0)),
        ["2026-11-30/conn", "2026-12-01/conn"]
    );
    // Across a month's end: six days are 12-01 to 12-06.
    assert_eq!(
        paths(expired(&files, "2026-12-06", 6, 0)),
        ["2026-11-30/conn"]
    );
    assert!(expired(&files, "2026-12-06", 7, 0).is_empty());
    // A cap: the oldest go first until the rest fits.
    assert_eq!(
        paths(expired(&files, "2026-12-06", 0, 250)),
        ["2026-11-30/conn", "2026-12-01/conn"]
    );
}

#[test]
fn calendar_days() {
    assert_eq!(civil(0), "1970-01-01");
    assert_eq!(days_before("2026-03-01", 1), "2026-02-28");
    assert_eq!(days_before("2024-03-01", 1), "2024-02-29");
    assert_eq!(days_before("2027-01-01", 1), "2026-12-31");
    assert_eq!(days_before("2026-12-06", 0), "2026-12-06");
}

#[test]
fn the_floor_is_told_once_per_crossing() {
    assert_eq!(
        crossing(false, 4.0, 5.0),
        Some(Crossing::Below { free: 4.0 })
    );
    assert_eq!(crossing(true, 3.0, 5.0), None);
    assert_eq!(
        crossing(true, 6.0, 5.0),
        Some(Crossing::Above { free: 6.0 })
    );
    assert_eq!(crossing(false, 50.0, 5.0), None);
    let here = free_percent(Path::new("/")).expect("statvfs");
    assert!((0.0..=100.0).contains(&here));
}

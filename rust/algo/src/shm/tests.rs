//! Several "processes" in one: each `Store::open_private` has its own
//! segment and lock, and dropping it is its exit (the kernel drops the lock
//! as it would at a process's end).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::run::{random_u64, Run};
use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("pepperpy-shm-{:016x}", random_u64()));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn series(kind: Kind, name: &str, mode: Mode, labels: &[(&str, &str)]) -> Series {
    Series {
        kind,
        mode,
        namespace: String::new(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        description: format!("{name} help"),
        bounds: if kind == Kind::Histogram {
            vec![0.5, 1.0]
        } else {
            vec![]
        },
    }
}

fn counter(name: &str) -> Series {
    series(Kind::Counter, name, Mode::Sum, &[])
}

fn open(dir: &Path) -> Arc<Store> {
    Store::open_private(dir, Previous::Discard).expect("open")
}

/// The value of `name`'s only series (or of the one labelled `pid`).
fn value_of(out: &[FamilyOut], name: &str) -> Option<Value> {
    let family = out.iter().find(|f| f.family.name == name)?;
    Some(family.series.first()?.value.clone())
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("list").count()
}

#[test]
fn counters_sum_over_live_and_dead_processes_exactly() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let a = open(&dir.0);
    let b = open(&dir.0);
    a.slot(&counter("jobs_total"))
        .expect("slot")
        .add(3)
        .expect("add");
    b.slot(&counter("jobs_total"))
        .expect("slot")
        .add(4)
        .expect("add");
    let out = reader.collect("").expect("collect");
    assert_eq!(value_of(&out, "jobs_total"), Some(Value::Counter(7)));
    drop(a); // exits: its 3 are folded into the retained totals
    let out = reader.collect("").expect("collect");
    assert_eq!(value_of(&out, "jobs_total"), Some(Value::Counter(7)));
    assert!(std::fs::read_dir(&dir.0)
        .expect("list")
        .any(|e| e.expect("entry").file_name() == "retained.seg"));
    b.slot(&counter("jobs_total"))
        .expect("slot")
        .add(1)
        .expect("add");
    let out = reader.collect("").expect("collect");
    assert_eq!(value_of(&out, "jobs_total"), Some(Value::Counter(8)));
}

#[test]
fn two_hundred_restarts_leave_exact_totals_and_a_bounded_directory() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let mut most = 0;
    for i in 0..200u64 {
        let worker = open(&dir.0); // each start folds the ones before it
        worker
            .slot(&counter("requests_total"))
            .expect("slot")
            .add(i + 1)
            .expect("add");
        worker
            .slot(&series(Kind::Gauge, "busy", Mode::Sum, &[]))
            .expect("slot")
            .set(1.0);
        most = most.max(files(&dir.0));
    }
    // lock, run, retained, the reader's segment, one worker, one dead one
    assert!(most <= 6, "{most} files");
    let out = reader.collect("").expect("collect");
    assert_eq!(
        value_of(&out, "requests_total"),
        Some(Value::Counter(200 * 201 / 2))
    );
    assert_eq!(
        value_of(&out, "busy"),
        None,
        "a dead process's gauge is dropped"
    );
    assert!(files(&dir.0) <= 4);
}

#[test]
fn histograms_sum_buckets_and_keep_min_and_max() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let a = open(&dir.0);
    let b = open(&dir.0);
    let h = series(
        Kind::Histogram,
        "latency_seconds",
        Mode::Sum,
        &[("path", "/")],
    );
    for v in [0.1, 0.7] {
        a.slot(&h).expect("slot").observe(v);
    }
    b.slot(&h).expect("slot").observe(3.0);
    drop(b);
    let Some(Value::Histogram(t)) =
        value_of(&reader.collect("").expect("collect"), "latency_seconds")
    else {
        panic!("a histogram")
    };
    assert_eq!(t.counts, vec![1, 1, 1]);
    assert_eq!(t.count(), 3);
    assert!((t.sum - 3.8).abs() < 1e-12);
    assert_eq!(t.min_max(), Some((0.1, 3.0)));
}

#[test]
fn a_histogram_is_read_consistently_while_threads_write_it() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let writer = open(&dir.0);
    let h = series(Kind::Histogram, "h", Mode::Sum, &[]);
    let slot = writer.slot(&h).expect("slot");
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let slot = slot.clone();
            scope.spawn(move || {
                for _ in 0..20_000 {
                    slot.observe(0.75);
                }
            });
        }
        for _ in 0..200 {
            let Some(Value::Histogram(t)) = value_of(&reader.collect("").expect("collect"), "h")
            else {
                panic!("a histogram")
            };
            // Every observation is 0.75: a torn read would break these.
            assert_eq!(t.counts[1], t.count());
            assert_eq!(t.sum, 0.75 * t.count() as f64);
        }
    });
    assert_eq!(slot.totals().count(), 40_000);
}

/// A histogram's words (sequence, sum, min, max, 3 counts) in a mapping
/// of their own.
fn histogram_words(dir: &TempDir) -> super::map::Mapping {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.0.join("words"))
        .expect("file");
    file.set_len(4096).expect("length");
    super::map::Mapping::new(&file, 4096).expect("mapping")
}

#[test]
fn a_reader_waits_for_a_writer_preempted_inside_its_update() {
    let dir = TempDir::new();
    let map = histogram_words(&dir);
    let words = super::format::HISTOGRAM_HEAD + 3;
    // The writer is inside: sequence odd, a count raised, the sum not yet.
    map.store(0, 1, Ordering::Relaxed);
    map.store(8 * super::format::HISTOGRAM_HEAD, 1, Ordering::Relaxed);
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            super::values::read_consistent_within(&map, 0, words, Duration::from_secs(30))
        });
        // Descheduled for longer than any count of tries takes, then back.
        std::thread::sleep(Duration::from_millis(100));
        map.store(8, 0.75f64.to_bits(), Ordering::Relaxed);
        map.store(0, 2, Ordering::Release);
        reader.join().expect("reader")
    });
    // The values after the update, not during it (word 0 is never read).
    assert_eq!(f64::from_bits(read[1]), 0.75);
    assert_eq!(read[super::format::HISTOGRAM_HEAD], 1);
}

#[test]
fn a_writer_that_never_leaves_its_update_does_not_hang_the_reader() {
    let dir = TempDir::new();
    let map = histogram_words(&dir);
    let words = super::format::HISTOGRAM_HEAD + 3;
    // Killed inside its update: the sequence stays odd for good.
    map.store(0, 7, Ordering::Relaxed);
    map.store(8 * super::format::HISTOGRAM_HEAD, 4, Ordering::Relaxed);
    let read = super::values::read_consistent_within(&map, 0, words, Duration::from_millis(20));
    assert_eq!(
        read[super::format::HISTOGRAM_HEAD],
        4,
        "the values as they are"
    );
}

#[test]
fn gauge_modes_combine_the_live_processes() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let a = open(&dir.0);
    let b = open(&dir.0);
    for mode in Mode::ALL {
        let g = series(Kind::Gauge, &format!("g_{}", mode.name()), mode, &[]);
        a.slot(&g).expect("slot").set(2.0);
        b.slot(&g).expect("slot").set(5.0);
        a.slot(&g).expect("slot").set(3.0); // the most recent
    }
    let out = reader.collect("").expect("collect");
    let gauge = |name: &str| match value_of(&out, name) {
        Some(Value::Gauge(v, _)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(gauge("g_sum"), 8.0);
    assert_eq!(gauge("g_max"), 5.0);
    assert_eq!(gauge("g_min"), 3.0);
    assert_eq!(gauge("g_latest"), 3.0);
    let per_pid = out.iter().find(|f| f.family.name == "g_pid").expect("pid");
    assert_eq!(per_pid.series.len(), 2);
    assert!(per_pid
        .series
        .iter()
        .all(|s| s.pid == Some(std::process::id())));
}

#[test]
fn namespaces_keep_registries_apart() {
    let dir = TempDir::new();
    let store = open(&dir.0);
    let mut other = counter("x_total");
    other.namespace = "module:db".into();
    store
        .slot(&counter("x_total"))
        .expect("slot")
        .add(1)
        .expect("add");
    store.slot(&other).expect("slot").add(5).expect("add");
    let out = store.collect("module:db").expect("collect");
    assert_eq!(out.len(), 1);
    assert_eq!(value_of(&out, "x_total"), Some(Value::Counter(5)));
}

fn age(dir: &Path) {
    // A previous run: its anchors' leaders are no longer the processes
    // they were (same group ids, other start times).
    let path = dir.join("run");
    let mut run = Run::parse(&std::fs::read(&path).expect("run")).expect("parse");
    for anchor in &mut run.anchors {
        anchor.1 += 1;
    }
    std::fs::write(&path, run.encode()).expect("write");
}

#[test]
fn a_previous_run_is_discarded_kept_or_refused_as_asked() {
    for previous in [Previous::Discard, Previous::Keep, Previous::Error] {
        let dir = TempDir::new();
        let old = open(&dir.0);
        old.slot(&counter("c_total"))
            .expect("slot")
            .add(9)
            .expect("add");
        // Opened while `old` lives, so of the same run whether or not this
        // process has an anchor (a group leader /proc can read: a CI runner's
        // may have exited); its scrape after `old` exits folds the 9.
        let survivor = open(&dir.0);
        drop(old);
        assert_eq!(
            value_of(&survivor.collect("").expect("collect"), "c_total"),
            Some(Value::Counter(9))
        );
        drop(survivor);
        age(&dir.0);
        let opened = Store::open_private(&dir.0, previous);
        match previous {
            Previous::Error => {
                let Err(StoreError::PreviousRun(what)) = opened else {
                    panic!("refused")
                };
                assert!(what.contains("previous run"), "{what}");
                assert!(dir.0.join("retained.seg").exists(), "nothing changed");
            }
            Previous::Discard => {
                let store = opened.expect("open");
                assert_eq!(store.take_notices().len(), 1);
                assert!(value_of(&store.collect("").expect("collect"), "c_total").is_none());
            }
            Previous::Keep => {
                let store = opened.expect("open");
                let out = store.collect("").expect("collect");
                assert_eq!(value_of(&out, "c_total"), Some(Value::Counter(9)));
            }
        }
    }
}

#[test]
fn a_fold_cut_short_before_its_unlinks_is_not_counted_twice() {
    let dir = TempDir::new();
    let reader = open(&dir.0);
    let a = open(&dir.0);
    a.slot(&counter("c_total"))
        .expect("slot")
        .add(2)
        .expect("add");
    let segment = std::fs::read_dir(&dir.0)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "seg")
                && std::fs::read(p).is_ok_and(|b| b.windows(7).any(|w| w == b"c_total"))
                && !p.ends_with("retained.seg")
        })
        .expect("a's segment");
    drop(a);
    let bytes = std::fs::read(&segment).expect("read");
    let out = reader.collect("").expect("collect"); // folds and unlinks it
    assert_eq!(value_of(&out, "c_total"), Some(Value::Counter(2)));
    std::fs::write(&segment, bytes).expect("put back, as if never unlinked");
    let out = reader.collect("").expect("collect");
    assert_eq!(value_of(&out, "c_total"), Some(Value::Counter(2)));
    assert!(!segment.exists());
}

#[test]
fn a_segment_grows_past_its_first_size_and_old_slots_still_count() {
    let dir = TempDir::new();
    let store = open(&dir.0);
    let first = store.slot(&counter("first_total")).expect("slot");
    for i in 0..2_000 {
        let s = series(
            Kind::Counter,
            "many_total",
            Mode::Sum,
            &[("i", &i.to_string())],
        );
        store.slot(&s).expect("slot").add(1).expect("add");
    }
    first.add(5).expect("add");
    let out = store.collect("").expect("collect");
    assert_eq!(value_of(&out, "first_total"), Some(Value::Counter(5)));
    let many = out
        .iter()
        .find(|f| f.family.name == "many_total")
        .expect("many");
    assert_eq!(many.series.len(), 2_000);
}

#[test]
fn counter_overflow_is_refused_and_leaves_the_value() {
    let dir = TempDir::new();
    let store = open(&dir.0);
    let slot = store.slot(&counter("c_total")).expect("slot");
    slot.add(u64::MAX - 1).expect("add");
    assert_eq!(slot.add(2), Err(Overflow));
    assert_eq!(slot.count(), u64::MAX - 1);
}

#[test]
fn a_segment_whose_owner_died_making_it_is_removed_not_an_error() {
    let dir = TempDir::new();
    let store = open(&dir.0);
    store
        .slot(&counter("c_total"))
        .expect("slot")
        .add(1)
        .expect("add");
    // Killed after creating its file, before (or while) writing its header.
    std::fs::write(dir.0.join("1-0000000000000001.seg"), b"").expect("write");
    std::fs::write(dir.0.join("2-0000000000000002.seg"), [0u8; 4096]).expect("write");
    let out = store.collect("").expect("collect");
    assert_eq!(value_of(&out, "c_total"), Some(Value::Counter(1)));
    let other = open(&dir.0);
    drop(other);
    std::fs::write(dir.0.join("3-0000000000000003.seg"), b"").expect("write");
    open(&dir.0); // a join finds it too
    for name in [
        "1-0000000000000001.seg",
        "2-0000000000000002.seg",
        "3-0000000000000003.seg",
    ] {
        assert!(!dir.0.join(name).exists(), "{name}");
    }
    // A file that is not a blank segment is still refused.
    std::fs::write(
        dir.0.join("4-0000000000000004.seg"),
        b"something else entirely, long enough to hold a header of sixty-four bytes",
    )
    .expect("write");
    assert!(matches!(store.collect(""), Err(StoreError::Format(_))));
}

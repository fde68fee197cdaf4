//! The directory: its lock, its files, telling live segments from dead
//! ones, folding the dead into the retained file, and deciding at a join
//! whether the directory holds this run or a previous one.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    folded_record, parse_header, parse_record, record_head, segment_header, Header, Kind, Parsed,
    Series, AT_SERIAL, AT_USED, FLAG_RETAINED, HEADER,
};
use super::run::{anchor_alive, boot_id, own_anchor, random_id, random_u64, Run};
use super::values::Value;
use super::StoreError;

pub const LOCK: &str = "lock";
pub const RUN: &str = "run";
pub const RETAINED: &str = "retained.seg";
const SUFFIX: &str = ".seg";
const TMP: &str = ".tmp";

/// What to do with a directory that a previous run of the service left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Previous {
    /// Remove its files and start afresh (a warning says so).
    Discard,
    /// Carry its totals into this run.
    Keep,
    /// Refuse to use the directory.
    Error,
}

/// The directory's lock, held until dropped.
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path) -> io::Result<DirLock> {
    fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK))?;
    file.lock()?;
    Ok(DirLock { _file: file })
}

/// A process segment found in the directory.
pub struct Found {
    pub path: PathBuf,
    pub file: File,
    pub header: Header,
    pub alive: bool,
}

/// Opens a segment file read-write; None if it is gone.
pub fn open_segment(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn read_header(file: &File) -> Result<Header, StoreError> {
    let mut head = [0u8; HEADER];
    let mut reader = file;
    // (a fresh descriptor, or one only ever read through positioned reads)
    std::io::Seek::seek(&mut reader, io::SeekFrom::Start(0))?;
    reader.read_exact(&mut head)?;
    Ok(parse_header(&head)?)
}

/// Whether the owner of the segment open as `file` still runs: it holds an
/// exclusive lock on it until it ends.
pub fn alive(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            file.unlock()?;
            Ok(false)
        }
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// The names of the process segments in `dir`, sorted.
pub fn segment_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(SUFFIX) && name != RETAINED {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The segment at `path`, opened, with its header; None if it is gone, or
/// if its owner died before writing its header (killed as it made it: the
/// segment never held anything, and is removed).
pub fn open_with_header(path: &Path) -> Result<Option<(File, Header)>, StoreError> {
    let Some(file) = open_segment(path)? else {
        return Ok(None);
    };
    match read_header(&file) {
        Ok(header) => Ok(Some((file, header))),
        Err(error) => {
            let mut head = [0u8; 8];
            let mut reader = &file;
            std::io::Seek::seek(&mut reader, io::SeekFrom::Start(0))?;
            let blank = file.metadata()?.len() < HEADER as u64
                || (reader.read_exact(&mut head).is_ok() && head == [0; 8]);
            if blank && !alive(&file)? {
                remove(path)?;
                return Ok(None);
            }
            Err(StoreError::Format(format!("{}: {error}", path.display())))
        }
    }
}

/// Every process segment in `dir`, each opened and checked for life.
pub fn find_segments(dir: &Path) -> Result<Vec<Found>, StoreError> {
    let mut out = Vec::new();
    for name in segment_names(dir)? {
        let path = dir.join(&name);
        let Some((file, header)) = open_with_header(&path)? else {
            continue;
        };
        let alive = alive(&file)?;
        out.push(Found {
            path,
            file,
            header,
            alive,
        });
    }
    Ok(out)
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP}"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, dir.join(name))
}

pub fn read_run(dir: &Path) -> Result<Option<Run>, StoreError> {
    match fs::read(dir.join(RUN)) {
        Ok(bytes) => Ok(Some(Run::parse(&bytes).map_err(|e| {
            StoreError::Format(format!("{}: {e}", dir.join(RUN).display()))
        })?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One series of the retained file, as it is folded.
struct Kept {
    series: Series,
    value: Value,
}

/// A parsed retained file (or none).
#[derive(Default)]
pub struct RetainedFile {
    pub header: Option<Header>,
    /// (series, identity, value) in file order.
    pub series: Vec<(Arc<Series>, Vec<u8>, Value)>,
    pub folded: Vec<u64>,
}

/// Reads every record of a segment's bytes up to its `used` mark: series
/// with their values, and folded ids.
fn records(
    bytes: &[u8],
    used: usize,
    mut each: impl FnMut(Series, Vec<u8>, Value),
) -> Result<Vec<u64>, StoreError> {
    let mut folded = Vec::new();
    let mut at = HEADER;
    let end = used.min(bytes.len());
    while at < end {
        let (length, _) = record_head(&bytes[at..end])?;
        let record = bytes
            .get(at..at + length)
            .ok_or_else(|| StoreError::Format("a record runs past the end".into()))?;
        match parse_record(record)? {
            Parsed::Folded(ids) => folded = ids,
            Parsed::Series {
                series,
                identity,
                values_at,
            } => {
                let words: Vec<u64> = record[values_at..]
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
                    .collect();
                let bounds: Arc<[f64]> = Arc::from(series.bounds.clone());
                let value = Value::from_words(series.kind, &bounds, &words);
                each(series, identity, value);
            }
        }
        at += length;
    }
    Ok(folded)
}

pub fn read_retained(dir: &Path) -> Result<RetainedFile, StoreError> {
    let bytes = match fs::read(dir.join(RETAINED)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RetainedFile::default()),
        Err(e) => return Err(e.into()),
    };
    let header = parse_header(&bytes)
        .map_err(|e| StoreError::Format(format!("{}: {e}", dir.join(RETAINED).display())))?;
    let mut series = Vec::new();
    let folded = records(&bytes, header.used, |s, identity, value| {
        series.push((Arc::new(s), identity, value));
    })?;
    Ok(RetainedFile {
        header: Some(header),
        series,
        folded,
    })
}

fn read_all(file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut reader = file;
    std::io::Seek::seek(&mut reader, io::SeekFrom::Start(0))?;
    reader.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn add(into: &mut Value, value: &Value) {
    match (into, value) {
        (Value::Counter(a), Value::Counter(b)) => *a = a.saturating_add(*b),
        (Value::Histogram(a), Value::Histogram(b)) => a.add(b),
        _ => {}
    }
}

/// Folds the dead segments `dead` into the retained file, written for
/// `generation` (see docs/multiprocess.md), then unlinks them; with
/// `rewrite`, the retained file is written even when none was dead.
pub fn fold(
    dir: &Path,
    generation: &[u8; 16],
    dead: Vec<Found>,
    rewrite: bool,
) -> Result<(), StoreError> {
    let old = read_retained(dir)?;
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut kept: HashMap<Vec<u8>, Kept> = HashMap::new();
    let mut keep = |series: Series, identity: Vec<u8>, value: Value| {
        if series.kind == Kind::Gauge {
            return; // a dead process's gauges are dropped
        }
        match kept.get_mut(&identity) {
            Some(found) => {
                add(&mut found.value, &value);
                if found.series.description.is_empty() {
                    found.series.description = series.description;
                }
            }
            None => {
                order.push(identity.clone());
                kept.insert(identity, Kept { series, value });
            }
        }
    };
    for (series, identity, value) in old.series {
        keep((*series).clone(), identity, value);
    }
    let mut folded = Vec::new();
    let mut done = Vec::new();
    for segment in dead {
        // Folded already by a fold that stopped before unlinking it.
        if !old.folded.contains(&segment.header.id) {
            let bytes = read_all(&segment.file)?;
            let header = parse_header(&bytes)?;
            records(&bytes, header.used, &mut keep)?;
            folded.push(segment.header.id);
        }
        done.push(segment.path);
    }
    if !folded.is_empty() || rewrite {
        let serial = old.header.map_or(0, |h| h.serial).wrapping_add(1);
        let mut bytes = segment_header(generation, 0, random_u64(), FLAG_RETAINED).to_vec();
        for identity in &order {
            let Some(found) = kept.get(identity) else {
                continue;
            };
            let Some((mut record, values_at)) = found.series.record() else {
                continue;
            };
            let words = match &found.value {
                Value::Counter(n) => vec![*n],
                Value::Histogram(totals) => totals.to_words(),
                Value::Gauge(..) => continue,
            };
            for (i, word) in words.iter().enumerate() {
                super::format::put(&mut record, values_at + 8 * i, *word);
            }
            bytes.extend_from_slice(&record);
        }
        bytes.extend_from_slice(&folded_record(&folded));
        let used = bytes.len() as u64;
        super::format::put(&mut bytes, AT_USED, used);
        super::format::put(&mut bytes, AT_SERIAL, serial);
        replace(dir, RETAINED, &bytes)?;
    }
    for path in done {
        remove(&path)?;
    }
    Ok(())
}

/// What a join decided.
pub struct Joined {
    pub run: Run,
    /// A warning for the user: a previous run's numbers were discarded.
    pub notice: Option<String>,
}

/// With the directory locked: decides whether it holds the current run
/// (docs/multiprocess.md, "Which run"), handles a previous run's files as
/// `previous` says, records this process's anchor, and folds the dead.
pub fn join(dir: &Path, previous: Previous) -> Result<Joined, StoreError> {
    let boot = boot_id();
    let me = own_anchor();
    let found = find_segments(dir)?;
    let mut run = read_run(dir)?;
    let live = found.iter().find(|s| s.alive);
    if run.is_none() {
        if let Some(live) = live {
            // The run file went missing under live processes: keep theirs.
            run = Some(Run {
                generation: live.header.generation,
                boot,
                anchors: Vec::new(),
            });
        }
    }
    let current = run.as_ref().is_some_and(|r| {
        r.boot == boot && (live.is_some() || r.anchors.iter().any(|a| anchor_alive(*a)))
    });
    let retained = dir.join(RETAINED).exists();
    let mut notice = None;
    let (run, dead) = if current {
        let mut run = run.unwrap_or_else(|| Run {
            generation: random_id(),
            boot,
            anchors: Vec::new(),
        });
        let before = run.anchors.clone();
        run.anchors.retain(|a| anchor_alive(*a));
        if let Some(me) = me {
            if !run.anchors.contains(&me) {
                run.anchors.push(me);
            }
        }
        if run.anchors != before {
            replace(dir, RUN, &run.encode())?;
        }
        let generation = run.generation;
        let (ours, others): (Vec<Found>, Vec<Found>) = found
            .into_iter()
            .filter(|s| !s.alive)
            .partition(|s| s.header.generation == generation);
        for other in others {
            remove(&other.path)?; // dead, of no run we count
        }
        (run, ours)
    } else {
        let new = Run {
            generation: random_id(),
            boot,
            anchors: me.into_iter().collect(),
        };
        if run.is_some() || !found.is_empty() || retained {
            let what = format!(
                "{} holds the metrics of a previous run of the service \
                 ({} segment(s) of exited processes{})",
                dir.display(),
                found.len(),
                if retained {
                    " and their retained totals"
                } else {
                    ""
                }
            );
            match previous {
                Previous::Error => return Err(StoreError::PreviousRun(what)),
                Previous::Discard => {
                    for segment in &found {
                        remove(&segment.path)?;
                    }
                    remove(&dir.join(RETAINED))?;
                    notice = Some(format!(
                        "{what}: discarded, so they are not added to this run's \
                         (previous_run=\"keep\" keeps them)"
                    ));
                }
                // Its totals move into the new generation's retained file.
                Previous::Keep => fold(dir, &new.generation, found, true)?,
            }
        }
        (new, Vec::new())
    };
    if !dead.is_empty() {
        fold(dir, &run.generation, dead, false)?;
    }
    if !current {
        remove_leftovers(dir)?;
        replace(dir, RUN, &run.encode())?;
    }
    Ok(Joined { run, notice })
}

/// Temporary files a fold or a run file write left when it was killed.
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(TMP)) {
            remove(&dir.join(name))?;
        }
    }
    Ok(())
}

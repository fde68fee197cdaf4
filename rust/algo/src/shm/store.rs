//! `Store`: one process's view of a shared directory. It owns the process's
//! segment (where this process's series keep their values) and reads every
//! segment, the retained file included, to aggregate them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::dir::{self, Found, Previous};
use super::format::{
    parse_record, record_head, segment_header, Header, Kind, Mode, Parsed, Series, AT_USED, HEADER,
    RECORD_HEAD,
};
use super::map::Mapping;
use super::run::random_u64;
use super::values::{Slot, Totals, Value};
use super::StoreError;

/// Bytes a new segment starts with; it doubles when full.
const FIRST_SIZE: usize = 16 * 1024;

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Every store of this process, by directory.
static STORES: Mutex<Vec<(PathBuf, Weak<Store>)>> = Mutex::new(Vec::new());

/// Increases with every fork: a series whose slot was made in another epoch
/// belongs to the parent and moves to this process's own segment.
pub fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::Relaxed)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while held leaves plain data behind; nothing half-done to refuse.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Called in the child after a fork: the parent's segments stay the
/// parent's. Closes this process's copy of each store's segment (so that
/// the parent's exit releases its lock) and makes the next use join anew.
pub fn after_fork() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
    // A lock held by a thread that did not survive the fork is skipped.
    let Ok(stores) = STORES.try_lock() else {
        return;
    };
    for (_, store) in stores.iter() {
        if let Some(store) = store.upgrade() {
            if let Ok(mut own) = store.own.try_lock() {
                own.segment = None;
            }
        }
    }
}

struct OwnSegment {
    file: File,
    len: usize,
    map: Arc<Mapping>,
    used: usize,
    slots: HashMap<Vec<u8>, Slot>,
}

struct Own {
    /// The fork epoch this process joined in; None before it joins.
    epoch: Option<u64>,
    segment: Option<OwnSegment>,
}

/// A segment of another process (or this one's, through another descriptor).
struct Peer {
    file: File,
    header: Header,
    map: Option<Mapping>,
    parsed_to: usize,
    records: Vec<(usize, usize)>, // (entry, offset of the values)
}

#[derive(Default)]
struct Reader {
    peers: HashMap<String, Peer>,
    retained: Option<(u64, u64)>, // (serial, id) of the parsed retained file
    retained_values: Vec<(usize, Value)>,
    table: Table,
}

/// A family, as the first series seen of it defines it.
#[derive(Clone, Debug)]
pub struct Family {
    pub namespace: String,
    pub name: String,
    pub kind: Kind,
    pub mode: Mode,
    pub label_names: Vec<String>,
    pub bounds: Arc<[f64]>,
    pub description: String,
    entries: Vec<usize>,
}

struct Entry {
    series: Arc<Series>,
    bounds: Arc<[f64]>,
    family: Option<usize>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
    families: Vec<Family>,
    by_name: HashMap<(String, String), usize>,
}

impl Table {
    fn entry(&mut self, series: Series, identity: Vec<u8>) -> usize {
        if let Some(&found) = self.index.get(&identity) {
            let family = self.entries[found].family;
            if let Some(family) = family.and_then(|f| self.families.get_mut(f)) {
                if family.description.is_empty() && !series.description.is_empty() {
                    family.description = series.description;
                }
            }
            return found;
        }
        let at = self.entries.len();
        let label_names: Vec<String> = series.labels.iter().map(|(n, _)| n.clone()).collect();
        let bounds: Arc<[f64]> = Arc::from(series.bounds.clone());
        let key = (series.namespace.clone(), series.name.clone());
        let family = match self.by_name.get(&key) {
            Some(&f) => {
                let family = &mut self.families[f];
                // A series defined otherwise than its family (another version
                // of the code): kept out of the aggregate.
                let same = family.kind == series.kind
                    && family.mode == series.mode
                    && family.label_names == label_names
                    && *family.bounds == *bounds;
                if same {
                    family.entries.push(at);
                    if family.description.is_empty() {
                        family.description.clone_from(&series.description);
                    }
                }
                same.then_some(f)
            }
            None => {
                let f = self.families.len();
                self.families.push(Family {
                    namespace: series.namespace.clone(),
                    name: series.name.clone(),
                    kind: series.kind,
                    mode: series.mode,
                    label_names,
                    bounds: bounds.clone(),
                    description: series.description.clone(),
                    entries: vec![at],
                });
                self.by_name.insert(key, f);
                Some(f)
            }
        };
        self.entries.push(Entry {
            series: Arc::new(series),
            bounds,
            family,
        });
        self.index.insert(identity, at);
        at
    }
}

/// One series of the aggregate.
pub struct SeriesOut {
    /// Stable for the life of the store: which series this is.
    pub entry: usize,
    /// The process, for a gauge of mode `pid`.
    pub pid: Option<u32>,
    pub series: Arc<Series>,
    pub value: Value,
}

/// One family of the aggregate, its series in the order first seen.
pub struct FamilyOut {
    pub family: Family,
    pub series: Vec<SeriesOut>,
}

/// One process's view of a shared directory.
pub struct Store {
    dir: PathBuf,
    previous: Previous,
    own: Mutex<Own>,
    reader: Mutex<Reader>,
    notices: Mutex<Vec<String>>,
}

enum Acc {
    None,
    Counter(u64),
    Gauge(f64, u64),
    PerPid(Vec<(u32, f64)>),
    Histogram(Totals),
}

impl Store {
    /// The store of `dir` in this process (one per directory, shared by
    /// every registry on it), joined: a previous run's files are handled as
    /// `previous` says, and dead processes are folded.
    pub fn open(dir: &Path, previous: Previous) -> Result<Arc<Store>, StoreError> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let mut stores = locked(&STORES);
        stores.retain(|(_, s)| s.strong_count() > 0);
        if let Some(store) = stores
            .iter()
            .find(|(d, _)| *d == dir)
            .and_then(|(_, s)| s.upgrade())
        {
            return Ok(store);
        }
        let store = Store::open_private(&dir, previous)?;
        stores.push((dir, Arc::downgrade(&store)));
        Ok(store)
    }

    /// A store of `dir` of its own, as if of another process (its own
    /// segment and lock): for tests, which play several processes in one.
    pub fn open_private(dir: &Path, previous: Previous) -> Result<Arc<Store>, StoreError> {
        let store = Arc::new(Store {
            dir: dir.to_path_buf(),
            previous,
            own: Mutex::new(Own {
                epoch: None,
                segment: None,
            }),
            reader: Mutex::new(Reader::default()),
            notices: Mutex::new(Vec::new()),
        });
        store.ensure_joined(&mut locked(&store.own))?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Warnings for the user since the last call (a discarded previous run).
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *locked(&self.notices))
    }

    fn ensure_joined(&self, own: &mut Own) -> Result<(), StoreError> {
        if own.epoch == Some(fork_epoch()) && own.segment.is_some() {
            return Ok(());
        }
        own.segment = None;
        let _lock = dir::lock(&self.dir)?;
        let joined = dir::join(&self.dir, self.previous)?;
        if let Some(notice) = joined.notice {
            locked(&self.notices).push(notice);
        }
        own.segment = Some(self.create_segment(&joined.run.generation)?);
        own.epoch = Some(fork_epoch());
        Ok(())
    }

    fn create_segment(&self, generation: &[u8; 16]) -> Result<OwnSegment, StoreError> {
        let pid = std::process::id();
        let id = random_u64();
        let path = self.dir.join(format!("{pid}-{id:016x}.seg"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.lock()?; // held until this process ends (or forgets it after a fork)
        file.set_len(FIRST_SIZE as u64)?;
        let map = Mapping::new(&file, FIRST_SIZE)?;
        let header = segment_header(generation, pid, id, 0);
        // The magic last: a segment whose owner is killed before it is
        // written starts with zeros, which a join or scrape removes.
        map.write_bytes(8, &header[8..]);
        map.write_bytes(0, &header[..8]);
        Ok(OwnSegment {
            file,
            len: FIRST_SIZE,
            map: Arc::new(map),
            used: HEADER,
            slots: HashMap::new(),
        })
    }

    /// This process's slot for `series`, made on first use (joining the
    /// directory first if this process has not, or has forked since).
    pub fn slot(&self, series: &Series) -> Result<Slot, StoreError> {
        let mut own = locked(&self.own);
        self.ensure_joined(&mut own)?;
        let Some(segment) = own.segment.as_mut() else {
            return Err(StoreError::Format("no segment".into()));
        };
        let identity = series.identity();
        if let Some(slot) = segment.slots.get(&identity) {
            return Ok(slot.clone());
        }
        let (record, values_at) = series.record().ok_or(StoreError::TooLarge)?;
        let end = segment.used + record.len();
        if end > segment.len {
            let len = (segment.len * 2).max(end.next_multiple_of(4096));
            segment.file.set_len(len as u64)?;
            // The old mapping stays alive in the slots made through it: both
            // map the same pages, and the file never shrinks.
            segment.map = Arc::new(Mapping::new(&segment.file, len)?);
            segment.len = len;
        }
        segment.map.write_bytes(segment.used, &record);
        segment.map.store(AT_USED, end as u64, Ordering::Release);
        let slot = Slot {
            map: segment.map.clone(),
            at: segment.used + values_at,
            bounds: Arc::from(series.bounds.clone()),
        };
        segment.used = end;
        segment.slots.insert(identity, slot.clone());
        Ok(slot)
    }

    /// Every series of `namespace` summed over the processes (live ones and
    /// the retained totals of the dead), after folding the dead.
    pub fn collect(&self, namespace: &str) -> Result<Vec<FamilyOut>, StoreError> {
        let mut reader = locked(&self.reader);
        let _lock = dir::lock(&self.dir)?;
        let Some(run) = dir::read_run(&self.dir)? else {
            return Ok(Vec::new());
        };
        let reader = &mut *reader;
        // Segments: new ones opened, unlinked ones forgotten, dead ones folded.
        let names = dir::segment_names(&self.dir)?;
        reader.peers.retain(|name, _| names.contains(name));
        let mut dead = Vec::new();
        for name in names {
            if !reader.peers.contains_key(&name) {
                let path = self.dir.join(&name);
                let Some((file, header)) = dir::open_with_header(&path)? else {
                    continue;
                };
                reader.peers.insert(
                    name.clone(),
                    Peer {
                        file,
                        header,
                        map: None,
                        parsed_to: HEADER,
                        records: Vec::new(),
                    },
                );
            }
            let alive = match reader.peers.get(&name) {
                Some(peer) => dir::alive(&peer.file)?,
                None => continue,
            };
            if !alive {
                if let Some(peer) = reader.peers.remove(&name) {
                    dead.push(Found {
                        path: self.dir.join(&name),
                        file: peer.file,
                        header: peer.header,
                        alive: false,
                    });
                }
            }
        }
        if !dead.is_empty() {
            let (ours, others): (Vec<Found>, Vec<Found>) = dead
                .into_iter()
                .partition(|s| s.header.generation == run.generation);
            dir::fold(&self.dir, &run.generation, ours, false)?;
            for other in others {
                let _ = std::fs::remove_file(&other.path);
            }
        }
        self.refresh_retained(reader, &run.generation)?;
        let table = &mut reader.table;
        for peer in reader.peers.values_mut() {
            if peer.header.generation == run.generation {
                parse_new(peer, table)?;
            }
        }
        Ok(aggregate(reader, namespace, &run.generation))
    }

    fn refresh_retained(
        &self,
        reader: &mut Reader,
        generation: &[u8; 16],
    ) -> Result<(), StoreError> {
        let file = dir::open_segment(&self.dir.join(dir::RETAINED))?;
        let header = match &file {
            Some(file) => Some(dir::read_header(file)?),
            None => None,
        };
        let mark = header
            .filter(|h| h.generation == *generation)
            .map(|h| (h.serial, h.id));
        if mark == reader.retained {
            return Ok(());
        }
        reader.retained_values.clear();
        if mark.is_some() {
            let retained = dir::read_retained(&self.dir)?;
            for (series, identity, value) in retained.series {
                let entry = reader.table.entry((*series).clone(), identity);
                reader.retained_values.push((entry, value));
            }
        }
        reader.retained = mark;
        Ok(())
    }
}

/// Parses the records a peer appended since the last scrape.
fn parse_new(peer: &mut Peer, table: &mut Table) -> Result<(), StoreError> {
    let mapped = peer.map.as_ref().map_or(0, Mapping::len);
    let used_now = match &peer.map {
        Some(map) => map.load(AT_USED, Ordering::Acquire) as usize,
        None => usize::MAX,
    };
    if used_now > mapped {
        let len = usize::try_from(peer.file.metadata()?.len()).unwrap_or(0);
        if len < HEADER {
            return Ok(());
        }
        peer.map = Some(Mapping::new(&peer.file, len)?);
    }
    let Some(map) = &peer.map else { return Ok(()) };
    let used = (map.load(AT_USED, Ordering::Acquire) as usize).min(map.len());
    while peer.parsed_to + RECORD_HEAD <= used {
        let at = peer.parsed_to;
        let head = map
            .read_bytes(at, RECORD_HEAD)
            .ok_or_else(|| StoreError::Format("a record runs past the end".into()))?;
        let (length, values_at) = record_head(&head)?;
        if at + length > used {
            break;
        }
        let bytes = map
            .read_bytes(at, values_at)
            .ok_or_else(|| StoreError::Format("a record runs past the end".into()))?;
        if let Parsed::Series {
            series, identity, ..
        } = parse_record(&bytes)?
        {
            let entry = table.entry(series, identity);
            peer.records.push((entry, at + values_at));
        }
        peer.parsed_to = at + length;
    }
    Ok(())
}

fn add(acc: &mut Acc, entry: &Entry, value: Value, pid: u32) {
    let mode = entry.series.mode;
    match (acc, value) {
        (acc @ Acc::None, Value::Counter(n)) => *acc = Acc::Counter(n),
        (Acc::Counter(a), Value::Counter(n)) => *a = a.saturating_add(n),
        (acc @ Acc::None, Value::Gauge(v, at)) => {
            *acc = if mode == Mode::Pid {
                Acc::PerPid(vec![(pid, v)])
            } else {
                Acc::Gauge(v, at)
            }
        }
        (Acc::PerPid(values), Value::Gauge(v, _)) => values.push((pid, v)),
        (Acc::Gauge(a, a_at), Value::Gauge(v, at)) => match mode {
            Mode::Sum => *a += v,
            Mode::Max => *a = a.max(v),
            Mode::Min => *a = a.min(v),
            Mode::Latest => {
                if at >= *a_at {
                    *a = v;
                    *a_at = at;
                }
            }
            Mode::Pid => {}
        },
        (acc @ Acc::None, Value::Histogram(t)) => *acc = Acc::Histogram(t),
        (Acc::Histogram(a), Value::Histogram(t)) => a.add(&t),
        _ => {}
    }
}

fn aggregate(reader: &Reader, namespace: &str, _generation: &[u8; 16]) -> Vec<FamilyOut> {
    let table = &reader.table;
    let mut accs: Vec<Acc> = table.entries.iter().map(|_| Acc::None).collect();
    for (entry, value) in &reader.retained_values {
        if let (Some(acc), Some(e)) = (accs.get_mut(*entry), table.entries.get(*entry)) {
            add(acc, e, value.clone(), 0);
        }
    }
    for peer in reader.peers.values() {
        let Some(map) = &peer.map else { continue };
        for &(entry, at) in &peer.records {
            let Some(e) = table.entries.get(entry) else {
                continue;
            };
            if e.series.namespace != namespace {
                continue;
            }
            let value = Value::read(e.series.kind, &e.bounds, map, at);
            if let Some(acc) = accs.get_mut(entry) {
                add(acc, e, value, peer.header.pid);
            }
        }
    }
    let mut out = Vec::new();
    for family in &table.families {
        if family.namespace != namespace {
            continue;
        }
        let mut series = Vec::new();
        for &entry in &family.entries {
            let Some(e) = table.entries.get(entry) else {
                continue;
            };
            let acc = std::mem::replace(&mut accs[entry], Acc::None);
            let mut push = |pid, value| {
                series.push(SeriesOut {
                    entry,
                    pid,
                    series: e.series.clone(),
                    value,
                });
            };
            match acc {
                Acc::None => {}
                Acc::Counter(n) => push(None, Value::Counter(n)),
                Acc::Gauge(v, at) => push(None, Value::Gauge(v, at)),
                Acc::PerPid(mut values) => {
                    values.sort_by_key(|(pid, _)| *pid);
                    for (pid, v) in values {
                        push(Some(pid), Value::Gauge(v, 0));
                    }
                }
                Acc::Histogram(t) => push(None, Value::Histogram(t)),
            }
        }
        if !series.is_empty() {
            out.push(FamilyOut {
                family: family.clone(),
                series,
            });
        }
    }
    out
}

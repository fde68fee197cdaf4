//! Which run of a service a directory belongs to: the run file, the boot
//! id, and the process groups (anchors) whose life keeps a run current.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::format::{get, get32, FormatError, RUN_MAGIC, VERSION};

/// The run file's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub generation: [u8; 16],
    pub boot: [u8; 16],
    /// (process group id, its leader's start time in clock ticks since boot)
    pub anchors: Vec<(u32, u64)>,
}

impl Run {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + 16 * self.anchors.len());
        out.extend_from_slice(&RUN_MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let count = u32::try_from(self.anchors.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.generation);
        out.extend_from_slice(&self.boot);
        for (group, start) in self.anchors.iter().take(count as usize) {
            out.extend_from_slice(&group.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&start.to_le_bytes());
        }
        out
    }

    pub fn parse(bytes: &[u8]) -> Result<Run, FormatError> {
        if bytes.len() < 48 || bytes[..8] != RUN_MAGIC {
            return Err(FormatError("not a pepperpy-core metrics run file".into()));
        }
        let version = get32(bytes, 8).unwrap_or(0);
        if version != VERSION {
            return Err(FormatError(format!(
                "a metrics run file of format version {version}, not {VERSION}"
            )));
        }
        let count = get32(bytes, 12).unwrap_or(0) as usize;
        let mut generation = [0u8; 16];
        generation.copy_from_slice(&bytes[16..32]);
        let mut boot = [0u8; 16];
        boot.copy_from_slice(&bytes[32..48]);
        let anchors = (0..count)
            .map(|i| Some((get32(bytes, 48 + 16 * i)?, get(bytes, 56 + 16 * i)?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| FormatError("a metrics run file is cut short".into()))?;
        Ok(Run {
            generation,
            boot,
            anchors,
        })
    }
}

/// 64 bits no other process will draw (the OS seeds std's hasher keys).
pub fn random_u64() -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.finish()
}

pub fn random_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&random_u64().to_le_bytes());
    out[8..].copy_from_slice(&random_u64().to_le_bytes());
    out
}

/// This boot's id as bytes (Linux), else zeros.
pub fn boot_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            let digits = std::str::from_utf8(pair).unwrap_or("0");
            out[i] = u8::from_str_radix(digits, 16).unwrap_or(0);
        }
    }
    out
}

/// The fields of /proc/<pid>/stat after the command name, from the state
/// on (field 3 of proc(5) is index 0).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The start time of process `pid` in clock ticks since boot (Linux).
fn start_time(pid: &str) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// This process's anchor: its process group and the group leader's start
/// time; None where /proc cannot tell (then only live owners keep a run).
pub fn own_anchor() -> Option<(u32, u64)> {
    let group: u32 = stat_fields("self")?.get(2)?.parse().ok()?;
    Some((group, start_time(&group.to_string())?))
}

/// Whether the group leader an anchor names still runs.
pub fn anchor_alive(anchor: (u32, u64)) -> bool {
    start_time(&anchor.0.to_string()) == Some(anchor.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_files_parse_back() {
        let run = Run {
            generation: random_id(),
            boot: boot_id(),
            anchors: vec![(7, 99), (8, 100)],
        };
        assert_eq!(Run::parse(&run.encode()), Ok(run.clone()));
        assert!(Run::parse(&run.encode()[..60]).is_err());
        assert!(Run::parse(b"nonsense").is_err());
    }

    #[test]
    fn this_process_anchors_a_live_group() {
        if let Some(anchor) = own_anchor() {
            assert!(anchor_alive(anchor));
            assert!(!anchor_alive((anchor.0, anchor.1 + 1)));
        }
        assert_ne!(random_u64(), random_u64());
    }
}

//! The JSON-lines mirror's files: appending a line so that a failed write
//! (a full disk) leaves no partial line behind, rotating by size, removing a
//! torn last line (a write cut short by a crash) and reading the files back.
//!
//! The mirror holds a copy of the chain's entries in order; [`super::log`]
//! decides what to write (and fills a gap from the store).

use std::io::{BufRead, Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::chain::{Entry, Read};

/// Appends `lines` (each ending in `\n`) to `path`, rotating first when the
/// file would grow past `max_bytes`. A write that fails part-way is cut back
/// to where the file ended, so a full disk never leaves half a line.
pub fn append(path: &Path, lines: &str, max_bytes: u64, keep: u32) -> std::io::Result<()> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > 0 && size + lines.len() as u64 > max_bytes {
        rotate(path, keep)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let before = f.metadata()?.len();
    if let Err(e) = f.write_all(lines.as_bytes()) {
        // Shrinking needs no space; if even this fails the reader skips
        // the torn line (see `read_lines`) and the next start removes it.
        let _ = f.set_len(before);
        return Err(e);
    }
    Ok(())
}

/// Appends one line and forces it to disk (checkpoints), with the same cut-back.
pub fn append_synced(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let before = f.metadata()?.len();
    let written = f.write_all(line.as_bytes()).and_then(|_| f.sync_data());
    if let Err(e) = written {
        let _ = f.set_len(before);
        return Err(e);
    }
    Ok(())
}

/// Removes what follows the last `\n` of `path` (a line whose write was cut
/// short); returns how many bytes were removed. A missing file is fine.
pub fn repair_tail(path: &Path) -> std::io::Result<u64> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let keep = match last_newline(&mut f, len)? {
        Some(i) => i + 1,
        None => 0,
    };
    if keep < len {
        f.set_len(keep)?;
    }
    Ok(len - keep)
}

/// The offset of the last `\n` in the first `len` bytes of `f`.
fn last_newline(f: &mut std::fs::File, len: u64) -> std::io::Result<Option<u64>> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        end = start;
    }
    Ok(None)
}

/// The last entry in the mirror (its newest file with a line), if any;
/// `Err` names a last line that is not an entry.
pub fn last_entry(path: &Path) -> Result<Option<Entry>, String> {
    for file in mirror_files(path).iter().rev() {
        let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        // The last complete line: between the last-but-one and the last `\n`.
        let io = |e: std::io::Error| format!("{}: {e}", file.display());
        let Some(end) = last_newline(&mut f, len).map_err(io)? else {
            continue;
        };
        let start = last_newline(&mut f, end).map_err(io)?.map_or(0, |i| i + 1);
        let mut line = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        f.read_exact(&mut line).map_err(io)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            // Blank last line: fall back to reading the whole file.
            let all = read_lines(file).map_err(io)?;
            if let Some((at, l)) = all.into_iter().rev().find(|(_, l)| !l.trim().is_empty()) {
                return serde_json::from_str(&l)
                    .map(Some)
                    .map_err(|e| format!("{}:{at}: {e}", file.display()));
            }
            continue;
        }
        return serde_json::from_str(&String::from_utf8_lossy(&line))
            .map(Some)
            .map_err(|e| format!("{}: last line: {e}", file.display()));
    }
    Ok(None)
}

/// `audit.jsonl` -> `.1` -> `.2` ... keeping `keep` old files.
pub fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let name = |i: u32| -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(name(keep));
    for i in (1..keep).rev() {
        if name(i).exists() {
            std::fs::rename(name(i), name(i + 1))?;
        }
    }
    std::fs::rename(path, name(1))
}

/// The mirror files of `path` oldest first: `.N` ... `.1`, then `path`.
pub fn mirror_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = vec![];
    if let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                let Some(n) = n.to_str() else { continue };
                if let Some(i) = n
                    .strip_prefix(base)
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|i| i.parse::<u32>().ok())
                {
                    rotated.push((i, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// The complete lines of a file with their line numbers: a last line without
/// its `\n` is a write cut short (a crash, a full disk), not a line, and is
/// left out — the next start of `gatehouse serve` removes it.
pub fn read_lines(path: &Path) -> std::io::Result<Vec<(usize, String)>> {
    let file = std::fs::File::open(path)?;
    let mut r = std::io::BufReader::new(file);
    let mut out = vec![];
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 || buf.last() != Some(&b'\n') {
            return Ok(out);
        }
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = String::from_utf8(std::mem::take(&mut buf))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        out.push((out.len() + 1, line));
    }
}

/// Reads exported entries (JSON lines, possibly rotated) in file order.
pub fn read_jsonl(files: &[PathBuf]) -> Result<Vec<Read>, String> {
    let mut out = vec![];
    for f in files {
        let lines = read_lines(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (i, l) in lines {
            if l.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{i}", f.display());
            out.push(serde_json::from_str::<Entry>(&l).map_err(|e| (at, e.to_string())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_not_read_and_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        let lines = read_lines(&p).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(repair_tail(&p).unwrap(), 5);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        assert_eq!(repair_tail(&p).unwrap(), 0);
        std::fs::write(&p, "no newline at all").unwrap();
        assert_eq!(repair_tail(&p).unwrap(), 17);
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        assert_eq!(repair_tail(&d.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn the_last_entry_is_found_across_rotated_files_and_long_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.jsonl");
        assert_eq!(last_entry(&p).unwrap(), None);
        let e = |seq: i64| {
            let mut e = crate::audit::chain::seal(
                &crate::audit::NewEntry::new("a", "", "x", "t", "ok", serde_json::json!({})),
                None,
                "2026-01-01T00:00:00Z".into(),
            );
            e.seq = seq;
            e
        };
        let line = |seq| format!("{}\n", serde_json::to_string(&e(seq)).unwrap());
        // Longer than one 64 KiB read, and the current file empty after a rotation.
        let many: String = (1..=400).map(line).collect();
        std::fs::write(&p, &many).unwrap();
        assert_eq!(last_entry(&p).unwrap().unwrap().seq, 400);
        rotate(&p, 3).unwrap();
        std::fs::write(&p, "").unwrap();
        assert_eq!(last_entry(&p).unwrap().unwrap().seq, 400);
        std::fs::write(&p, line(401) + "\n").unwrap();
        assert_eq!(last_entry(&p).unwrap().unwrap().seq, 401);
        std::fs::write(&p, "garbage\n").unwrap();
        assert!(last_entry(&p).unwrap_err().contains("last line"));
    }
}

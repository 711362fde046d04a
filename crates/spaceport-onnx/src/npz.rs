//! An `.npz` written by position: np.savez's layout (one stored ZIP64 entry per `.npy` array),
//! its bodies written at their final offsets by one thread per core, each with its own CRC-32,
//! joined per entry at the end (CRC-32 combines without reading the bytes again).
//!
//! Written here rather than with the `zip` crate because its writer is a stream: one entry after
//! another on one thread, each CRC known only after its bytes. Here every size is known before a
//! byte is written (stored entries, fixed headers), so the file is laid out first, cut into even
//! pieces over the cores, and the headers that carry the CRCs are written last. What reads it is
//! unchanged: numpy's `np.load` (Python's zipfile) and `ndarray-npy`'s reader (the `zip` crate).

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crc32fast::Hasher;

use crate::parallel;

/// One array of the archive: `NAME.npy`, its `.npy` header (magic, version, dict, padding) and
/// its data.
pub struct NpyEntry<'a> {
    pub name: &'a str,
    pub header: Vec<u8>,
    pub body: Body<'a>,
}

/// An entry's data.
pub enum Body<'a> {
    /// Bytes as they lie in memory.
    Bytes(&'a [u8]),
    /// `items` items of `item_len` bytes each, made on demand: `fill(items, out)` writes the bytes
    /// of that range of items into `out`, which holds exactly that many (an array computed while
    /// it is written, never held whole).
    Made {
        items: usize,
        item_len: usize,
        fill: &'a (dyn Fn(Range<usize>, &mut [u8]) + Sync),
    },
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Made {
                items, item_len, ..
            } => (*items * *item_len) as u64,
        }
    }

    /// The unit a piece boundary falls on.
    fn item_len(&self) -> u64 {
        match self {
            Body::Bytes(_) => 1,
            Body::Made { item_len, .. } => *item_len as u64,
        }
    }
}

/// Bytes a piece holds at most: large enough that a write costs little per byte, small enough
/// that its CRC is taken while the bytes are still in cache and the cores stay evenly loaded.
const PIECE: u64 = 1 << 20;

const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
/// The local header's ZIP64 extra field: id, size, uncompressed and compressed sizes.
const LOCAL_ZIP64: u64 = 4 + 16;
/// The central header's: sizes and the local header's offset.
const CENTRAL_ZIP64: u64 = 4 + 24;
const ZIP64_END: u64 = 56;
const ZIP64_LOCATOR: u64 = 20;
const END: u64 = 22;
/// "Version needed to extract" for ZIP64 (APPNOTE 4.4.3.2).
const VERSION: u16 = 45;
/// 1980-01-01 00:00 in MS-DOS form: a fixed stamp, so the same predictions give the same bytes.
const DOS_DATE: u16 = (1 << 5) | 1;

/// Where an entry lies: its local header, and its data (`.npy` header, then body).
struct Placed {
    file_name: Vec<u8>,
    header_at: u64,
    data_len: u64,
}

impl Placed {
    fn data_at(&self) -> u64 {
        self.header_at + LOCAL_HEADER + self.file_name.len() as u64 + LOCAL_ZIP64
    }
}

/// A part of one entry's body: entry `entry`, bytes `range` of its body.
struct Piece {
    entry: usize,
    range: Range<u64>,
}

/// Writes `entries` to a new file at `path` (replacing one there).
pub fn write(path: &Path, entries: &[NpyEntry]) -> io::Result<()> {
    let mut placed = Vec::with_capacity(entries.len());
    let mut at = 0u64;
    for e in entries {
        let file_name = format!("{}.npy", e.name).into_bytes();
        let data_len = e.header.len() as u64 + e.body.len();
        let p = Placed {
            file_name,
            header_at: at,
            data_len,
        };
        at = p.data_at() + data_len;
        placed.push(p);
    }
    let central_at = at;
    let total = central_at + central_len(&placed) + ZIP64_END + ZIP64_LOCATOR + END;

    let file = File::create(path)?;
    // The final size first: the pieces are written out of order, and their blocks need not be
    // found one extension at a time.
    file.set_len(total)?;

    let pieces = pieces(entries);
    let body_bytes: u64 = entries.iter().map(|e| e.body.len()).sum();
    let parts = parallel::parts_for((body_bytes / 64) as usize);
    let crcs = parallel::each_part(parts, |part| {
        let mine = parallel::split(pieces.len(), parts, part);
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(mine.len());
        for piece in &pieces[mine] {
            let e = &entries[piece.entry];
            let bytes: &[u8] = match &e.body {
                Body::Bytes(b) => &b[piece.range.start as usize..piece.range.end as usize],
                Body::Made { item_len, fill, .. } => {
                    let n = *item_len as u64;
                    let len = (piece.range.end - piece.range.start) as usize;
                    // Grown once to a piece's size, then reused without clearing: fill writes
                    // every byte of it.
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    let out = &mut buf[..len];
                    fill(
                        (piece.range.start / n) as usize..(piece.range.end / n) as usize,
                        out,
                    );
                    &*out
                }
            };
            let mut crc = Hasher::new();
            crc.update(bytes);
            let p = &placed[piece.entry];
            file.write_all_at(
                bytes,
                p.data_at() + e.header.len() as u64 + piece.range.start,
            )?;
            out.push(crc);
        }
        Ok::<_, io::Error>(out)
    });
    let mut piece_crcs = Vec::with_capacity(pieces.len());
    for part in crcs {
        piece_crcs.extend(part?);
    }

    // Each entry's CRC: its .npy header's, then its pieces' in order.
    let mut entry_crcs: Vec<Hasher> = entries
        .iter()
        .map(|e| {
            let mut h = Hasher::new();
            h.update(&e.header);
            h
        })
        .collect();
    for (piece, crc) in pieces.iter().zip(&piece_crcs) {
        entry_crcs[piece.entry].combine(crc);
    }
    let crcs: Vec<u32> = entry_crcs.into_iter().map(Hasher::finalize).collect();

    for ((e, p), crc) in entries.iter().zip(&placed).zip(&crcs) {
        let mut head = local_header(p, *crc);
        head.extend_from_slice(&e.header);
        file.write_all_at(&head, p.header_at)?;
    }
    let mut tail = central_directory(&placed, &crcs);
    let central_len = tail.len() as u64;
    end_records(&mut tail, entries.len() as u64, central_at, central_len);
    file.write_all_at(&tail, central_at)?;
    Ok(())
}

/// Every body cut into pieces of at most `PIECE` bytes, on item boundaries, in file order.
fn pieces(entries: &[NpyEntry]) -> Vec<Piece> {
    let mut out = Vec::new();
    for (entry, e) in entries.iter().enumerate() {
        let (len, unit) = (e.body.len(), e.body.item_len());
        let step = (PIECE / unit).max(1) * unit;
        let mut start = 0;
        while start < len {
            let end = (start + step).min(len);
            out.push(Piece {
                entry,
                range: start..end,
            });
            start = end;
        }
    }
    out
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn u64le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// APPNOTE 4.3.7, sizes in the ZIP64 extra field (4.5.3) as np.savez's `force_zip64` writes them.
fn local_header(p: &Placed, crc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity((LOCAL_HEADER + LOCAL_ZIP64) as usize + p.file_name.len());
    u32le(&mut h, 0x0403_4b50);
    u16le(&mut h, VERSION);
    u16le(&mut h, 0); // flags
    u16le(&mut h, 0); // stored
    u16le(&mut h, 0); // time
    u16le(&mut h, DOS_DATE);
    u32le(&mut h, crc);
    u32le(&mut h, u32::MAX); // sizes: in the extra field
    u32le(&mut h, u32::MAX);
    u16le(&mut h, p.file_name.len() as u16);
    u16le(&mut h, LOCAL_ZIP64 as u16);
    h.extend_from_slice(&p.file_name);
    u16le(&mut h, 0x0001);
    u16le(&mut h, 16);
    u64le(&mut h, p.data_len);
    u64le(&mut h, p.data_len);
    h
}

/// The central directory's length, known before its CRCs are.
fn central_len(placed: &[Placed]) -> u64 {
    placed
        .iter()
        .map(|p| CENTRAL_HEADER + CENTRAL_ZIP64 + p.file_name.len() as u64)
        .sum()
}

/// APPNOTE 4.3.12.
fn central_directory(placed: &[Placed], crcs: &[u32]) -> Vec<u8> {
    let mut c = Vec::new();
    for (i, p) in placed.iter().enumerate() {
        u32le(&mut c, 0x0201_4b50);
        u16le(&mut c, (3 << 8) | VERSION); // made by: Unix, so the mode below is read
        u16le(&mut c, VERSION);
        u16le(&mut c, 0);
        u16le(&mut c, 0);
        u16le(&mut c, 0);
        u16le(&mut c, DOS_DATE);
        u32le(&mut c, crcs[i]);
        u32le(&mut c, u32::MAX);
        u32le(&mut c, u32::MAX);
        u16le(&mut c, p.file_name.len() as u16);
        u16le(&mut c, CENTRAL_ZIP64 as u16);
        u16le(&mut c, 0); // comment
        u16le(&mut c, 0); // disk
        u16le(&mut c, 0); // internal attributes
        u32le(&mut c, 0o100_644 << 16); // a regular file, rw-r--r--
        u32le(&mut c, u32::MAX); // offset: in the extra field
        c.extend_from_slice(&p.file_name);
        u16le(&mut c, 0x0001);
        u16le(&mut c, 24);
        u64le(&mut c, p.data_len);
        u64le(&mut c, p.data_len);
        u64le(&mut c, p.header_at);
    }
    debug_assert_eq!(c.len() as u64, central_len(placed));
    c
}

/// The ZIP64 end of central directory record and locator, then the classic end record with its
/// fields saturated where ZIP64's hold the values (APPNOTE 4.3.14–4.3.16).
fn end_records(out: &mut Vec<u8>, entries: u64, central_at: u64, central_len: u64) {
    let zip64_end_at = central_at + central_len;
    u32le(out, 0x0606_4b50);
    u64le(out, ZIP64_END - 12);
    u16le(out, (3 << 8) | VERSION);
    u16le(out, VERSION);
    u32le(out, 0);
    u32le(out, 0);
    u64le(out, entries);
    u64le(out, entries);
    u64le(out, central_len);
    u64le(out, central_at);

    u32le(out, 0x0706_4b50);
    u32le(out, 0);
    u64le(out, zip64_end_at);
    u32le(out, 1);

    let entries16 = u16::try_from(entries).unwrap_or(u16::MAX);
    u32le(out, 0x0605_4b50);
    u16le(out, 0);
    u16le(out, 0);
    u16le(out, entries16);
    u16le(out, entries16);
    u32le(out, u32::try_from(central_len).unwrap_or(u32::MAX));
    u32le(out, u32::try_from(central_at).unwrap_or(u32::MAX));
    u16le(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_each_body_on_item_boundaries() {
        let bytes = vec![7u8; (PIECE * 2 + 5) as usize];
        let fill = |r: Range<usize>, out: &mut [u8]| {
            for (o, i) in out.chunks_exact_mut(24).zip(r) {
                o.fill(i as u8);
            }
        };
        let entries = [
            NpyEntry {
                name: "a",
                header: vec![],
                body: Body::Bytes(&bytes),
            },
            NpyEntry {
                name: "b",
                header: vec![],
                body: Body::Made {
                    items: 100_000,
                    item_len: 24,
                    fill: &fill,
                },
            },
            NpyEntry {
                name: "empty",
                header: vec![],
                body: Body::Bytes(&[]),
            },
        ];
        let ps = pieces(&entries);
        for (entry, e) in entries.iter().enumerate() {
            let mine: Vec<_> = ps.iter().filter(|p| p.entry == entry).collect();
            let mut at = 0;
            for p in &mine {
                assert_eq!(p.range.start, at);
                assert!(p.range.end - p.range.start <= PIECE);
                assert_eq!(p.range.start % e.body.item_len(), 0);
                at = p.range.end;
            }
            assert_eq!(at, e.body.len());
        }
    }
}

//! PLY (ascii, binary little- and big-endian): the header names the vertex and face counts; the
//! bounds come from the vertex records, read as they pass when the vertex element comes first
//! and its properties are scalars (as trimesh, Open3D and VGGT's tools write them).

use super::{Bounds, Counted, Lines};

/// The longest header read.
const MAX_HEADER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Ascii,
    Little,
    Big,
}

/// Where x, y and z are in a vertex record.
#[derive(Debug, Clone, Copy)]
struct Field {
    /// Byte offset (binary) or word index (ascii).
    at: usize,
    /// Scalar type name.
    kind: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Ply {
    header: Vec<u8>,
    /// Where in `header` to look for its end next.
    scan_from: usize,
    /// Parsed once the header ended.
    layout: Option<Layout>,
    /// Vertex records read so far.
    read: u64,
    carry: Vec<u8>,
    lines: Lines,
    bounds: Bounds,
    bad: bool,
}

#[derive(Debug)]
struct Layout {
    encoding: Encoding,
    vertices: u64,
    faces: u64,
    /// x, y, z, when the vertex records can be read (the vertex element first, scalars only).
    xyz: Option<[Field; 3]>,
    /// Bytes per vertex record (binary).
    record: usize,
}

fn size_of(kind: &str) -> Option<(usize, &'static str)> {
    Some(match kind {
        "char" | "int8" => (1, "i8"),
        "uchar" | "uint8" => (1, "u8"),
        "short" | "int16" => (2, "i16"),
        "ushort" | "uint16" => (2, "u16"),
        "int" | "int32" => (4, "i32"),
        "uint" | "uint32" => (4, "u32"),
        "float" | "float32" => (4, "f32"),
        "double" | "float64" => (8, "f64"),
        _ => return None,
    })
}

/// A header's element: name, count, scalar properties (name, size, kind), and whether it has a
/// list property.
type Element = (String, u64, Vec<(String, usize, &'static str)>, bool);

fn parse_header(text: &str) -> Option<Layout> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "ply" {
        return None;
    }
    let mut encoding = None;
    let mut elements: Vec<Element> = vec![];
    for line in lines {
        let mut w = line.split_ascii_whitespace();
        match w.next() {
            Some("format") => {
                encoding = Some(match w.next()? {
                    "ascii" => Encoding::Ascii,
                    "binary_little_endian" => Encoding::Little,
                    "binary_big_endian" => Encoding::Big,
                    _ => return None,
                });
            }
            Some("element") => {
                let name = w.next()?.to_string();
                let count = w.next()?.parse().ok()?;
                elements.push((name, count, vec![], false));
            }
            Some("property") => {
                let e = elements.last_mut()?;
                match w.next()? {
                    "list" => e.3 = true,
                    kind => {
                        let (size, kind) = size_of(kind)?;
                        e.2.push((w.next()?.to_string(), size, kind));
                    }
                }
            }
            _ => {}
        }
    }
    let encoding = encoding?;
    let count = |name: &str| elements.iter().find(|e| e.0 == name).map_or(0, |e| e.1);
    let (vertices, faces) = (count("vertex"), count("face"));
    let mut xyz = None;
    let mut record = 0;
    if let Some((name, _, props, false)) = elements.first()
        && name == "vertex"
    {
        let mut at = 0;
        let mut found: [Option<Field>; 3] = [None; 3];
        for (i, (prop, size, kind)) in props.iter().enumerate() {
            let slot = match prop.as_str() {
                "x" => Some(0),
                "y" => Some(1),
                "z" => Some(2),
                _ => None,
            };
            if let Some(s) = slot {
                let at = if encoding == Encoding::Ascii { i } else { at };
                found[s] = Some(Field { at, kind });
            }
            at += size;
        }
        record = at;
        if let [Some(x), Some(y), Some(z)] = found {
            xyz = Some([x, y, z]);
        }
    }
    Some(Layout {
        encoding,
        vertices,
        faces,
        xyz,
        record,
    })
}

fn decode(bytes: &[u8], kind: &str, big: bool) -> f64 {
    macro_rules! num {
        ($t:ty, $n:expr) => {{
            let a: [u8; $n] = bytes[..$n].try_into().unwrap_or([0; $n]);
            (if big {
                <$t>::from_be_bytes(a)
            } else {
                <$t>::from_le_bytes(a)
            }) as f64
        }};
    }
    match kind {
        "i8" => num!(i8, 1),
        "u8" => num!(u8, 1),
        "i16" => num!(i16, 2),
        "u16" => num!(u16, 2),
        "i32" => num!(i32, 4),
        "u32" => num!(u32, 4),
        "f32" => num!(f32, 4),
        _ => num!(f64, 8),
    }
}

impl Ply {
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        if self.bad {
            return;
        }
        if self.layout.is_none() {
            // The header ends at the first "end_header" line.
            let before = self.header.len();
            self.header.extend_from_slice(chunk);
            let end = match find_end(&self.header, self.scan_from) {
                Ok(end) => end,
                Err(again) => {
                    // Each byte of the header is looked at about once, however it is chunked.
                    self.scan_from = again;
                    if self.header.len() > MAX_HEADER {
                        self.bad = true;
                    }
                    return;
                }
            };
            let text = String::from_utf8_lossy(&self.header[..end]).into_owned();
            match parse_header(&text) {
                Some(l) => self.layout = Some(l),
                None => {
                    self.bad = true;
                    return;
                }
            }
            chunk = &chunk[end - before..];
            self.header = Vec::new();
        }
        let Some(layout) = &self.layout else { return };
        let Some(xyz) = layout.xyz else { return };
        if self.read >= layout.vertices {
            return;
        }
        match layout.encoding {
            Encoding::Ascii => {
                let (read, bounds, bad, total) = (
                    &mut self.read,
                    &mut self.bounds,
                    &mut self.bad,
                    layout.vertices,
                );
                self.lines.feed(chunk, |line| {
                    if *read >= total {
                        return;
                    }
                    let words: Vec<&[u8]> = line
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|w| !w.is_empty())
                        .collect();
                    if words.is_empty() {
                        return;
                    }
                    let mut p = [0f64; 3];
                    for (v, f) in p.iter_mut().zip(xyz) {
                        match words
                            .get(f.at)
                            .and_then(|w| std::str::from_utf8(w).ok())
                            .and_then(|w| w.parse::<f64>().ok())
                        {
                            Some(x) => *v = x,
                            None => {
                                *bad = true;
                                return;
                            }
                        }
                    }
                    bounds.add(p);
                    *read += 1;
                });
            }
            Encoding::Little | Encoding::Big => {
                let big = layout.encoding == Encoding::Big;
                let size = layout.record;
                if size == 0 {
                    return;
                }
                let take = |rec: &[u8], bounds: &mut Bounds| {
                    let p = xyz.map(|f| decode(&rec[f.at..], f.kind, big));
                    bounds.add(p);
                };
                if !self.carry.is_empty() {
                    let need = size - self.carry.len();
                    let n = need.min(chunk.len());
                    self.carry.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.carry.len() < size {
                        return;
                    }
                    take(&self.carry, &mut self.bounds);
                    self.carry.clear();
                    self.read += 1;
                }
                while self.read < layout.vertices && chunk.len() >= size {
                    take(&chunk[..size], &mut self.bounds);
                    chunk = &chunk[size..];
                    self.read += 1;
                }
                if self.read < layout.vertices {
                    self.carry.extend_from_slice(chunk);
                }
            }
        }
    }

    pub(crate) fn finish(mut self) -> Option<Counted> {
        let layout = self.layout.take()?;
        if layout.encoding == Encoding::Ascii && self.read < layout.vertices {
            let (read, bounds) = (&mut self.read, &mut self.bounds);
            let xyz = layout.xyz;
            self.lines.finish(|line| {
                let words: Vec<f64> = String::from_utf8_lossy(line)
                    .split_ascii_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                if let Some(xyz) = xyz
                    && let (Some(x), Some(y), Some(z)) = (
                        words.get(xyz[0].at),
                        words.get(xyz[1].at),
                        words.get(xyz[2].at),
                    )
                {
                    bounds.add([*x, *y, *z]);
                    *read += 1;
                }
            });
        }
        if self.bad || (layout.xyz.is_some() && self.read < layout.vertices) {
            return None;
        }
        let mut c = Counted {
            bounds: self.bounds,
            ..Counted::default()
        };
        if layout.faces == 0 {
            c.points = layout.vertices;
        } else {
            c.vertices = layout.vertices;
            c.faces = layout.faces;
        }
        Some(c)
    }
}

/// Where the header's "end_header" line ends (the byte after its newline), looking from `from`;
/// else where to look from once more bytes came (a tag cut at the edge, or one whose line has not
/// ended yet).
fn find_end(bytes: &[u8], mut from: usize) -> Result<usize, usize> {
    let tag = b"end_header";
    while let Some(i) = bytes[from..].windows(tag.len()).position(|w| w == tag) {
        let at = from + i;
        if at == 0 || bytes[at - 1] == b'\n' {
            return match bytes[at..].iter().position(|&b| b == b'\n') {
                Some(nl) => Ok(at + nl + 1),
                None => Err(at),
            };
        }
        from = at + 1;
    }
    Err(bytes.len().saturating_sub(tag.len()).max(from))
}

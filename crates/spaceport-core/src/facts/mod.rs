//! What a 3D result file holds, learnt as its bytes stream past on their way into the store (no
//! second read, nothing held but a header and a carried partial record): vertex, point and face
//! counts, bounds and, for a scene of points with camera frusta (VGGT's), the camera count.
//! These go into the artifact's `meta` (API.md shows `{"points": …, "cameras": …}`). GLB, OBJ
//! and PLY; a file that does not parse as its type yields nothing rather than a wrong figure.

mod glb;
mod obj;
mod ply;

use serde_json::{Map, Value, json};

/// The 3D formats facts are learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Glb,
    Obj,
    Ply,
}

impl Format {
    /// The format of an artifact with this content type and file name, if it is a 3D one.
    pub fn of(content_type: &str, filename: &str) -> Option<Format> {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match (content_type.to_ascii_lowercase().as_str(), ext.as_str()) {
            ("model/gltf-binary", _) | (_, "glb") => Some(Format::Glb),
            ("model/obj", _) | (_, "obj") => Some(Format::Obj),
            ("application/ply" | "model/ply" | "application/x-ply", _) | (_, "ply") => {
                Some(Format::Ply)
            }
            _ => None,
        }
    }
}

/// Axis-aligned bounds, grown point by point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    lo: [f64; 3],
    hi: [f64; 3],
    any: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            lo: [f64::INFINITY; 3],
            hi: [f64::NEG_INFINITY; 3],
            any: false,
        }
    }
}

impl Bounds {
    pub(crate) fn add(&mut self, p: [f64; 3]) {
        if p.iter().any(|v| !v.is_finite()) {
            return;
        }
        for (i, v) in p.iter().enumerate() {
            self.lo[i] = self.lo[i].min(*v);
            self.hi[i] = self.hi[i].max(*v);
        }
        self.any = true;
    }

    fn to_json(self) -> Option<Value> {
        self.any.then(|| json!([self.lo, self.hi]))
    }
}

/// What was counted; turned into `meta` keys by `Inspector::finish`.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    /// Points of point clouds.
    pub(crate) points: u64,
    /// Vertices of meshes (and of other primitives that are not points).
    pub(crate) vertices: u64,
    /// Triangles (a polygon counts as the triangles it splits into, as trimesh loads it).
    pub(crate) faces: u64,
    /// Camera frusta in a scene of points (VGGT's): its triangle meshes.
    pub(crate) cameras: Option<u64>,
    pub(crate) bounds: Bounds,
}

enum State {
    Glb(Box<glb::Glb>),
    Obj(obj::Obj),
    Ply(Box<ply::Ply>),
    /// `finish` was called.
    Finished,
}

/// Learns a file's facts from its bytes in order, chunk by chunk.
pub struct Inspector {
    state: State,
}

impl Inspector {
    /// An inspector for a file of `format`.
    pub fn new(format: Format) -> Inspector {
        let state = match format {
            Format::Glb => State::Glb(Box::default()),
            Format::Obj => State::Obj(obj::Obj::default()),
            Format::Ply => State::Ply(Box::default()),
        };
        Inspector { state }
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.state {
            State::Glb(g) => g.feed(chunk),
            State::Obj(o) => o.feed(chunk),
            State::Ply(p) => p.feed(chunk),
            State::Finished => {}
        }
    }

    /// The facts, as `meta` keys: `points` or `vertices` and `faces`, `bounds`
    /// (`[[min x, y, z], [max x, y, z]]`) and `cameras` where they apply; empty when the file
    /// ended early or did not parse. Once: the inspector is spent after it.
    pub fn finish(&mut self) -> Map<String, Value> {
        let counted = match std::mem::replace(&mut self.state, State::Finished) {
            State::Glb(g) => g.finish(),
            State::Obj(o) => o.finish(),
            State::Ply(p) => p.finish(),
            State::Finished => None,
        };
        let mut meta = Map::new();
        let Some(c) = counted else {
            return meta;
        };
        if c.points > 0 {
            meta.insert("points".into(), json!(c.points));
        }
        if c.vertices > 0 || c.faces > 0 {
            meta.insert("vertices".into(), json!(c.vertices));
            meta.insert("faces".into(), json!(c.faces));
        }
        if let Some(b) = c.bounds.to_json() {
            meta.insert("bounds".into(), b);
        }
        if let Some(n) = c.cameras {
            meta.insert("cameras".into(), json!(n));
        }
        meta
    }
}

/// Splits a stream into lines without holding more than one (capped: a longer line ends the
/// inspection, as a file that is not text).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
    pub(crate) broken: bool,
}

/// The longest line a text format may have here.
const MAX_LINE: usize = 64 * 1024;

impl Lines {
    /// Calls `f` with each whole line of `chunk` (the carried start of one included).
    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut f: impl FnMut(&[u8])) {
        if self.broken {
            return;
        }
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                f(&chunk[..nl]);
            } else {
                self.partial.extend_from_slice(&chunk[..nl]);
                f(&std::mem::take(&mut self.partial));
            }
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        if self.partial.len() > MAX_LINE {
            self.broken = true;
            self.partial = Vec::new();
        }
    }

    /// The last line, when the file does not end with a newline.
    pub(crate) fn finish(&mut self, f: impl FnOnce(&[u8])) {
        if !self.broken && !self.partial.is_empty() {
            f(&std::mem::take(&mut self.partial));
        }
    }
}

#[cfg(test)]
mod tests;

//! Binary glTF: the JSON chunk (at the start of the file) gives the counts; the bounds are the
//! POSITION data read as the BIN chunk passes, placed by each node's world transform (trimesh and
//! VGGT's Space put the scene's alignment there), so they are the scene's, not its meshes'.

use serde_json::Value;

use super::{Bounds, Counted};

/// The largest JSON chunk read: a scene's JSON is kilobytes (a VGGT scene of 100 cameras, ~30
/// KB; its data is in the BIN chunk), and this much is held per transfer, parsed, then dropped.
/// A file whose JSON is larger gets no facts.
const MAX_JSON: usize = 1 << 20;

/// The most node visits a scene's walk takes (a node reached by several paths counts each time).
const MAX_VISITS: usize = 100_000;

type Mat = [f64; 16];

const IDENTITY: Mat = [
    1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
];

#[derive(Debug, Default)]
enum Phase {
    /// Collecting the 12-byte header and the JSON chunk's 8-byte header.
    #[default]
    Header,
    /// Collecting the JSON chunk of this length.
    Json(usize),
    /// Collecting the BIN chunk's 8-byte header.
    BinHeader,
    /// Reading positions; the absolute offset into the BIN data of the next byte.
    Bin(usize),
    Done,
    Bad,
}

/// One run of VEC3 float positions in the BIN chunk, and where each of its uses is placed.
#[derive(Debug)]
struct Read {
    start: usize,
    stride: usize,
    count: usize,
    next: usize,
    partial: Vec<u8>,
    places: Vec<Mat>,
}

#[derive(Debug, Default)]
pub(crate) struct Glb {
    phase: Phase,
    buf: Vec<u8>,
    counted: Counted,
    reads: Vec<Read>,
    /// Whether every POSITION could be read for the bounds.
    all_readable: bool,
}

fn mul(a: &Mat, b: &Mat) -> Mat {
    // Column-major, as glTF stores them.
    let mut out = [0.0; 16];
    for c in 0..4 {
        for r in 0..4 {
            out[c * 4 + r] = (0..4).map(|k| a[k * 4 + r] * b[c * 4 + k]).sum();
        }
    }
    out
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A node's own transform: its `matrix`, or translation × rotation × scale.
fn local(node: &Value) -> Mat {
    if let Some(m) = node["matrix"].as_array()
        && m.len() == 16
    {
        let mut out = [0.0; 16];
        for (o, v) in out.iter_mut().zip(m) {
            *o = num(v).unwrap_or(0.0);
        }
        return out;
    }
    let get = |key: &str, default: &[f64]| -> Vec<f64> {
        node[key]
            .as_array()
            .map(|a| a.iter().map(|v| num(v).unwrap_or(0.0)).collect())
            .filter(|a: &Vec<f64>| a.len() == default.len())
            .unwrap_or_else(|| default.to_vec())
    };
    let t = get("translation", &[0.0, 0.0, 0.0]);
    let q = get("rotation", &[0.0, 0.0, 0.0, 1.0]);
    let s = get("scale", &[1.0, 1.0, 1.0]);
    let (x, y, z, w) = (q[0], q[1], q[2], q[3]);
    let r = [
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y + z * w),
        2.0 * (x * z - y * w),
        0.0,
        2.0 * (x * y - z * w),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z + x * w),
        0.0,
        2.0 * (x * z + y * w),
        2.0 * (y * z - x * w),
        1.0 - 2.0 * (x * x + y * y),
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ];
    let mut m = r;
    for c in 0..3 {
        for row in 0..3 {
            m[c * 4 + row] *= s[c];
        }
    }
    m[12] = t[0];
    m[13] = t[1];
    m[14] = t[2];
    m
}

fn apply(m: &Mat, p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = m[r] * p[0] + m[4 + r] * p[1] + m[8 + r] * p[2] + m[12 + r];
    }
    out
}

impl Glb {
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) {
        loop {
            if chunk.is_empty() {
                return;
            }
            match self.phase {
                Phase::Header => {
                    let n = (20 - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.buf.len() < 20 {
                        return;
                    }
                    let h = std::mem::take(&mut self.buf);
                    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) as usize;
                    let version = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                    if &h[0..4] != b"glTF"
                        || version != 2
                        || &h[16..20] != b"JSON"
                        || len > MAX_JSON
                    {
                        self.phase = Phase::Bad;
                        return;
                    }
                    self.phase = Phase::Json(len);
                }
                Phase::Json(len) => {
                    let n = (len - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.buf.len() < len {
                        return;
                    }
                    let json = std::mem::take(&mut self.buf);
                    self.phase = match serde_json::from_slice::<Value>(&json) {
                        Ok(doc) if self.plan(&doc) => Phase::BinHeader,
                        _ => Phase::Bad,
                    };
                }
                Phase::BinHeader => {
                    let n = (8 - self.buf.len()).min(chunk.len());
                    self.buf.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.buf.len() < 8 {
                        return;
                    }
                    let h = std::mem::take(&mut self.buf);
                    self.phase = if &h[4..8] == b"BIN\0" {
                        Phase::Bin(0)
                    } else {
                        Phase::Done
                    };
                }
                Phase::Bin(pos) => {
                    self.read_bin(pos, chunk);
                    self.phase = Phase::Bin(pos + chunk.len());
                    return;
                }
                Phase::Done | Phase::Bad => return,
            }
        }
    }

    /// Counts what the scene holds and plans which BIN bytes to read for its bounds; false for a
    /// node graph too large to walk (a hostile file's shared children multiply the visits).
    fn plan(&mut self, doc: &Value) -> bool {
        let empty = vec![];
        let list = |k: &str| doc[k].as_array().unwrap_or(&empty);
        let (nodes, meshes, accessors, views) = (
            list("nodes"),
            list("meshes"),
            list("accessors"),
            list("bufferViews"),
        );
        let count = |a: &Value| -> u64 {
            a.as_u64()
                .and_then(|i| accessors.get(i as usize))
                .and_then(|acc| acc["count"].as_u64())
                .unwrap_or(0)
        };
        // The nodes of the default scene (or every root when there is none), with world matrices.
        let scene = doc["scene"].as_u64().unwrap_or(0) as usize;
        let roots: Vec<usize> = match doc["scenes"].get(scene) {
            Some(s) => s["nodes"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(|v| v.as_u64().map(|i| i as usize))
                .collect(),
            // No scene: every node that is no other node's child.
            None => {
                let children: std::collections::HashSet<u64> = nodes
                    .iter()
                    .flat_map(|n| n["children"].as_array().unwrap_or(&empty))
                    .filter_map(|c| c.as_u64())
                    .collect();
                (0..nodes.len())
                    .filter(|i| !children.contains(&(*i as u64)))
                    .collect()
            }
        };
        let mut stack: Vec<(usize, Mat, usize)> =
            roots.into_iter().map(|i| (i, IDENTITY, 0)).collect();
        let mut instances: Vec<(usize, Mat)> = vec![];
        let mut visits = 0usize;
        while let Some((i, parent, depth)) = stack.pop() {
            visits += 1;
            if visits > MAX_VISITS {
                return false;
            }
            // A cycle or an absurd depth is not a scene worth describing.
            let Some(node) = nodes.get(i).filter(|_| depth < 64) else {
                continue;
            };
            let world = mul(&parent, &local(node));
            if let Some(m) = node["mesh"].as_u64() {
                instances.push((m as usize, world));
            }
            for c in node["children"].as_array().unwrap_or(&empty) {
                if let Some(c) = c.as_u64() {
                    stack.push((c as usize, world, depth + 1));
                }
            }
        }
        let mut triangle_meshes = 0;
        let mut readable = true;
        let mut reads: Vec<(usize, Mat)> = vec![];
        for (m, world) in &instances {
            let mut has_triangles = false;
            for p in meshes
                .get(*m)
                .and_then(|m| m["primitives"].as_array())
                .unwrap_or(&empty)
            {
                let pos = &p["attributes"]["POSITION"];
                let n = count(pos);
                match p["mode"].as_u64().unwrap_or(4) {
                    0 => self.counted.points += n,
                    4 => {
                        has_triangles = true;
                        self.counted.vertices += n;
                        self.counted.faces += if p["indices"].is_null() {
                            n / 3
                        } else {
                            count(&p["indices"]) / 3
                        };
                    }
                    _ => self.counted.vertices += n,
                }
                match pos.as_u64() {
                    Some(a) => reads.push((a as usize, *world)),
                    None => readable = false,
                }
            }
            if has_triangles {
                triangle_meshes += 1;
            }
        }
        // A scene of points with triangle meshes beside them is VGGT's: those are its cameras.
        if self.counted.points > 0 {
            self.counted.cameras = Some(triangle_meshes);
        }
        for (a, world) in reads {
            let Some(acc) = accessors.get(a) else {
                readable = false;
                continue;
            };
            let view = acc["bufferView"]
                .as_u64()
                .and_then(|v| views.get(v as usize));
            let float_vec3 = acc["componentType"].as_u64() == Some(5126) && acc["type"] == "VEC3";
            let (Some(view), true, true) = (view, float_vec3, acc["sparse"].is_null()) else {
                readable = false;
                continue;
            };
            // Only the one buffer a GLB holds (its BIN chunk).
            if view["buffer"].as_u64().unwrap_or(0) != 0 || view["uri"].is_string() {
                readable = false;
                continue;
            }
            let start = view["byteOffset"].as_u64().unwrap_or(0) as usize
                + acc["byteOffset"].as_u64().unwrap_or(0) as usize;
            let stride = view["byteStride"].as_u64().unwrap_or(12).max(12) as usize;
            let count = acc["count"].as_u64().unwrap_or(0) as usize;
            match self
                .reads
                .iter_mut()
                .find(|r| r.start == start && r.stride == stride && r.count == count)
            {
                Some(r) => r.places.push(world),
                None => self.reads.push(Read {
                    start,
                    stride,
                    count,
                    next: 0,
                    partial: Vec::with_capacity(12),
                    places: vec![world],
                }),
            }
        }
        self.all_readable = readable;
        true
    }

    /// Reads the positions in `chunk`, the BIN data from offset `pos`.
    fn read_bin(&mut self, pos: usize, chunk: &[u8]) {
        let end = pos + chunk.len();
        let bounds = &mut self.counted.bounds;
        for r in &mut self.reads {
            while r.next < r.count {
                let e = r.start + r.next * r.stride;
                if e >= end {
                    break;
                }
                let from = e.max(pos) - pos;
                let take = (12 - r.partial.len()).min(chunk.len() - from);
                r.partial.extend_from_slice(&chunk[from..from + take]);
                if r.partial.len() < 12 {
                    break;
                }
                let f = |i: usize| {
                    f32::from_le_bytes([
                        r.partial[i],
                        r.partial[i + 1],
                        r.partial[i + 2],
                        r.partial[i + 3],
                    ]) as f64
                };
                let p = [f(0), f(4), f(8)];
                for m in &r.places {
                    bounds.add(apply(m, p));
                }
                r.partial.clear();
                r.next += 1;
            }
        }
    }

    pub(crate) fn finish(self) -> Option<Counted> {
        match self.phase {
            Phase::Bin(_) | Phase::BinHeader | Phase::Done => {}
            _ => return None,
        }
        let mut c = self.counted;
        // Bounds only when every position was read: a partial box would be a wrong one.
        if !self.all_readable || self.reads.iter().any(|r| r.next < r.count) {
            c.bounds = Bounds::default();
        }
        Some(c)
    }
}

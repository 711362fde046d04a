//! A GLB as OBJ or PLY: what `?format=` and a conversion hand users whose tools do not read
//! glTF. The scene's nodes are walked from its root with their transforms, so every vertex is
//! written where the GLB places it (the bounds stay the same); triangle primitives (lists,
//! strips and fans) become faces, point primitives a point cloud, lines are left out. Vertex
//! colours are kept (OBJ's `v x y z r g b`, PLY's `red green blue`). Textures are not carried
//! over: an OBJ gets the geometry and its colours, not an MTL and images.
//!
//! The parsing is the `gltf` crate's; the two writers are ours because each is a few lines of
//! a fixed text or binary layout.

use std::fmt::Write as _;

use gltf::mesh::Mode;

/// What a GLB can be turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshFormat {
    Obj,
    Ply,
}

impl MeshFormat {
    /// Parses `obj` or `ply`.
    pub fn parse(s: &str) -> Option<MeshFormat> {
        match s.to_ascii_lowercase().as_str() {
            "obj" => Some(MeshFormat::Obj),
            "ply" => Some(MeshFormat::Ply),
            _ => None,
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            MeshFormat::Obj => "obj",
            MeshFormat::Ply => "ply",
        }
    }

    /// The content type it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            MeshFormat::Obj => "model/obj",
            MeshFormat::Ply => "application/ply",
        }
    }
}

/// Why a GLB could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not a GLB this converter reads: {0}")]
    Parse(String),
    #[error("{0}")]
    Unsupported(String),
}

/// The geometry of a scene in world coordinates.
#[derive(Debug, Default)]
pub struct Geometry {
    /// Mesh vertices and their colours (RGB, 0–255; white where a primitive has none).
    pub vertices: Vec<[f32; 3]>,
    pub vertex_colors: Vec<[u8; 3]>,
    pub faces: Vec<[u32; 3]>,
    /// Point-cloud points and their colours.
    pub points: Vec<[f32; 3]>,
    pub point_colors: Vec<[u8; 3]>,
    /// Whether any primitive carried colours.
    pub colored: bool,
}

type Mat4 = [[f64; 4]; 4];

const IDENTITY: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// `a · b` for column-major matrices (glTF's layout: `m[column][row]`).
fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (c, col) in out.iter_mut().enumerate() {
        for (r, cell) in col.iter_mut().enumerate() {
            *cell = (0..4).map(|k| a[k][r] * b[c][k]).sum();
        }
    }
    out
}

fn apply(m: &Mat4, p: [f32; 3]) -> [f32; 3] {
    let v = [p[0] as f64, p[1] as f64, p[2] as f64, 1.0];
    let mut out = [0f32; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = (0..4).map(|k| m[k][r] * v[k]).sum::<f64>() as f32;
    }
    out
}

/// Reads a GLB's scene into world-space geometry.
pub fn read_glb(glb: &[u8]) -> Result<Geometry, ConvertError> {
    let gltf = gltf::Gltf::from_slice(glb).map_err(|e| ConvertError::Parse(e.to_string()))?;
    let blob = gltf.blob.as_deref();
    let mut g = Geometry::default();
    let scene = gltf
        .default_scene()
        .or_else(|| gltf.scenes().next())
        .ok_or_else(|| ConvertError::Unsupported("the GLB has no scene".into()))?;
    // (node, its parent's world matrix), depth first; glTF forbids cycles, and the depth is
    // bounded by the node count anyway.
    let mut stack: Vec<(gltf::Node, Mat4)> = scene.nodes().map(|n| (n, IDENTITY)).collect();
    let mut visited = 0usize;
    while let Some((node, parent)) = stack.pop() {
        visited += 1;
        if visited > gltf.nodes().len() * 4 + 16 {
            return Err(ConvertError::Parse("the node graph is not a tree".into()));
        }
        let local = node.transform().matrix().map(|c| c.map(f64::from));
        let world = mul(&parent, &local);
        if let Some(mesh) = node.mesh() {
            for prim in mesh.primitives() {
                read_primitive(&prim, blob, &world, &mut g)?;
            }
        }
        for child in node.children() {
            stack.push((child, world));
        }
    }
    Ok(g)
}

fn read_primitive(
    prim: &gltf::Primitive,
    blob: Option<&[u8]>,
    world: &Mat4,
    g: &mut Geometry,
) -> Result<(), ConvertError> {
    let reader = prim.reader(|b| match b.source() {
        gltf::buffer::Source::Bin => blob,
        // An external buffer is not in the file: nothing to read it from.
        gltf::buffer::Source::Uri(_) => None,
    });
    let Some(positions) = reader.read_positions() else {
        return Ok(());
    };
    let positions: Vec<[f32; 3]> = positions.map(|p| apply(world, p)).collect();
    let colors: Option<Vec<[u8; 3]>> = reader.read_colors(0).map(|c| {
        g.colored = true;
        c.into_rgb_u8().collect()
    });
    let color = |i: usize| {
        colors
            .as_ref()
            .and_then(|c| c.get(i).copied())
            .unwrap_or([255; 3])
    };
    let n = positions.len() as u32;
    let indices: Vec<u32> = match reader.read_indices() {
        Some(ix) => ix.into_u32().collect(),
        None => (0..n).collect(),
    };
    if let Some(bad) = indices.iter().find(|&&i| i >= n) {
        return Err(ConvertError::Parse(format!(
            "index {bad} is past the primitive's {n} vertices"
        )));
    }
    match prim.mode() {
        Mode::Points => {
            for &i in &indices {
                g.points.push(positions[i as usize]);
                g.point_colors.push(color(i as usize));
            }
        }
        Mode::Triangles | Mode::TriangleStrip | Mode::TriangleFan => {
            let base = g.vertices.len() as u32;
            for (i, p) in positions.iter().enumerate() {
                g.vertices.push(*p);
                g.vertex_colors.push(color(i));
            }
            let tri = |a: u32, b: u32, c: u32| [base + a, base + b, base + c];
            match prim.mode() {
                Mode::Triangles => {
                    for t in indices.chunks_exact(3) {
                        g.faces.push(tri(t[0], t[1], t[2]));
                    }
                }
                Mode::TriangleStrip => {
                    for k in 2..indices.len() {
                        let (a, b, c) = (indices[k - 2], indices[k - 1], indices[k]);
                        // Every other triangle of a strip is wound the other way round.
                        g.faces.push(if k % 2 == 0 {
                            tri(a, b, c)
                        } else {
                            tri(b, a, c)
                        });
                    }
                }
                _ => {
                    for k in 2..indices.len() {
                        g.faces.push(tri(indices[0], indices[k - 1], indices[k]));
                    }
                }
            }
        }
        Mode::Lines | Mode::LineLoop | Mode::LineStrip => {}
    }
    Ok(())
}

/// Converts a GLB to `to`. A scene of points (a VGGT reconstruction) becomes a PLY point cloud
/// of its points, the cameras drawn beside them left out; OBJ holds meshes, so a scene with
/// points is refused for OBJ, naming PLY.
pub fn convert(glb: &[u8], to: MeshFormat) -> Result<Vec<u8>, ConvertError> {
    let g = read_glb(glb)?;
    match to {
        MeshFormat::Ply if !g.points.is_empty() => {
            Ok(ply(&g.points, &g.point_colors, &[], g.colored))
        }
        MeshFormat::Ply if !g.faces.is_empty() => {
            Ok(ply(&g.vertices, &g.vertex_colors, &g.faces, g.colored))
        }
        MeshFormat::Obj if !g.points.is_empty() => Err(ConvertError::Unsupported(
            "the scene is a point cloud, which OBJ does not hold: ask for ply".into(),
        )),
        MeshFormat::Obj if !g.faces.is_empty() => Ok(obj(&g)),
        _ => Err(ConvertError::Unsupported(
            "the GLB holds no triangles or points".into(),
        )),
    }
}

/// OBJ text: `v x y z [r g b]` and 1-based `f a b c`.
fn obj(g: &Geometry) -> Vec<u8> {
    let mut s = String::with_capacity(g.vertices.len() * 40 + g.faces.len() * 24);
    s.push_str("# converted from GLB by Spaceport\n");
    for (p, c) in g.vertices.iter().zip(&g.vertex_colors) {
        if g.colored {
            let f = |v: u8| f32::from(v) / 255.0;
            let _ = writeln!(
                s,
                "v {} {} {} {} {} {}",
                p[0],
                p[1],
                p[2],
                f(c[0]),
                f(c[1]),
                f(c[2])
            );
        } else {
            let _ = writeln!(s, "v {} {} {}", p[0], p[1], p[2]);
        }
    }
    for f in &g.faces {
        let _ = writeln!(s, "f {} {} {}", f[0] + 1, f[1] + 1, f[2] + 1);
    }
    s.into_bytes()
}

/// Binary little-endian PLY: vertices (with colours when any), then faces when there are any.
fn ply(vertices: &[[f32; 3]], colors: &[[u8; 3]], faces: &[[u32; 3]], colored: bool) -> Vec<u8> {
    let mut head = format!(
        "ply\nformat binary_little_endian 1.0\ncomment converted from GLB by Spaceport\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n",
        vertices.len()
    );
    if colored {
        head.push_str("property uchar red\nproperty uchar green\nproperty uchar blue\n");
    }
    if !faces.is_empty() {
        let _ = write!(
            head,
            "element face {}\nproperty list uchar int vertex_indices\n",
            faces.len()
        );
    }
    head.push_str("end_header\n");
    let per = 12 + if colored { 3 } else { 0 };
    let mut out = Vec::with_capacity(head.len() + vertices.len() * per + faces.len() * 13);
    out.extend_from_slice(head.as_bytes());
    for (p, c) in vertices.iter().zip(colors) {
        for v in p {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if colored {
            out.extend_from_slice(c);
        }
    }
    for f in faces {
        out.push(3);
        for i in f {
            out.extend_from_slice(&(*i as i32).to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_products_compose_transforms() {
        let mut t = IDENTITY;
        t[3] = [1.0, 2.0, 3.0, 1.0]; // translate
        let mut s = IDENTITY;
        s[0][0] = 2.0; // scale x
        // Scale first, then translate.
        assert_eq!(apply(&mul(&t, &s), [1.0, 1.0, 1.0]), [3.0, 3.0, 4.0]);
    }

    #[test]
    fn a_ply_header_says_what_follows() {
        let out = ply(
            &[[0.0; 3], [1.0; 3], [2.0; 3]],
            &[[9; 3]; 3],
            &[[0, 1, 2]],
            true,
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("element vertex 3\n") && text.contains("element face 1\n"));
        let body = out.len() - (text.find("end_header\n").unwrap() + 11);
        assert_eq!(body, 3 * 15 + 13);
    }

    #[test]
    fn bytes_that_are_not_a_glb_are_refused() {
        assert!(matches!(
            convert(b"nope", MeshFormat::Ply),
            Err(ConvertError::Parse(_))
        ));
        assert_eq!(MeshFormat::parse("PLY"), Some(MeshFormat::Ply));
        assert_eq!(MeshFormat::parse("stl"), None);
    }
}

//! The inspectors on small files made here; the same figures as trimesh on the mirrors' real
//! files are checked in the workspace's integration tests (tests/it: runs.rs, spaces.rs).

use serde_json::{Value, json};

use super::{Format, Inspector};

/// Facts from `bytes` fed whole, then one byte at a time, then in chunks of 7: all the same.
fn facts(format: Format, bytes: &[u8]) -> Value {
    let whole = {
        let mut i = Inspector::new(format);
        i.feed(bytes);
        let once = Value::Object(i.finish());
        assert_eq!(Value::Object(i.finish()), json!({}), "spent after finish");
        once
    };
    for size in [1, 7] {
        let mut i = Inspector::new(format);
        for c in bytes.chunks(size) {
            i.feed(c);
        }
        assert_eq!(Value::Object(i.finish()), whole, "fed in chunks of {size}");
    }
    whole
}

/// A GLB of `json` and `bin`, padded as the spec says.
fn glb(json: &Value, bin: &[u8]) -> Vec<u8> {
    let mut j = serde_json::to_vec(json).unwrap();
    while !j.len().is_multiple_of(4) {
        j.push(b' ');
    }
    let mut b = bin.to_vec();
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    let total = 12 + 8 + j.len() + 8 + b.len();
    let mut out = vec![];
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(j.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&j);
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b"BIN\0");
    out.extend_from_slice(&b);
    out
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

#[test]
fn a_scene_of_points_and_cameras_is_counted_and_bounded_where_its_nodes_place_it() {
    // Three points, then one triangle used by two camera nodes, one of them moved by +10 in x.
    let points = [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 0.0];
    let tri = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let mut bin = floats(&points);
    bin.extend(floats(&tri));
    let doc = json!({
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0, 1, 2]}],
        "nodes": [
            {"mesh": 0},
            {"mesh": 1},
            {"mesh": 1, "translation": [10.0, 0.0, 0.0]},
        ],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0}, "mode": 0}]},
            {"primitives": [{"attributes": {"POSITION": 1}}]},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC3"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 36},
        ],
        "buffers": [{"byteLength": 72}],
    });
    let got = facts(Format::Glb, &glb(&doc, &bin));
    assert_eq!(
        got,
        json!({
            "points": 3, "vertices": 6, "faces": 2, "cameras": 2,
            "bounds": [[-1.0, 0.0, 0.0], [11.0, 2.0, 3.0]],
        })
    );
}

#[test]
fn a_mesh_glb_has_no_camera_count_and_a_truncated_one_no_bounds() {
    let tri = floats(&[0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
    let idx: Vec<u8> = [0u32, 1, 2].iter().flat_map(|i| i.to_le_bytes()).collect();
    let mut bin = tri.clone();
    bin.extend(&idx);
    let doc = json!({
        "asset": {"version": "2.0"},
        "nodes": [{"mesh": 0, "scale": [2.0, 2.0, 2.0]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": 1, "componentType": 5125, "count": 3, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 12},
        ],
    });
    let bytes = glb(&doc, &bin);
    assert_eq!(
        facts(Format::Glb, &bytes),
        json!({"vertices": 3, "faces": 1, "bounds": [[0.0, 0.0, 0.0], [4.0, 4.0, 0.0]]})
    );
    // Cut inside the positions: the counts stand, the box would be a guess.
    let cut = &bytes[..bytes.len() - 30];
    assert_eq!(facts(Format::Glb, cut), json!({"vertices": 3, "faces": 1}));
    // Not a GLB at all: nothing.
    assert_eq!(facts(Format::Glb, b"PK\x03\x04 a zip"), json!({}));
}

#[test]
fn obj_counts_polygons_as_triangles_and_a_file_without_faces_as_points() {
    let obj = "# a quad and a triangle\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 -2.5\nvt 0 0\nf 1/1 2/1 3/1 4/1\nf 1 2 3";
    assert_eq!(
        facts(Format::Obj, obj.as_bytes()),
        json!({"vertices": 4, "faces": 3, "bounds": [[0.0, 0.0, -2.5], [1.0, 1.0, 0.0]]})
    );
    assert_eq!(
        facts(Format::Obj, b"v 1 2 3\nv 4 5 6\n"),
        json!({"points": 2, "bounds": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]})
    );
    assert_eq!(facts(Format::Obj, b"v 1 two 3\n"), json!({}));
}

fn ply_header(format: &str, vertices: usize, faces: usize) -> String {
    let mut h = format!(
        "ply\nformat {format} 1.0\ncomment made here\nelement vertex {vertices}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\n"
    );
    if faces > 0 {
        h.push_str(&format!(
            "element face {faces}\nproperty list uchar int vertex_indices\n"
        ));
    }
    h.push_str("end_header\n");
    h
}

#[test]
fn ply_in_each_encoding_gives_the_same_facts() {
    let verts = [[0.5f32, -1.0, 2.0], [3.0, 4.0, -5.0], [0.0, 0.0, 0.0]];
    let want = json!({"vertices": 3, "faces": 1, "bounds": [[0.0, -1.0, -5.0], [3.0, 4.0, 2.0]]});
    // ascii
    let mut ascii = ply_header("ascii", 3, 1);
    for v in verts {
        ascii.push_str(&format!("{} {} {} 200\n", v[0], v[1], v[2]));
    }
    ascii.push_str("3 0 1 2\n");
    assert_eq!(facts(Format::Ply, ascii.as_bytes()), want);
    // binary, both byte orders
    for (name, big) in [("binary_little_endian", false), ("binary_big_endian", true)] {
        let mut b = ply_header(name, 3, 1).into_bytes();
        for v in verts {
            for c in v {
                b.extend(if big {
                    c.to_be_bytes()
                } else {
                    c.to_le_bytes()
                });
            }
            b.push(200);
        }
        b.push(3);
        for i in [0i32, 1, 2] {
            b.extend(if big {
                i.to_be_bytes()
            } else {
                i.to_le_bytes()
            });
        }
        assert_eq!(facts(Format::Ply, &b), want, "{name}");
    }
    // A point cloud: no faces.
    let mut pc = ply_header("ascii", 1, 0);
    pc.push_str("1 2 3 0\n");
    assert_eq!(
        facts(Format::Ply, pc.as_bytes()),
        json!({"points": 1, "bounds": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]})
    );
    // Fewer vertex records than the header promised: nothing.
    let mut short = ply_header("ascii", 2, 0);
    short.push_str("1 2 3 0\n");
    assert_eq!(facts(Format::Ply, short.as_bytes()), json!({}));
}

#[test]
fn the_format_is_told_by_content_type_or_extension() {
    assert_eq!(Format::of("model/gltf-binary", "x"), Some(Format::Glb));
    assert_eq!(
        Format::of("application/octet-stream", "scene.GLB"),
        Some(Format::Glb)
    );
    assert_eq!(Format::of("model/obj", "mesh"), Some(Format::Obj));
    assert_eq!(Format::of("text/plain", "mesh.obj"), Some(Format::Obj));
    assert_eq!(Format::of("application/ply", "cloud"), Some(Format::Ply));
    assert_eq!(Format::of("image/png", "result.png"), None);
    assert_eq!(Format::of("application/zip", "predictions.npz"), None);
}

#[test]
fn a_node_graph_that_multiplies_its_visits_is_not_walked() {
    // Each node names the next twice: 2^40 paths to the last one.
    let nodes: Vec<Value> = (0..40)
        .map(|i| json!({"children": [i + 1, i + 1]}))
        .chain([json!({"mesh": 0})])
        .collect();
    let doc = json!({
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 0}]}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1, "type": "VEC3"}],
        "bufferViews": [{"buffer": 0, "byteLength": 12}],
    });
    assert_eq!(
        facts(Format::Glb, &glb(&doc, &floats(&[1.0, 2.0, 3.0]))),
        json!({})
    );
}

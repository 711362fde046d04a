//! What a file's first bytes say it is, for the types pipelines take: an input whose bytes are not
//! the type it was declared with (a text file uploaded as `image/png`) fails when it lands,
//! before any Space or model sees it, instead of coming back as the Space's own error. Only the
//! formats' fixed signatures are read; a type without one here is taken as declared.

/// How many leading bytes `mismatch` reads.
pub const SNIFF_BYTES: usize = 16;

/// The type the bytes' signature names, when they have one this module knows.
pub fn looks_like(head: &[u8]) -> Option<&'static str> {
    Some(match head {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => "image/gif",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "video/mp4",
        [b'g', b'l', b'T', b'F', ..] => "model/gltf-binary",
        _ => return None,
    })
}

/// Why bytes starting with `head` are not of the declared `content_type`, when that type has a
/// signature here and the bytes do not carry it; `None` when they fit or it cannot be told.
pub fn mismatch(content_type: &str, head: &[u8]) -> Option<String> {
    let declared = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let known = [
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "video/mp4",
        "model/gltf-binary",
    ];
    if !known.contains(&declared.as_str()) {
        return None;
    }
    match looks_like(head) {
        Some(t) if t == declared => None,
        Some(t) => Some(format!("its bytes are {t}, not {declared}")),
        None if head.is_empty() => Some(format!("it is empty, not {declared}")),
        None => {
            let text = head
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
            Some(if text {
                format!("its bytes are text, not {declared}")
            } else {
                format!("its bytes do not start as {declared} does")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_decide_and_unknown_types_pass() {
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0];
        assert_eq!(mismatch("image/png", &png), None);
        assert_eq!(mismatch("IMAGE/PNG; charset=binary", &png), None);
        assert_eq!(mismatch("image/jpeg", &[0xff, 0xd8, 0xff, 0xe0]), None);
        assert_eq!(mismatch("image/webp", b"RIFF\x10\0\0\0WEBPVP8 "), None);
        assert_eq!(mismatch("video/mp4", b"\0\0\0\x18ftypmp42"), None);
        assert_eq!(
            mismatch("image/png", b"hello, world\n").as_deref(),
            Some("its bytes are text, not image/png")
        );
        assert_eq!(
            mismatch("image/jpeg", &png).as_deref(),
            Some("its bytes are image/png, not image/jpeg")
        );
        assert!(
            mismatch("image/png", &[0, 1, 2, 3])
                .unwrap()
                .contains("do not start")
        );
        assert_eq!(mismatch("application/octet-stream", b"anything"), None);
        assert_eq!(mismatch("image/tiff", b"II*\0"), None);
    }
}

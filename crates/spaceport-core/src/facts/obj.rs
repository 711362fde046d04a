//! Wavefront OBJ: `v x y z` lines are vertices (a file of vertices and no faces is a point
//! cloud), each `f` line a polygon of n corners counted as the n − 2 triangles it splits into.

use super::{Counted, Lines};

#[derive(Debug, Default)]
pub(crate) struct Obj {
    lines: Lines,
    counted: Counted,
    /// A `v` line without three numbers: not an OBJ.
    bad: bool,
}

impl Obj {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let (counted, bad) = (&mut self.counted, &mut self.bad);
        self.lines.feed(chunk, |line| line_of(line, counted, bad));
    }

    pub(crate) fn finish(mut self) -> Option<Counted> {
        let (counted, bad) = (&mut self.counted, &mut self.bad);
        self.lines.finish(|line| line_of(line, counted, bad));
        if self.lines.broken || self.bad {
            return None;
        }
        let mut c = self.counted;
        if c.faces == 0 {
            c.points = c.vertices;
            c.vertices = 0;
        }
        Some(c)
    }
}

fn line_of(line: &[u8], c: &mut Counted, bad: &mut bool) {
    let Ok(line) = std::str::from_utf8(line) else {
        return;
    };
    let mut words = line.split_ascii_whitespace();
    match words.next() {
        Some("v") => {
            let mut p = [0f64; 3];
            for v in &mut p {
                match words.next().and_then(|w| w.parse::<f64>().ok()) {
                    Some(x) => *v = x,
                    None => {
                        *bad = true;
                        return;
                    }
                }
            }
            c.vertices += 1;
            c.bounds.add(p);
        }
        Some("f") => {
            let corners = words.count() as u64;
            c.faces += corners.saturating_sub(2);
        }
        _ => {}
    }
}

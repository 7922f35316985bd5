//! The plain layout's file format: a kubectl List of a group's objects, one canonical JSON
//! object per line, sorted by name. The exporter renders files with it; a snapshot renders
//! the files of sealed groups with it before encrypting them, since nothing downstream can
//! read their objects. It must stay byte for byte stable: unchanged files are server-side
//! copies of earlier ones.

use bytes::Bytes;

pub const LIST_HEAD: &[u8] = b"{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[";
pub const LIST_TAIL: &[u8] = b"\n]}\n";

/// The size of a rendered List of `items` objects of `bytes` bytes in all.
pub fn rendered_size(items: usize, bytes: u64) -> u64 {
    let separators = (2 * items).saturating_sub(1) as u64;
    LIST_HEAD.len() as u64 + bytes + separators + LIST_TAIL.len() as u64
}

/// Renders a List file from its objects (canonical JSON each), one item per line so that
/// the file greps and diffs well and stays valid JSON.
pub fn render(objects: &[Bytes]) -> Bytes {
    let len: usize = objects.iter().map(|o| o.len() + 2).sum();
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(LIST_HEAD);
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'\n');
        out.extend_from_slice(object);
    }
    out.extend_from_slice(LIST_TAIL);
    Bytes::from(out)
}

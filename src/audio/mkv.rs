//! Recovering truncated WebM/Matroska: a voice note cut off in transfer still holds the
//! audio that arrived, but its Segment claims more bytes than the file has, and its SeekHead
//! points at elements (Cues) past the end, so the demuxer refuses the whole file. When that
//! is so, [`patch_truncated`] marks the Segment's size unknown (as a live recording writes
//! it) and turns the SeekHead into a Void element of the same length; the demuxer then reads
//! the clusters that arrived, and decoding stops at the cut with a `truncated` warning.

const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const VOID: u8 = 0xEC;

/// An EBML variable-length integer at `d[i..]`: (value, length in bytes). The size marker
/// bit is removed; `None` when the bytes are not one.
fn vint(d: &[u8], i: usize) -> Option<(u64, usize)> {
    let first = *d.get(i)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || i + len > d.len() {
        return None;
    }
    let mut v = (first as u64) & (0xFF >> len);
    for b in &d[i + 1..i + len] {
        v = (v << 8) | *b as u64;
    }
    Some((v, len))
}

/// An element ID (marker bit kept) at `d[i..]`: (id, length).
fn element_id(d: &[u8], i: usize) -> Option<(u32, usize)> {
    let first = *d.get(i)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 || i + len > d.len() {
        return None;
    }
    Some((
        d[i..i + len].iter().fold(0u32, |a, b| (a << 8) | *b as u32),
        len,
    ))
}

/// Patch a truncated Matroska file in place so that what arrived can be demuxed; returns
/// whether it was truncated (and so patched).
pub fn patch_truncated(d: &mut [u8]) -> bool {
    // The EBML header, then the Segment.
    let Some((0x1A45_DFA3, hl)) = element_id(d, 0) else {
        return false;
    };
    let Some((hsize, hsl)) = vint(d, hl) else {
        return false;
    };
    let seg = hl + hsl + hsize as usize;
    let Some((SEGMENT, sl)) = element_id(d, seg) else {
        return false;
    };
    let Some((size, szl)) = vint(d, seg + sl) else {
        return false;
    };
    let body = seg + sl + szl;
    let unknown = size == (1u64 << (7 * szl)) - 1;
    if unknown || body as u64 + size <= d.len() as u64 {
        return false;
    }
    // Size unknown: all value bits set, in the same number of bytes.
    d[seg + sl] = 0xFF >> (szl - 1);
    for b in &mut d[seg + sl + 1..body] {
        *b = 0xFF;
    }
    // Level-1 elements until the first Cluster: void the SeekHead.
    let mut i = body;
    while let Some((id, il)) = element_id(d, i) {
        let Some((n, nl)) = vint(d, i + il) else {
            break;
        };
        let total = il + nl + n as usize;
        if id == 0x1F43_B675 || i + total > d.len() {
            break; // a Cluster, or cut inside this element
        }
        if id == SEEK_HEAD && total >= 9 {
            // Void: 1-byte ID and an 8-byte size covering the rest of the element.
            let rest = (total - 9) as u64;
            d[i] = VOID;
            d[i + 1..i + 9].copy_from_slice(&((1u64 << 56) | rest).to_be_bytes());
            d[i + 9..i + total].fill(0);
        }
        i += total;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints() {
        assert_eq!(vint(&[0x81], 0), Some((1, 1)));
        assert_eq!(vint(&[0x40, 0x02], 0), Some((2, 2)));
        assert_eq!(
            vint(&[0x01, 0, 0, 0, 0, 0, 0xb7, 0x7f], 0),
            Some((0xb77f, 8))
        );
        assert_eq!(vint(&[0x00], 0), None);
        assert_eq!(vint(&[0x40], 0), None);
    }

    #[test]
    fn only_truncated_files_are_patched() {
        let whole = include_bytes!("../../tests/fixtures/chrome_jfk.webm");
        let mut d = whole.to_vec();
        assert!(!patch_truncated(&mut d));
        assert_eq!(&d[..], &whole[..]);
        let mut cut = whole[..whole.len() / 2].to_vec();
        assert!(patch_truncated(&mut cut));
        assert!(!patch_truncated(&mut cut), "already patched: size unknown");
        assert!(!patch_truncated(&mut [0u8; 3]));
    }
}

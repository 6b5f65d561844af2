//! The two MP4 facts symphonia's reader leaves out, read straight from the boxes.
//!
//! * **Edit lists** (`elst`): AAC starts with 1024+ priming samples and Opus with its
//!   pre-skip; the edit list says where presentation starts and how long it lasts. Without it
//!   the decoded audio is shifted (371 samples at 16 kHz for AAC) and too long.
//! * **Cut-short downloads**: a faststart file (`moov` before `mdat`) that lost its tail has
//!   an `mdat` box claiming more bytes than exist, and symphonia then yields nothing. Shrinking
//!   the box to the bytes present lets the packets that did arrive decode.
//! * **A lost tail after the index**: a file with `moov` last whose trailing metadata
//!   (`udta`, `meta`) was cut off has a `moov` claiming more bytes than exist, and symphonia
//!   then finds no `moov` at all. Dropping the partial child and shrinking `moov` to its
//!   complete children keeps the whole recording.

/// Where presentation of the (first) audio track starts and how long it lasts, in that
/// track's media timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub media_timescale: u32,
    pub skip: u64,
    pub duration: Option<u64>,
}

struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
}

/// One box: type, payload start and end (end clamped to the data present), and whether it
/// claimed to reach beyond the data.
struct Bx {
    kind: [u8; 4],
    header_at: usize,
    body: usize,
    end: usize,
    overruns: bool,
    large: bool,
}

impl Iterator for Boxes<'_> {
    type Item = Bx;
    fn next(&mut self) -> Option<Bx> {
        let d = self.data;
        let at = self.pos;
        if at + 8 > d.len() {
            return None;
        }
        let size32 = u32::from_be_bytes(d[at..at + 4].try_into().ok()?) as u64;
        let kind: [u8; 4] = d[at + 4..at + 8].try_into().ok()?;
        let (size, body, large) = match size32 {
            0 => ((d.len() - at) as u64, at + 8, false),
            1 => {
                if at + 16 > d.len() {
                    return None;
                }
                (
                    u64::from_be_bytes(d[at + 8..at + 16].try_into().ok()?),
                    at + 16,
                    true,
                )
            }
            s => (s, at + 8, false),
        };
        if size < (body - at) as u64 {
            return None; // malformed: smaller than its own header
        }
        let claimed_end = (at as u64).saturating_add(size);
        let overruns = claimed_end > d.len() as u64;
        let end = claimed_end.min(d.len() as u64) as usize;
        self.pos = end;
        Some(Bx {
            kind,
            header_at: at,
            body,
            end,
            overruns,
            large,
        })
    }
}

fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes { data, pos: 0 }
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data)
        .find(|b| &b.kind == kind)
        .map(|b| &data[b.body..b.end])
}

fn be_u32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` payload.
fn header_timescale(b: &[u8]) -> Option<u32> {
    match *b.first()? {
        1 => be_u32(b, 20),
        _ => be_u32(b, 12),
    }
}

/// The edit of the first sound track, if the file has an edit list for it.
pub fn audio_edit(data: &[u8]) -> Option<Edit> {
    let moov = child(data, b"moov")?;
    let movie_ts = header_timescale(child(moov, b"mvhd")?)?;
    for trak in boxes(moov).filter(|b| &b.kind == b"trak") {
        let trak = &moov[trak.body..trak.end];
        let Some(mdia) = child(trak, b"mdia") else {
            continue;
        };
        let is_sound = child(mdia, b"hdlr").and_then(|h| h.get(8..12)) == Some(b"soun");
        if !is_sound {
            continue;
        }
        let media_ts = header_timescale(child(mdia, b"mdhd")?)?;
        let elst = child(child(trak, b"edts")?, b"elst")?;
        let version = *elst.first()?;
        let count = be_u32(elst, 4)? as usize;
        let entry = if version == 1 { 20 } else { 12 };
        for i in 0..count.min(64) {
            let at = 8 + i * entry;
            let (seg, media_time) = if version == 1 {
                (be_u64(elst, at)?, be_u64(elst, at + 8)? as i64)
            } else {
                (
                    be_u32(elst, at)? as u64,
                    be_u32(elst, at + 4)? as i32 as i64,
                )
            };
            if media_time < 0 {
                continue; // an empty edit (leading silence): not a trim
            }
            let duration = (seg > 0 && movie_ts > 0)
                .then(|| (seg as u128 * media_ts as u128 / movie_ts as u128) as u64);
            return Some(Edit {
                media_timescale: media_ts,
                skip: media_time as u64,
                duration,
            });
        }
        return None;
    }
    None
}

/// If the file was cut short inside its `mdat` (and the index came first), shrink the box
/// header to the bytes present. Returns `true` when it patched something.
pub fn patch_truncated_mdat(data: &mut [u8]) -> bool {
    let mut seen_moov = false;
    let mut patch = None;
    for b in boxes(data) {
        if &b.kind == b"moov" {
            seen_moov = !b.overruns;
        }
        if &b.kind == b"mdat" && b.overruns && seen_moov {
            patch = Some(b);
            break;
        }
    }
    let Some(b) = patch else { return false };
    set_size(data, b.header_at, b.large, (b.end - b.header_at) as u64)
}

/// Write `size` into the size field of the box whose header starts at `header_at`.
fn set_size(data: &mut [u8], header_at: usize, large: bool, size: u64) -> bool {
    if large {
        data[header_at + 8..header_at + 16].copy_from_slice(&size.to_be_bytes());
    } else if let Ok(s) = u32::try_from(size) {
        data[header_at..header_at + 4].copy_from_slice(&s.to_be_bytes());
    } else {
        return false;
    }
    true
}

/// If the file ends inside a `moov` that follows its `mdat` (the index written last) and
/// the part of `moov` that arrived still holds a complete `trak`, drop the partial trailing
/// child and shrink `moov` to the children that are whole. Returns `true` when it patched.
pub fn patch_truncated_moov(data: &mut Vec<u8>) -> bool {
    let mut seen_mdat = false;
    let mut patch = None;
    for b in boxes(data) {
        if &b.kind == b"mdat" {
            seen_mdat = !b.overruns;
        }
        if &b.kind == b"moov" && b.overruns && seen_mdat {
            patch = Some(b);
            break;
        }
    }
    let Some(moov) = patch else { return false };
    let body = &data[moov.body..moov.end];
    let mut whole = 0;
    let mut has_trak = false;
    for c in boxes(body) {
        if c.overruns {
            break;
        }
        has_trak |= &c.kind == b"trak";
        whole = c.end;
    }
    if !has_trak {
        return false;
    }
    let end = moov.body + whole;
    if !set_size(
        data,
        moov.header_at,
        moov.large,
        (end - moov.header_at) as u64,
    ) {
        return false;
    }
    data.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn full_header(ts: u32) -> Vec<u8> {
        let mut h = vec![0u8; 12];
        h.extend_from_slice(&ts.to_be_bytes());
        h.extend_from_slice(&[0; 4]);
        h
    }

    #[test]
    fn reads_the_sound_track_edit() {
        let mut elst = vec![0, 0, 0, 0, 0, 0, 0, 1];
        elst.extend_from_slice(&2000u32.to_be_bytes()); // 2 s at movie ts 1000
        elst.extend_from_slice(&1024u32.to_be_bytes());
        elst.extend_from_slice(&[0, 1, 0, 0]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(b"soun");
        let mdia = [bx(b"mdhd", &full_header(44100)), bx(b"hdlr", &hdlr)].concat();
        let trak = [bx(b"edts", &bx(b"elst", &elst)), bx(b"mdia", &mdia)].concat();
        let moov = [bx(b"mvhd", &full_header(1000)), bx(b"trak", &trak)].concat();
        let file = [bx(b"ftyp", b"M4A \0\0\0\0"), bx(b"moov", &moov)].concat();
        let e = audio_edit(&file).unwrap();
        assert_eq!(
            e,
            Edit {
                media_timescale: 44100,
                skip: 1024,
                duration: Some(88200)
            }
        );
    }

    #[test]
    fn shrinks_an_overrunning_mdat_after_moov() {
        let mut file = [
            bx(b"ftyp", b"M4A \0\0\0\0"),
            bx(b"moov", b"xxxx"),
            bx(b"mdat", &[7u8; 100]),
        ]
        .concat();
        file.truncate(file.len() - 40);
        assert!(patch_truncated_mdat(&mut file));
        let at = file.len() - 68;
        assert_eq!(u32::from_be_bytes(file[at..at + 4].try_into().unwrap()), 68);
        assert!(
            !patch_truncated_mdat(&mut file),
            "a second pass finds nothing to patch"
        );
    }

    #[test]
    fn drops_a_cut_trailing_child_of_a_moov_written_last() {
        let trak = bx(b"trak", &bx(b"mdia", b"yyyy"));
        let moov = [bx(b"mvhd", b"xxxx"), trak.clone(), bx(b"udta", &[1u8; 40])].concat();
        let whole = [
            bx(b"ftyp", b"M4A \0\0\0\0"),
            bx(b"mdat", &[7u8; 50]),
            bx(b"moov", &moov),
        ]
        .concat();
        let mut file = whole[..whole.len() - 20].to_vec();
        assert!(patch_truncated_moov(&mut file));
        let moov_at = 16 + 58;
        let size = 8 + 12 + trak.len();
        assert_eq!(file.len(), moov_at + size, "the partial udta is gone");
        assert_eq!(
            u32::from_be_bytes(file[moov_at..moov_at + 4].try_into().unwrap()) as usize,
            size
        );
        assert!(!patch_truncated_moov(&mut file), "nothing left to patch");

        let mut no_trak = whole[..16 + 58 + 8 + 12 + 10].to_vec();
        assert!(
            !patch_truncated_moov(&mut no_trak),
            "a moov cut inside its trak has no index to keep"
        );
    }
}

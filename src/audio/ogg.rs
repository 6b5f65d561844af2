//! Repairing the header of an Ogg Opus file. Opus in Ogg starts with two header packets:
//! `OpusHead` (page 0; what the decoder needs) and `OpusTags` (page 1 onwards; only text
//! metadata). The demuxer refuses the whole file when a header page fails its checksum or
//! is missing, although every audio page may be intact. [`repair_opus_headers`] replaces a
//! damaged or missing `OpusTags` with an empty one, and restores the checksum of an
//! `OpusHead` page whose fields still read as one; audio pages are never touched (the
//! demuxer already skips a damaged audio page and goes on).

use symphonia::core::checksum::Crc32;
use symphonia::core::io::Monitor;

/// How far past the head page a replacement for damaged tags looks for intact audio: a
/// voice note's tags are a few dozen bytes, and a bound keeps a hostile file from making
/// the search quadratic.
const SEARCH_WINDOW: usize = 256 * 1024;

/// The Ogg CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new(0);
    c.process_buf_bytes(bytes);
    c.crc()
}

/// One page as it stands in the bytes: where its body starts and where the page ends.
struct Page {
    serial: u32,
    granule: u64,
    body: usize,
    end: usize,
    crc_ok: bool,
}

/// The page starting at `at`, if a page header is there (capture pattern, version 0) and
/// the page fits in the data. The checksum is checked, not required.
fn page_at(d: &[u8], at: usize) -> Option<Page> {
    let h = d.get(at..at + 27)?;
    if &h[..4] != b"OggS" || h[4] != 0 {
        return None;
    }
    let nseg = h[26] as usize;
    let lacing = d.get(at + 27..at + 27 + nseg)?;
    let body = at + 27 + nseg;
    let end = body + lacing.iter().map(|&l| l as usize).sum::<usize>();
    let page = d.get(at..end)?;
    let stored = u32::from_le_bytes(h[22..26].try_into().ok()?);
    let mut c = Crc32::new(0);
    c.process_buf_bytes(&page[..22]);
    c.process_buf_bytes(&[0; 4]);
    c.process_buf_bytes(&page[26..]);
    Some(Page {
        serial: u32::from_le_bytes(h[14..18].try_into().ok()?),
        granule: u64::from_le_bytes(h[6..14].try_into().ok()?),
        body,
        end,
        crc_ok: c.crc() == stored,
    })
}

/// A page holding one packet, with its checksum.
fn build_page(serial: u32, sequence: u32, packet: &[u8]) -> Vec<u8> {
    let mut p = b"OggS\0\0".to_vec();
    p.extend_from_slice(&0u64.to_le_bytes()); // granule: header pages are at 0
    p.extend_from_slice(&serial.to_le_bytes());
    p.extend_from_slice(&sequence.to_le_bytes());
    p.extend_from_slice(&[0; 4]); // checksum, filled below
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    p.push(lacing.len() as u8);
    p.extend_from_slice(&lacing);
    p.extend_from_slice(packet);
    let crc = crc32(&p);
    p[22..26].copy_from_slice(&crc.to_le_bytes());
    p
}

/// An `OpusTags` packet with no vendor string and no comments.
const EMPTY_TAGS: &[u8] = b"OpusTags\0\0\0\0\0\0\0\0";

/// Repair the header pages of an Ogg Opus file in place; returns `true` when it changed
/// something. Files that are not Opus (Vorbis needs its comment page's neighbour, the
/// setup header) and files whose `OpusHead` is unreadable are left alone.
pub fn repair_opus_headers(data: &mut Vec<u8>) -> bool {
    let Some(head) = page_at(data, 0) else {
        return false;
    };
    let packet = &data[head.body..head.end];
    // OpusHead: magic, version 1 (major 0), then channels; 19 bytes at least.
    if packet.len() < 19 || &packet[..8] != b"OpusHead" || packet[8] >> 4 != 0 {
        return false;
    }
    let mut changed = false;
    if !head.crc_ok {
        let mut page = data[..head.end].to_vec();
        page[22..26].fill(0);
        let crc = crc32(&page);
        data[22..26].copy_from_slice(&crc.to_le_bytes());
        changed = true;
    }
    // The tags pages run from the end of page 0 to the first intact audio page of the same
    // stream (a page with a granule position past 0). If they are all intact and start with
    // OpusTags, nothing is wrong.
    let from = head.end;
    let mut tags_ok = true;
    let mut at = from;
    let mut first = true;
    let audio_at = loop {
        match page_at(data, at) {
            Some(p) if p.crc_ok && p.serial == head.serial => {
                if p.granule != 0 {
                    if first {
                        tags_ok = false; // no OpusTags page at all
                    }
                    break Some(at);
                }
                if first && !data[p.body..p.end].starts_with(b"OpusTags") {
                    tags_ok = false;
                }
                at = p.end;
            }
            _ => {
                tags_ok = false;
                // Damaged here: find the next intact page of this stream past the header.
                let stop = data.len().min(from + SEARCH_WINDOW);
                break (at + 1..stop).find(|&i| {
                    page_at(data, i)
                        .is_some_and(|p| p.crc_ok && p.serial == head.serial && p.granule != 0)
                });
            }
        }
        first = false;
    };
    if tags_ok {
        return changed;
    }
    let Some(audio_at) = audio_at else {
        return changed; // no intact audio after the header: nothing to recover
    };
    let tags = build_page(head.serial, 1, EMPTY_TAGS);
    data.splice(from..audio_at, tags);
    true
}

/// How many candidate page starts a search for the next intact page may check in one file
/// (each check hashes up to one page, 64 KiB): a hostile file full of false starts stops
/// being counted there, and is still decoded.
const RESYNC_CHECKS: usize = 4096;

/// How many damaged stretches the stream has between intact pages: a page whose checksum
/// fails, or bytes that are no page at all, followed by an intact page. The demuxer skips
/// them and decodes on, so the samples are short by what they held; this is how the caller
/// finds out. A cut-off end (no intact page after the damage) is not counted: that is a
/// truncation, told apart by the decoder.
pub fn damaged_stretches(d: &[u8]) -> usize {
    let mut checks = 0;
    let mut next_intact = |from: usize| -> Option<usize> {
        let mut i = from;
        while checks < RESYNC_CHECKS {
            let j = i + d.get(i..)?.windows(4).position(|w| w == b"OggS")?;
            checks += 1;
            if page_at(d, j).is_some_and(|p| p.crc_ok) {
                return Some(j);
            }
            i = j + 1;
        }
        None
    };
    let (mut at, mut damaged) = (0, 0);
    while at < d.len() {
        match page_at(d, at) {
            Some(p) if p.crc_ok => at = p.end,
            _ => match next_intact(at + 1) {
                Some(next) => {
                    damaged += 1;
                    at = next;
                }
                None => break,
            },
        }
    }
    damaged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut head = b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec();
        head.truncate(19);
        let mut d = build_page(7, 0, &head);
        d.extend(build_page(7, 1, b"OpusTags\x03\0\0\0abc\0\0\0\0"));
        let mut audio = build_page(7, 2, &[0xfc; 30]);
        audio[6..14].copy_from_slice(&1272u64.to_le_bytes());
        audio[22..26].fill(0);
        let crc = crc32(&audio);
        audio[22..26].copy_from_slice(&crc.to_le_bytes());
        d.extend(audio);
        d
    }

    #[test]
    fn checksum_matches_a_real_page() {
        let d = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/telegram_ru.oga"
        ))
        .unwrap();
        let mut at = 0;
        for _ in 0..4 {
            let p = page_at(&d, at).unwrap();
            assert!(p.crc_ok);
            at = p.end;
        }
    }

    #[test]
    fn counts_damaged_stretches_between_intact_pages() {
        let d = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/telegram_ru.oga"
        ))
        .unwrap();
        assert_eq!(damaged_stretches(&d), 0);
        let third = page_at(&d, page_at(&d, 0).unwrap().end).unwrap().end;
        let fourth = page_at(&d, third).unwrap().end;
        let mut one = d.clone();
        one[third + 40] ^= 1;
        assert_eq!(damaged_stretches(&one), 1, "a flipped bit in one page");
        let mut garbage = d.clone();
        garbage.splice(fourth..fourth, [0x55; 300]);
        assert_eq!(damaged_stretches(&garbage), 1, "bytes that are no page");
        assert_eq!(
            damaged_stretches(&one[..one.len() - 10]),
            1,
            "a cut-off end is not damage"
        );
        let hostile = b"OggS\0".repeat(100_000);
        assert_eq!(damaged_stretches(&hostile), 0, "no intact page at all");
    }

    #[test]
    fn replaces_damaged_or_missing_tags_only() {
        let good = stream();
        let mut d = good.clone();
        assert!(!repair_opus_headers(&mut d), "an intact file is left alone");
        assert_eq!(d, good);

        let head_end = page_at(&good, 0).unwrap().end;
        let tags_end = page_at(&good, head_end).unwrap().end;
        let expect = [
            &good[..head_end],
            &build_page(7, 1, EMPTY_TAGS)[..],
            &good[tags_end..],
        ]
        .concat();
        for damage in [head_end + 30, head_end + 4, head_end] {
            let mut d = good.clone();
            d[damage] ^= 0xff;
            assert!(repair_opus_headers(&mut d));
            assert_eq!(d, expect, "damage at {damage}");
        }
        let mut missing = [&good[..head_end], &good[tags_end..]].concat();
        assert!(repair_opus_headers(&mut missing));
        assert_eq!(missing, expect);

        let mut head_crc = good.clone();
        head_crc[22] ^= 1;
        assert!(repair_opus_headers(&mut head_crc));
        assert_eq!(head_crc, good, "the head's checksum is restored");
    }
}

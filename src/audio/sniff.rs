//! Content sniffing: what a byte string is, judged by its first bytes and never by a file
//! name or a MIME type.
//!
//! Symphonia's probe does the real container detection; this module answers the questions it
//! cannot: "is this audio at all, and if not, what does it look like?" (a CDN error page saved
//! as `.ogg` is the classic case), and "is it a container we know but a codec we do not?"
//! (AMR voice notes from old phones).

/// What the first bytes of an input say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// A container symphonia can open (or may: let the probe decide).
    Audio(&'static str),
    /// Audio in a codec we do not decode, named.
    UnsupportedCodec(&'static str),
    /// Not audio; the description says what it looks like, when we can tell.
    NotAudio(Option<&'static str>),
}

/// Classify the start of a file.
pub fn sniff(data: &[u8]) -> Sniffed {
    let head = &data[..data.len().min(64)];
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"OggS") {
        return Sniffed::Audio("ogg");
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Sniffed::Audio("matroska");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Sniffed::Audio("mp4");
    }
    if head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"free" | b"wide" | b"skip") {
        return Sniffed::Audio("mp4");
    }
    if starts(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WAVE" {
        return Sniffed::Audio("wav");
    }
    if starts(b"RF64") || starts(b"fLaC") {
        return Sniffed::Audio(if starts(b"fLaC") { "flac" } else { "wav" });
    }
    if starts(b"FORM") && head.len() >= 12 && matches!(&head[8..12], b"AIFF" | b"AIFC") {
        return Sniffed::Audio("aiff");
    }
    if starts(b"ID3") {
        return Sniffed::Audio("mp3");
    }
    if starts(b"#!AMR-WB") {
        return Sniffed::UnsupportedCodec("AMR-WB");
    }
    if starts(b"#!AMR") {
        return Sniffed::UnsupportedCodec("AMR-NB");
    }
    if starts(b"caff") {
        return Sniffed::UnsupportedCodec("CAF (Core Audio Format)");
    }
    if starts(&[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        return Sniffed::UnsupportedCodec("WMA/ASF");
    }
    if head.len() >= 2 && head[0] == 0xFF && (head[1] & 0xE0) == 0xE0 {
        // MPEG audio frame sync or AAC ADTS sync.
        return Sniffed::Audio(if head[1] & 0x06 == 0 { "adts" } else { "mp3" });
    }
    if let Some(kind) = not_audio_kind(data) {
        return Sniffed::NotAudio(Some(kind));
    }
    // Unknown: let symphonia's probe look further (it scans for sync words).
    Sniffed::Audio("unknown")
}

/// A human description of common non-audio payloads.
pub fn not_audio_kind(data: &[u8]) -> Option<&'static str> {
    let head = &data[..data.len().min(512)];
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"%PDF") {
        return Some("a PDF document");
    }
    if starts(&[0x89, b'P', b'N', b'G']) {
        return Some("a PNG image");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("a JPEG image");
    }
    if starts(b"GIF8") {
        return Some("a GIF image");
    }
    if starts(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WEBP" {
        return Some("a WebP image");
    }
    if starts(b"PK\x03\x04") {
        return Some("a ZIP archive");
    }
    if starts(&[0x1F, 0x8B]) {
        return Some("gzip-compressed data");
    }
    let text = String::from_utf8_lossy(head);
    let t = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if t.starts_with("<!doctype html")
        || t.starts_with("<html")
        || t.contains("<head")
        || t.contains("<body")
    {
        return Some("an HTML page");
    }
    if t.starts_with("<?xml") || t.starts_with('<') && t.contains("</") {
        return Some("an XML document");
    }
    if (t.starts_with('{') || t.starts_with('[')) && looks_textual(head) {
        return Some("a JSON document");
    }
    if !head.is_empty() && looks_textual(head) {
        return Some("a text file");
    }
    None
}

fn looks_textual(data: &[u8]) -> bool {
    let Ok(s) =
        std::str::from_utf8(data).or_else(|e| std::str::from_utf8(&data[..e.valid_up_to()]))
    else {
        return false;
    };
    if s.len() < data.len().saturating_sub(4) {
        return false; // invalid UTF-8 well before the (possibly cut) end
    }
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_containers_and_non_audio() {
        assert_eq!(sniff(b"OggS\0\x02rest"), Sniffed::Audio("ogg"));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0"), Sniffed::Audio("mp4"));
        assert_eq!(sniff(b"#!AMR\n\x3c"), Sniffed::UnsupportedCodec("AMR-NB"));
        assert_eq!(
            sniff(b"<!DOCTYPE html><html>"),
            Sniffed::NotAudio(Some("an HTML page"))
        );
        assert_eq!(
            sniff(b"  {\"error\": \"not found\"}"),
            Sniffed::NotAudio(Some("a JSON document"))
        );
        assert_eq!(
            sniff(b"%PDF-1.7"),
            Sniffed::NotAudio(Some("a PDF document"))
        );
        assert_eq!(
            sniff(&[0x00, 0x9c, 0x13, 0xf1, 0x88]),
            Sniffed::Audio("unknown")
        );
    }
}

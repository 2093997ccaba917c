//! Small encodings the AWS fake needs and the crate has no dependency for:
//! percent-encoding by RFC 3986's unreserved set, base64 (checksum headers),
//! reflected CRCs (S3's `x-amz-checksum-*`, DynamoDB's `x-amz-crc32`), UTC
//! dates in the three shapes AWS uses, and XML text escaping. Written here,
//! not borrowed from `kinds/`, so the fake shares no code with any signer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`, the bytes SigV4 never encodes.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `%XX` (uppercase hex) for every byte `keep` refuses.
pub fn encode(bytes: &[u8], keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes once. `+` stays a plus (a path or a SigV4 query is not a
/// form); a `%` not followed by two hex digits makes the whole input invalid.
pub fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Standard base64 with padding (RFC 4648 §4), as S3 and STS print digests.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(char::from(ABC[(v >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A reflected CRC of `width` bits (init and final xor all ones), table-driven.
fn crc_reflected(poly: u64, width: u32, data: &[u8]) -> u64 {
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut table = [0u64; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u64;
        for _ in 0..8 {
            c = if c & 1 == 1 { c >> 1 ^ poly } else { c >> 1 };
        }
        *slot = c;
    }
    let mut crc = mask;
    for &b in data {
        crc = table[((crc ^ u64::from(b)) & 0xff) as usize] ^ crc >> 8;
    }
    crc ^ mask
}

/// CRC-32 (IEEE 802.3, zlib's).
pub fn crc32(data: &[u8]) -> u32 {
    crc_reflected(0xEDB8_8320, 32, data) as u32
}

/// CRC-32C (Castagnoli).
pub fn crc32c(data: &[u8]) -> u32 {
    crc_reflected(0x82F6_3B78, 32, data) as u32
}

/// CRC-64/NVME, S3's default full-object checksum.
pub fn crc64nvme(data: &[u8]) -> u64 {
    crc_reflected(0x9A6C_9329_AC4B_C9B5, 64, data)
}

/// Text for an XML element or attribute.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// (year, month, day, hour, minute, second, millisecond) in UTC; times before
/// 1970 are clamped to the epoch (the fake never meets them).
fn fields(t: SystemTime) -> (i64, i64, i64, i64, i64, i64, u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (
        y,
        m,
        d,
        s / 3600,
        s % 3600 / 60,
        s % 60,
        since.subsec_millis(),
    )
}

/// `20150830T123600Z`, SigV4's `x-amz-date`.
pub fn amz_date(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = fields(t);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// `2015-08-30T12:36:00Z`, STS's `Expiration`.
pub fn iso8601(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = fields(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// `2015-08-30T12:36:00.000Z`, S3's `LastModified` in listings.
pub fn iso8601_ms(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = fields(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

fn number(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn from_fields(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<SystemTime> {
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let last = if m == 2 && leap {
        29
    } else {
        *month_days.get(usize::try_from(m - 1).ok()?)?
    };
    if !(1970..=9999).contains(&y) || !(1..=last).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Parses exactly `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    from_fields(
        number(&b[0..4])?,
        number(&b[4..6])?,
        number(&b[6..8])?,
        number(&b[9..11])?,
        number(&b[11..13])?,
        number(&b[13..15])?,
    )
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (the suite's `context.json`).
#[cfg(test)]
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if b.len() != 20 || seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    from_fields(
        number(&b[0..4])?,
        number(&b[5..7])?,
        number(&b[8..10])?,
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_their_published_check_values() {
        // The "check" of each CRC's catalogue entry: the CRC of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc64nvme(b"123456789"), 0xAE8B_1486_0A79_9888);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let v = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in v {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn dates_round_trip_and_reject_nonsense() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(t, parse_iso8601("2015-08-30T12:36:00Z").unwrap());
        assert_eq!(amz_date(t), "20150830T123600Z");
        assert_eq!(iso8601(t), "2015-08-30T12:36:00Z");
        assert_eq!(iso8601_ms(t), "2015-08-30T12:36:00.000Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        let leap = parse_amz_date("20240229T000000Z").unwrap();
        assert_eq!(amz_date(leap), "20240229T000000Z");
        for bad in [
            "20150830T123600",
            "20150230T123600Z",
            "20230229T000000Z",
            "2015083OT123600Z",
            "20151330T123600Z",
            "20150830T243600Z",
            "+0150830T123600Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn percent_decoding_is_strict_and_keeps_plus() {
        assert_eq!(decode(b"a+b%20c%2B").unwrap(), b"a+b c+");
        assert!(decode(b"%zz").is_none());
        assert!(decode(b"%2").is_none());
        assert_eq!(encode("ü ~/".as_bytes(), is_unreserved), "%C3%BC%20~%2F");
    }
}

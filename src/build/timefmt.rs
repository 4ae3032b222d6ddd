//! RFC 3339 timestamps from Unix seconds, for config `created` and history times
//! (no date library needed for one conversion; algorithm: Howard Hinnant's
//! civil_from_days, public domain); and elapsed times for progress lines.

use std::time::Duration;

/// `0.31 s`, `12.3 s`, `2 min 05 s`: two figures that matter, whatever the scale (a
/// phase of tens of milliseconds and a build of minutes both read at a glance).
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 9.995 {
        format!("{secs:.2} s")
    } else if secs < 59.95 {
        format!("{secs:.1} s")
    } else {
        let whole = d.as_secs() + u64::from(d.subsec_millis() >= 500);
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// `1700000000` → `2023-11-14T22:13:20Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to Unix seconds (fractions are
/// dropped): how `verify` recovers a published image's SOURCE_DATE_EPOCH from its
/// config's `created`.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::{elapsed, parse_rfc3339, rfc3339};
    use std::time::Duration;

    #[test]
    fn elapsed_times_keep_two_or_three_figures() {
        let ms = Duration::from_millis;
        assert_eq!(elapsed(ms(0)), "0.00 s");
        assert_eq!(elapsed(ms(312)), "0.31 s");
        assert_eq!(elapsed(ms(9_994)), "9.99 s");
        assert_eq!(elapsed(ms(9_996)), "10.0 s");
        assert_eq!(elapsed(ms(12_340)), "12.3 s");
        assert_eq!(elapsed(ms(59_960)), "1 min 00 s");
        assert_eq!(elapsed(ms(125_400)), "2 min 05 s");
        assert_eq!(elapsed(ms(3_725_600)), "62 min 06 s");
    }

    #[test]
    fn parsing_inverts_formatting() {
        for t in [0, 1_700_000_000, 951_782_400, 4_102_444_799, -1] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20"), None);
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}

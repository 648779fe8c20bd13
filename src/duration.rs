//! Go's duration syntax (`500ms`, `2s`, `1m30s`, `1h`), because the Go original's
//! users wrote their flags and environment in it and we keep their configs.

use std::fmt;
use std::time::Duration;

/// The longest duration accepted.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// `12.3ms`: run times are mostly under a second, where Go's format is coarse.
pub struct Millis(pub Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}ms", self.0.as_secs_f64() * 1000.0)
    }
}

/// Parses a Go duration: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`). A bare `0` is
/// allowed, as in Go. Negative durations make no sense here and are refused.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration (write it like 500ms, 30s or 1m30s)".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {input:?}"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(format!(
                "invalid duration {input:?}: expected a number (write it like 500ms, 30s or 1m30s)"
            ));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(format!("invalid duration {input:?}: missing unit (use ms, s, m or h)")),
            other => {
                return Err(format!("invalid duration {input:?}: unknown unit {other:?} (use ms, s, m or h)"))
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if fraction.contains('.') {
            return Err(format!("invalid duration {input:?}"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| format!("invalid duration {input:?}: number too large"))?
        };
        let mut nanos =
            whole.checked_mul(unit_nanos).ok_or_else(|| format!("invalid duration {input:?}: too large"))?;
        // Fractions are scaled digit by digit so that `1.5h` is exact.
        let mut scale = unit_nanos;
        for digit in fraction.chars() {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos =
            total_nanos.checked_add(nanos).ok_or_else(|| format!("invalid duration {input:?}: too large"))?;
        rest = after;
    }
    // Nothing here needs more than a year, and a bound keeps every
    // `Instant + duration` and `duration * n` in the daemon far from overflow.
    if total_nanos > MAX.as_nanos() {
        return Err(format!("invalid duration {input:?}: longer than a year (8760h)"));
    }
    let secs = (total_nanos / 1_000_000_000) as u64;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Formats a duration the way Go prints it (`2s`, `1m30s`, `500ms`), so that
/// messages such as `timed out after 2s` echo what the user configured.
pub struct Go(pub Duration);

impl fmt::Display for Go {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let nanos = d.as_nanos();
            return if nanos % 1_000_000 == 0 {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos % 1_000 == 0 {
                write!(f, "{}µs", nanos / 1_000)
            } else if nanos >= 1_000_000 {
                write!(f, "{}ms", trim(nanos as f64 / 1e6))
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
        let sub = d.subsec_nanos();
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        if sub == 0 {
            write!(f, "{s}s")
        } else {
            write!(f, "{}s", trim(s as f64 + f64::from(sub) / 1e9))
        }
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_users_write() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "",
            "5",
            "1x",
            "s",
            "-1s",
            "1..5s",
            "1m30",
            "ten seconds",
            "99999999999999999999h",
            "8761h",
            "3000000000000000h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(parse("5").unwrap_err().contains("missing unit"));
        assert!(parse("5d").unwrap_err().contains("unknown unit \"d\""));
    }

    #[test]
    fn prints_like_go() {
        let cases = [
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, text) in cases {
            assert_eq!(Go(d).to_string(), text);
        }
    }
}

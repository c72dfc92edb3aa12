//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`): exact parsing into billionths of
//! a unit, and the canonical form an API server stores (`1000m` → `1`, `1024Mi` → `1Gi`).

/// Billionths in one unit.
const NANO: i128 = 1_000_000_000;

/// A Kubernetes quantity (`500m`, `1.5Gi`, `1e3`, `-2k`) in billionths of a unit, or `None`
/// when it is not valid quantity syntax or out of range. Below a billionth it rounds away from
/// zero, as the API server's canonical form does.
pub fn parse(s: &str) -> Option<i128> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, fraction_digits, suffix) = parse_decimal(rest)?;
    let (exp10, exp2) = parse_suffix(suffix)?;
    let magnitude = mantissa.checked_mul(1u128.checked_shl(exp2)?)?;
    let nanos = scale_nanos(magnitude, exp10 - fraction_digits + 9)?;
    let nanos = i128::try_from(nanos).ok()?;
    Some(if negative { -nanos } else { nanos })
}

/// Digits with an optional decimal point: the digits as one integer, how many of them follow
/// the point, and the text after the number.
fn parse_decimal(s: &str) -> Option<(u128, i64, &str)> {
    let mut mantissa: u128 = 0;
    let mut digits = 0;
    let mut fraction_digits: i64 = 0;
    let mut seen_point = false;
    let mut end = s.len();
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa
                    .checked_mul(10)?
                    .checked_add(u128::from(b - b'0'))?;
                digits += 1;
                fraction_digits += i64::from(seen_point);
            }
            b'.' if !seen_point => seen_point = true,
            _ => {
                end = i;
                break;
            }
        }
    }
    (digits > 0).then_some((mantissa, fraction_digits, &s[end..]))
}

/// A quantity suffix as (power of ten, power of two).
fn parse_suffix(suffix: &str) -> Option<(i64, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => (parse_exponent(suffix)?, 0),
    })
}

/// `e3`, `E-2`, `e+6`: a decimal exponent.
fn parse_exponent(suffix: &str) -> Option<i64> {
    let digits = suffix.strip_prefix(['e', 'E'])?;
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || unsigned.len() > 6 || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `value` × 10^`exp`, rounding a fraction up.
fn scale_nanos(value: u128, exp: i64) -> Option<u128> {
    if exp >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(exp).ok()?)?;
        return value.checked_mul(factor);
    }
    match 10u128.checked_pow(u32::try_from(-exp).ok()?) {
        Some(divisor) => Some(value.div_ceil(divisor)),
        // Smaller than any billionth: rounds up to one, or is zero.
        None => Some(u128::from(value > 0)),
    }
}

/// The suffix family a quantity was written in; the canonical form keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, ...
    BinarySi,
    /// `n`, `u`, `m`, none, `k`, `M`, ...
    DecimalSi,
    /// `e3`, `E-2`
    DecimalExponent,
}

fn format_of(s: &str) -> Format {
    let body = s.trim_start_matches(['+', '-']);
    let suffix = body.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    if suffix.ends_with('i') {
        Format::BinarySi
    } else if suffix.starts_with(['e', 'E']) {
        Format::DecimalExponent
    } else {
        Format::DecimalSi
    }
}

/// The canonical form of quantity `s` (as the API server stores it: no precision lost, no
/// fractional digits, the largest suffix of the same family), or `None` if `s` is not one.
pub fn canonical(s: &str) -> Option<String> {
    Some(render(parse(s)?, format_of(s)))
}

/// `nanos` billionths in canonical form for `format`.
pub fn render(nanos: i128, format: Format) -> String {
    if nanos == 0 {
        return "0".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let v = nanos.unsigned_abs();
    let whole = v.is_multiple_of(NANO as u128);
    // Small or fractional binary quantities are shown in decimal (the server does the same).
    if format == Format::BinarySi && whole && v >= 1024 * NANO as u128 {
        let units = v / NANO as u128;
        const BINARY: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
        let k = (0..BINARY.len())
            .rev()
            .find(|&k| units.is_multiple_of(1u128 << (10 * k)))
            .unwrap_or(0);
        return format!("{sign}{}{}", units >> (10 * k), BINARY[k]);
    }
    // Powers of ten from 10^18 down to 10^-9, in steps of three.
    let e = (-3..=6)
        .rev()
        .map(|i| i * 3)
        .find(|&e| v.is_multiple_of(10u128.pow((e + 9) as u32)))
        .unwrap_or(-9);
    let mantissa = v / 10u128.pow((e + 9) as u32);
    let suffix = match format {
        Format::DecimalExponent if e == 0 => String::new(),
        Format::DecimalExponent => format!("e{e}"),
        _ => match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        }
        .to_string(),
    };
    format!("{sign}{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_the_api_servers() {
        for (written, stored) in [
            ("1000m", "1"),
            ("1", "1"),
            ("1.5", "1500m"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000000", "2M"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1Ki", "1Ki"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E-3", "1e-3"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-2k", "-2k"),
            ("100n", "100n"),
            ("0.1n", "1n"),
            ("+1.0", "1"),
        ] {
            assert_eq!(canonical(written).as_deref(), Some(stored), "{written}");
        }
        assert_eq!(canonical("1 Gi"), None);
        assert_eq!(canonical("abc"), None);
    }
}

//! Checks of values several sections take: DNS labels and names, Go durations, and the Secrets
//! the file names.

use serde_saphyr::Spanned;

use super::ConfigError;
use super::errors::Source;

/// A DNS label: 1–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub(super) fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid DNS label (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')"
        ))
    }
}

/// The milliseconds of a Go duration of whole units (`24h`, `1h30m`, `90s`, `500ms`); `None` when
/// `s` is not one.
fn go_duration_millis(s: &str) -> Option<u64> {
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u64 = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(scale)?)?;
        rest = next;
    }
    Some(total)
}

/// The whole seconds of a Go duration (`90s`, `2m`, `1h30m`).
pub(super) fn go_duration_seconds(s: &str) -> Option<u64> {
    go_duration_millis(s).map(|ms| ms / 1000)
}

/// Whether `s` is a positive Go duration of whole units (`24h`, `1h30m`, `90s`).
pub(super) fn is_go_duration(s: &str) -> bool {
    go_duration_millis(s).is_some_and(|ms| ms > 0)
}

/// A DNS name: dot-separated DNS labels, at most 253 characters.
pub(super) fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 || s.split('.').any(|l| check_dns_label(l).is_err()) {
        return Err(format!(
            "`{s}` is not a valid DNS name (lowercase labels separated by dots)"
        ));
    }
    Ok(())
}

/// A Secret the file names (`<at>.secretName`, and `<at>.namespace` unless it is `default_namespace`):
/// its name and namespace.
pub(super) fn secret(
    src: &Source<'_>,
    at: &str,
    name: &Spanned<String>,
    namespace: Option<&Spanned<String>>,
    default_namespace: &str,
) -> Result<(String, String), ConfigError> {
    let name = src.checked(name, &format!("{at}.secretName"), check_dns_name)?;
    let namespace = match namespace {
        Some(ns) => src.checked(ns, &format!("{at}.namespace"), check_dns_label)?,
        None => default_namespace.to_string(),
    };
    Ok((name, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_are_whole_units() {
        for ok in ["24h", "1h30m", "90s", "500ms"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "0s", "1d", "h", "1.5h", "-1h", "24"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
        assert_eq!(go_duration_seconds("1h30m"), Some(5400));
        assert_eq!(go_duration_seconds("1500ms"), Some(1));
    }
}

//! Reading a configuration file: its text (bounded in size, UTF-8) and its YAML, with the parser's
//! errors said for users and located in the file.

use std::path::Path;

use super::ConfigError;

/// The largest configuration file read: a platform of 5,000 applications written inline takes
/// about 1 MB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The text of the configuration file at `path`: refused when it is bigger than
/// [`MAX_FILE_BYTES`] or not UTF-8 (with where the first bad byte is).
pub(super) fn read_text(path: &Path) -> Result<String, ConfigError> {
    let error = |line: Option<u64>, column: Option<u64>, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        field: None,
        message,
    };
    let cannot = |e: std::io::Error| error(None, None, format!("cannot read the file: {e}"));
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_FILE_BYTES {
        return Err(error(
            None,
            None,
            format!(
                "the file is {} MB, more than a configuration can be ({} MB): is it the right file?",
                size / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count() as u64
            + 1;
        error(
            Some(line),
            Some(column),
            format!(
                "the file is not UTF-8 text (byte 0x{:02x}): save it as UTF-8",
                bytes[at]
            ),
        )
    })
}

/// YAML `text` read from `path` as a `T`, with a located error.
pub(super) fn from_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location();
        let message = first_line(&e.to_string());
        // A value of the wrong kind (an enum's unknown variant, a string for a number) names the
        // field it is at, as vz's own checks do; an unknown key names itself already.
        let field = loc
            .filter(|_| !message.starts_with("unknown field"))
            .and_then(|l| field_at(text, l.line()));
        ConfigError {
            file: path.to_path_buf(),
            line: loc.map(|l| l.line()),
            column: loc.map(|l| l.column()),
            field,
            message,
        }
    })
}

/// The dotted path of the block-style key on line `line` (1-based) of `text`, from the keys of
/// the less indented lines above it: `components.istio.upgrade`. `None` where the file does not
/// say it plainly (flow style, a list item, a multi-line value).
fn field_at(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start_matches(' ').len();
        let rest = &l[indent..];
        let (key, _) = rest.split_once(':')?;
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        plain.then(|| (indent, key.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(index)?)?;
    let mut path = vec![key];
    for l in lines[..index].iter().rev() {
        if indent == 0 {
            break;
        }
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this = l.len() - trimmed.len();
        if this >= indent {
            continue;
        }
        // A list item or anything but a plain key above: not a path vz can name.
        let (at, key) = key_of(l)?;
        indent = at;
        path.push(key);
    }
    (indent == 0).then(|| {
        path.reverse();
        path.join(".")
    })
}

/// serde-saphyr's messages may carry a source snippet after the first line; the location is already
/// reported separately.
pub(super) fn first_line(msg: &str) -> String {
    let mut line = msg.lines().next().unwrap_or(msg).trim();
    // Drop the "error: line N column M: " prefix and any " at line N column M" suffix: the location
    // is already reported in our own prefix.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some((_, rest)) = line.split_once(": ")
    {
        line = rest;
    }
    let line = match line.find(" at line ") {
        Some(idx) => &line[..idx],
        None => line,
    };
    if let Some(breach) = line.strip_prefix("budget breached: ") {
        return over_budget(breach);
    }
    // The parser's own advice ("set DuplicateKeyPolicy in Options") is for its callers, not users.
    match line
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split(", set DuplicateKeyPolicy").next())
    {
        Some(key) => format!("`{key}` is set twice in the same mapping: keep one"),
        None => line.to_string(),
    }
}

/// The parser's limits on a document (which keep an alias bomb from expanding), said for users:
/// `breach` is the parser's `Nodes { nodes: 250001 }`.
fn over_budget(breach: &str) -> String {
    let what = breach.split_whitespace().next().unwrap_or(breach);
    let count: String = breach.chars().filter(char::is_ascii_digit).collect();
    match what {
        "Nodes" | "Events" => format!(
            "the document is too big once its aliases (`*name`) are expanded: more than {} nodes; write applications as files under applicationsDir, and use fewer aliases",
            count
                .parse::<u64>()
                .map_or(count.clone(), |n| (n - 1).to_string())
        ),
        "Aliases" => format!("the document uses more than {count} aliases (`*name`)"),
        "Anchors" => format!("the document defines more than {count} anchors (`&name`)"),
        "Depth" => format!("the document is nested more than {count} levels deep"),
        _ => format!("the document is beyond what a configuration can be ({breach})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::parse_err;
    use crate::config::{Platform, load};

    /// `text` written to a file and loaded from it (as `vz` reads a configuration).
    fn load_text(bytes: &[u8]) -> Result<Platform, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vz.yaml");
        std::fs::write(&path, bytes).expect("write");
        load(&path)
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_its_field() {
        let e = load_text(
            b"environmentName: q\ncomponents:\n  # the mesh\n  istio:\n    enabled: true\n    upgrade: sideways\n",
        )
        .expect_err("an unknown variant");
        assert_eq!(e.field.as_deref(), Some("components.istio.upgrade"), "{e}");
        assert!(e.to_string().contains("sideways"), "{e}");
        // Where the file does not say the path plainly, no field is named.
        assert_eq!(field_at("a:\n  - b: 1\n    c: x\n", 3), None);
        assert_eq!(field_at("a: {b: x}\n", 1), Some("a".into()));
        assert_eq!(field_at("a:\n  b: |\n    text\n", 3), None);
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
        let e = load_text(b"environmentName: dev\ningress: {type: N\xffodePort}\n")
            .expect_err("latin-1");
        assert_eq!((e.line, e.column), (Some(2), Some(18)), "{e}");
        assert_eq!(
            e.message,
            "the file is not UTF-8 text (byte 0xff): save it as UTF-8"
        );
    }

    #[test]
    fn a_file_bigger_than_a_configuration_can_be_is_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vz.yaml");
        let f = std::fs::File::create(&path).expect("create");
        f.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let e = load(&path).expect_err("too big");
        assert!(e.message.starts_with("the file is 16 MB, more than"), "{e}");
    }

    #[test]
    fn an_alias_bomb_where_the_schema_expands_it_is_refused_not_expanded() {
        // 2,000 applications, each an alias of one with 2,000 rules, each an alias: 4 million
        // rules from 20 KB of text.
        let rules = vec!["*r"; 2000].join(", ");
        let apps = vec!["  - *a"; 2000].join("\n");
        let text = format!(
            "applications:\n  - &a\n    name: x\n    namespace: y\n    ports: [80]\n    rules: [&r {{destination: {{host: x, port: 80}}}}, {rules}]\n{apps}\n"
        );
        // Refused by the node budget (the message says so), not expanded: a timed assertion here
        // would only measure the machine.
        let e = load_text(text.as_bytes()).expect_err("a bomb");
        assert!(e.line.is_some(), "located: {e}");
        assert!(
            e.message.starts_with(
                "the document is too big once its aliases (`*name`) are expanded: more than 250000 nodes"
            ),
            "{e}"
        );
    }

    #[test]
    fn nesting_deeper_than_the_schema_is_refused_where_it_starts() {
        let depth = 5_000;
        let text = format!("components: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        let e = load_text(text.as_bytes()).expect_err("too deep");
        assert_eq!((e.line, e.column), (Some(1), Some(13)), "{e}");
        assert_eq!(e.message, "expected mapping start");
        assert_eq!(
            over_budget("Depth { depth: 513 }"),
            "the document is nested more than 513 levels deep"
        );
    }

    #[test]
    fn a_key_set_twice_is_refused_where_it_is_repeated() {
        let e =
            parse_err("environmentName: dev\ningress: {type: NodePort}\nenvironmentName: prod\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(
            e.message,
            "`environmentName` is set twice in the same mapping: keep one"
        );
    }
}

//! How a true or false is spelled in a flag (`--debug=T`) or a variable
//! (`KUBERNARY_DEBUG=1`, `KUBERNARY_S3_INSECURE=yes`): a leaf, so that the
//! command line and the checks' settings read them alike without depending
//! on each other.

/// The spellings Go's `strconv.ParseBool` accepts (what kingpin read for
/// the Go original, so its users have them in their manifests), in any
/// case, plus `yes`/`no`/`on`/`off`.
pub const TRUE: &[&str] = &["1", "t", "true", "yes", "on"];
pub const FALSE: &[&str] = &["0", "f", "false", "no", "off"];

pub fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    if TRUE.contains(&text.as_str()) {
        Some(true)
    } else if FALSE.contains(&text.as_str()) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_go_parse_bool_and_ours() {
        for text in ["1", "t", "T", "TRUE", "true", "True", "yes", "on", " ON "] {
            assert_eq!(parse_bool(text), Some(true), "{text:?}");
        }
        for text in ["0", "f", "F", "FALSE", "false", "False", "no", "off"] {
            assert_eq!(parse_bool(text), Some(false), "{text:?}");
        }
        for text in ["", "maybe", "2", "tru", "y"] {
            assert_eq!(parse_bool(text), None, "{text:?}");
        }
    }
}

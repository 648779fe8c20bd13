//! What the `s3` and `identity` checks need from AWS, in plain blocking
//! code: the credential chain, SigV4 signing and the few XML fields we read.

pub mod credentials;
pub mod errors;
pub mod sigv4;
pub mod time;

pub use credentials::{AwsCredentials, Source};

/// The text of the first `<tag>` element in `xml`, unescaped. AWS answers
/// are flat enough that this is all the parsing we need.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape(xml[start..end].trim()))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `403 AccessDenied: Access Denied` from an AWS error document, or the
/// status alone when the body is not one.
pub fn describe_error(status: u16, body: &str) -> String {
    match (xml_text(body, "Code"), xml_text(body, "Message")) {
        (Some(code), Some(message)) if !message.is_empty() => format!("{status} {code}: {message}"),
        (Some(code), _) => format!("{status} {code}"),
        _ => {
            let reason = reason_phrase(status);
            if reason.is_empty() {
                status.to_string()
            } else {
                format!("{status} {reason}")
            }
        }
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aws_error_documents() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(describe_error(404, body), "404 NoSuchKey: The specified key does not exist.");
        assert_eq!(describe_error(403, "<Error><Code>AccessDenied</Code></Error>"), "403 AccessDenied");
        assert_eq!(describe_error(502, "<html>bad gateway</html>"), "502 Bad Gateway");
        assert_eq!(xml_text("<A>x &amp; y</A>", "A").as_deref(), Some("x & y"));
    }
}

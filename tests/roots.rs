//! The binary carries one set of built-in trust anchors: the Mozilla roots
//! of webpki-roots, used by the one TLS step every check shares
//! (src/tls.rs). A second TLS stack (rust-s3's attohttpc used to bring one)
//! or a second root crate (ureq's webpki-root-certs) would bring its own
//! copy, some 200 KB of the binary and of what the page cache holds of it.

/// How many times `needle` occurs in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut found = 0;
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|b| *b == needle[0]) {
        let start = at + i;
        if haystack[start..].starts_with(needle) {
            found += 1;
        }
        at = start + 1;
    }
    found
}

#[test]
fn the_binary_holds_the_built_in_roots_once() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_kubernary")).expect("read the kubernary binary");
    let anchors = webpki_roots::TLS_SERVER_ROOTS;
    assert!(anchors.len() > 100, "{} roots", anchors.len());
    // A handful spread over the set: a root's public key is in its anchor
    // and in its full certificate alike, so a second copy of either kind
    // shows as a second occurrence.
    for anchor in anchors.iter().step_by(anchors.len() / 5) {
        let key = anchor.subject_public_key_info.as_ref();
        let copies = count(&binary, key);
        assert_eq!(
            copies, 1,
            "a root's public key is in the binary {copies} times: a second TLS stack or root set is linked in \
             (cargo tree -e normal -i webpki-roots; -i webpki-root-certs)"
        );
    }
}

#[test]
fn count_finds_overlapping_and_separate_occurrences() {
    assert_eq!(count(b"abcabcab", b"abc"), 2);
    assert_eq!(count(b"aaaa", b"aa"), 3);
    assert_eq!(count(b"xyz", b"abc"), 0);
}

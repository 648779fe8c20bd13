//! A check's settings: `KUBERNARY_<NAME>_<KEY>` variables, the Go original's
//! `CheckConfigFromEnv` pattern. Errors name the variable to fix.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use crate::boolean::parse_bool;
use crate::duration;

pub struct Settings<'a> {
    prefix: String,
    env: &'a HashMap<String, String>,
    /// Every key asked for, so tests can hold a kind's `KEYS` to the truth.
    read: RefCell<Vec<String>>,
}

impl<'a> Settings<'a> {
    pub fn new(check_name: &str, env: &'a HashMap<String, String>) -> Settings<'a> {
        let prefix = format!("KUBERNARY_{}_", check_name.to_ascii_uppercase().replace('-', "_"));
        Settings { prefix, env, read: RefCell::new(Vec::new()) }
    }

    /// The keys asked for so far, each once, in the order first asked.
    pub fn keys_read(&self) -> Vec<String> {
        self.read.borrow().clone()
    }

    /// The variable that holds `key`, for messages.
    pub fn var(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A set, non-empty value.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|k| k == key) {
            read.push(key.to_string());
        }
        drop(read);
        self.env.get(&self.var(key)).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A set, non-empty variable outside the check's prefix, for the few
    /// defaults that come from the platform (`KUBERNETES_SERVICE_HOST`).
    pub fn global(&self, name: &str) -> Option<&'a str> {
        self.env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn require(&self, key: &str, what: &str) -> Result<&'a str, String> {
        self.get(key).ok_or_else(|| format!("{} is not set: it names {what}", self.var(key)))
    }

    pub fn or(&self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, String> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => duration::parse(text).map_err(|e| format!("{}: {e}", self.var(key))),
        }
    }

    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => parse_bool(text)
                .ok_or_else(|| format!("{}: expected true or false, got {text:?}", self.var(key))),
        }
    }

    pub fn number(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => {
                text.parse().map_err(|_| format!("{}: expected a whole number, got {text:?}", self.var(key)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_variables_after_the_check() {
        let env = HashMap::from([
            ("KUBERNARY_MY_BUCKET_BUCKET".to_string(), "b".to_string()),
            ("KUBERNARY_MY_BUCKET_TIMEOUT".to_string(), "soon".to_string()),
        ]);
        let s = Settings::new("my-bucket", &env);
        assert_eq!(s.get("BUCKET"), Some("b"));
        assert_eq!(s.or("KEY", "check"), "check");
        let err = s.duration("TIMEOUT", Duration::from_secs(2)).unwrap_err();
        assert!(err.starts_with("KUBERNARY_MY_BUCKET_TIMEOUT: invalid duration"), "{err}");
        let err = s.require("REGION", "the bucket's region").unwrap_err();
        assert_eq!(err, "KUBERNARY_MY_BUCKET_REGION is not set: it names the bucket's region");
    }
}

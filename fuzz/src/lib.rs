//! Checks shared by the fuzz targets.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde_json::Value;

/// The output of `future`, which must be ready at once: credentials from static entries need
/// no helper program. `what` names what was asked (`a document`, `a pull secret`) in the
/// panic message.
pub fn at_once<T>(what: &str, future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("asking {what} for credentials waited (ran a helper?)"),
    }
}

/// Panics if the error `message` quotes a value of `document` that looks like a password or
/// token (see [`secrets`]).
pub fn assert_quotes_no_secret(message: &str, document: Option<&Value>) {
    for secret in document.map(secrets).unwrap_or_default() {
        assert!(
            !message.contains(secret),
            "the error quotes the value {secret:?}: {message}"
        );
    }
}

/// The string values of `v` that look like a secret and cannot be mistaken for the text of
/// an error: eight characters or more without spaces, with letters and digits, and not part
/// of a key (errors name entries by key).
pub fn secrets(v: &Value) -> Vec<&str> {
    let mut keys = Vec::new();
    collect_keys(v, &mut keys);
    let mut values = Vec::new();
    string_values(v, &mut values);
    values.retain(|s| {
        s.len() >= 8
            && !s.contains(char::is_whitespace)
            && s.contains(|c: char| c.is_ascii_digit())
            && s.contains(|c: char| c.is_alphabetic())
            && keys.iter().all(|k| !format!("auths.{k}").contains(s))
    });
    values
}

/// Every string value (not key) in `v`.
fn string_values<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| string_values(i, out)),
        Value::Object(map) => map.values().for_each(|i| string_values(i, out)),
        _ => {}
    }
}

/// Every key in `v`, at any depth.
fn collect_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, out)),
        Value::Object(map) => {
            for (k, i) in map {
                out.push(k.clone());
                collect_keys(i, out);
            }
        }
        _ => {}
    }
}

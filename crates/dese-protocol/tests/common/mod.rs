//! Helpers shared by the integration tests.

#![allow(dead_code)] // each test file uses some of these

use serde_json::Value;

/// Every path to a value inside `v`, as lists of keys.
pub(crate) fn paths(v: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(map) = v {
            for (key, child) in map {
                prefix.push(key.clone());
                out.push(prefix.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Sets the value at `path` (a list of keys) to `new`, or removes it when `new` is `None`.
pub(crate) fn set(v: &mut Value, path: &[String], new: Option<Value>) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut target = v;
    for key in parents {
        target = &mut target[key.as_str()];
    }
    let map = target.as_object_mut().expect("paths lead through objects");
    match new {
        Some(new) => map.insert(last.clone(), new),
        None => map.remove(last),
    };
}

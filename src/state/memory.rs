//! A state store in memory: nothing survives the process. For tests of the
//! machinery above (sessions, quotas) that need no files.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{StateError, StateStore};

#[derive(Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, String>>,
}

impl StateStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StateError>> {
        let v = self
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        Box::pin(async move { Ok(v) })
    }

    fn put<'a>(&'a self, key: &'a str, value: String) -> BoxFuture<'a, Result<(), StateError>> {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), value);
        Box::pin(async { Ok(()) })
    }
}

//! The fake XRTC's portals: ring buffers of items per account, per-session
//! read cursors, and the probe / watch / stream reads of `item/get`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json as j, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{bad_args, json, now_ms, Body};

const PORTALS_COUNT_MAX: usize = 10;
/// Ring buffer size per portal: the oldest items are overwritten.
const RING: usize = 100;

#[derive(Clone)]
struct Item {
    payload: String,
    ts: u64,
}

#[derive(Default)]
struct Store {
    /// account -> portal -> items, oldest first.
    portals: HashMap<String, BTreeMap<String, VecDeque<Item>>>,
    /// session -> portal -> timestamp of the last item delivered.
    cursors: HashMap<String, HashMap<String, u64>>,
    /// Server timestamps are strictly increasing, so cursors never skip an item.
    last_ts: u64,
}

pub struct Portals {
    store: Mutex<Store>,
    /// Bumped on every set: watch and stream readers wait on it.
    changed: watch::Sender<u64>,
    get_item_timeout: Duration,
}

struct Query {
    portals: Vec<String>,
    mode: String,
    fifo: bool,
    cutoff: i64,
}

fn boxed_bad_args(message: &str) -> Box<super::Response<Body>> {
    Box::new(bad_args(message))
}

fn valid_portal(p: &str) -> bool {
    !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Portals {
    pub fn new(get_item_timeout: Duration) -> Self {
        Portals {
            store: Mutex::new(Store::default()),
            changed: watch::channel(0).0,
            get_item_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, account: &str, body: &Value) -> super::Response<Body> {
        let Some(items) = body["items"].as_array() else {
            return bad_args("INVALID_ARGUMENTS: items must be an array");
        };
        let mut parsed = Vec::new();
        for it in items {
            let (Some(p), Some(payload)) = (it["portalid"].as_str(), it["payload"].as_str()) else {
                return bad_args("INVALID_ARGUMENTS: each item needs portalid and payload strings");
            };
            if !valid_portal(p) {
                return bad_args(
                    "INVALID_ARGUMENTS: portalid must be 1 to 32 ASCII letters or digits",
                );
            }
            parsed.push((p.to_string(), payload.to_string()));
        }
        let mut st = self.lock();
        let mut ts = now_ms().max(st.last_ts + 1);
        let portals = st.portals.entry(account.to_string()).or_default();
        for (p, payload) in parsed {
            if !portals.contains_key(&p) && portals.len() >= PORTALS_COUNT_MAX {
                return bad_args("INVALID_ARGUMENTS: PORTALS_COUNT_MAX reached");
            }
            let ring = portals.entry(p).or_default();
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Item { payload, ts });
            ts += 1;
        }
        st.last_ts = ts - 1;
        drop(st);
        self.changed.send_modify(|v| *v += 1);
        json(
            StatusCode::OK,
            format!("{{\"servertimestamp\":{}}}", ts - 1),
        )
    }

    fn parse_query(body: &Value) -> Result<Query, Box<super::Response<Body>>> {
        let portals = match &body["portals"] {
            Value::Null => Vec::new(),
            Value::Array(a) => {
                let mut v = Vec::new();
                for p in a {
                    match p["portalid"].as_str() {
                        Some(id) if valid_portal(id) => v.push(id.to_string()),
                        _ => return Err(Box::new(bad_args("INVALID_ARGUMENTS: portalid"))),
                    }
                }
                v
            }
            _ => {
                return Err(boxed_bad_args(
                    "INVALID_ARGUMENTS: portals must be a list or null",
                ))
            }
        };
        let mode = body["mode"].as_str().unwrap_or("probe").to_string();
        if !matches!(mode.as_str(), "probe" | "watch" | "stream") {
            return Err(boxed_bad_args(
                "INVALID_ARGUMENTS: mode is probe, watch or stream",
            ));
        }
        let fifo = match body["schedule"].as_str().unwrap_or("LIFO") {
            "LIFO" => false,
            "FIFO" => true,
            _ => {
                return Err(Box::new(bad_args(
                    "INVALID_ARGUMENTS: schedule is LIFO or FIFO",
                )))
            }
        };
        let cutoff = body["cutoff"].as_i64().unwrap_or(-1);
        Ok(Query {
            portals,
            mode,
            fifo,
            cutoff,
        })
    }

    /// New items of the asked portals since this session's cursors (advancing them).
    fn take_new(&self, account: &str, session: &str, q: &Query) -> Vec<Value> {
        let mut st = self.lock();
        let now = now_ms();
        let mut out: Vec<(u64, Value)> = Vec::new();
        let mut advanced = Vec::new();
        if let Some(portals) = st.portals.get(account) {
            let cursors = st.cursors.get(session);
            for p in &q.portals {
                let since = cursors.and_then(|c| c.get(p)).copied().unwrap_or(0);
                let Some(ring) = portals.get(p) else { continue };
                let mut newest = since;
                for it in ring.iter().filter(|it| it.ts > since) {
                    newest = newest.max(it.ts);
                    if q.cutoff >= 0 && now.saturating_sub(it.ts) > q.cutoff as u64 {
                        continue;
                    }
                    out.push((
                        it.ts,
                        j!({"portalid": p, "payload": it.payload, "servertimestamp": it.ts}),
                    ));
                }
                advanced.push((p.clone(), newest));
            }
        }
        let cursors = st.cursors.entry(session.to_string()).or_default();
        for (p, ts) in advanced {
            cursors.insert(p, ts);
        }
        out.sort_by_key(|(ts, _)| *ts);
        if !q.fifo {
            out.reverse();
        }
        out.into_iter().map(|(_, v)| v).collect()
    }

    fn latest_of_all(&self, account: &str) -> Vec<Value> {
        let st = self.lock();
        st.portals
            .get(account)
            .map(|ps| {
                ps.iter()
                    .filter_map(|(p, ring)| ring.back().map(|it| j!({"portalid": p, "payload": it.payload, "servertimestamp": it.ts})))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn answer(items: Vec<Value>) -> String {
        if items.is_empty() {
            "{}".into()
        } else {
            j!({ "items": items }).to_string()
        }
    }

    pub async fn get(
        self: &Arc<Self>,
        account: &str,
        session: &str,
        body: &Value,
    ) -> super::Response<Body> {
        let q = match Self::parse_query(body) {
            Ok(q) => q,
            Err(r) => return *r,
        };
        if q.portals.is_empty() {
            return json(StatusCode::OK, Self::answer(self.latest_of_all(account)));
        }
        let deadline = Instant::now() + self.get_item_timeout;
        let mut rx = self.changed.subscribe();
        match q.mode.as_str() {
            "probe" => json(
                StatusCode::OK,
                Self::answer(self.take_new(account, session, &q)),
            ),
            "watch" => loop {
                rx.borrow_and_update();
                let items = self.take_new(account, session, &q);
                if !items.is_empty() || Instant::now() >= deadline {
                    return json(StatusCode::OK, Self::answer(items));
                }
                let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            },
            _ => self.stream(account, session, q, deadline, rx),
        }
    }

    /// One JSON line per batch, each flushed as it is ready, until GET_ITEM_TIMEOUT.
    fn stream(
        self: &Arc<Self>,
        account: &str,
        session: &str,
        q: Query,
        deadline: Instant,
        mut rx: watch::Receiver<u64>,
    ) -> super::Response<Body> {
        let (tx, chan) = tokio::sync::mpsc::channel::<Bytes>(16);
        // The reader task outlives this call.
        let me = Arc::clone(self);
        let (account, session) = (account.to_string(), session.to_string());
        tokio::spawn(async move {
            loop {
                rx.borrow_and_update();
                let items = me.take_new(&account, &session, &q);
                if !items.is_empty() {
                    let line = format!("{}\n", Self::answer(items));
                    if tx.send(Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let frames = futures_util::stream::unfold(chan, |mut chan| async move {
            chan.recv()
                .await
                .map(|b| (Ok(http_body::Frame::data(b)), chan))
        });
        let mut r = super::Response::new(StreamBody::new(frames).boxed_unsync());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

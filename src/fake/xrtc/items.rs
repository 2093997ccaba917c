//! The fake XRTC's portals: ring buffers of items per account, per-session
//! read cursors, and the probe / watch / stream reads of `item/get`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json as j, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout_at, Instant};

use super::{json, now_ms, xerr, Body};

/// PORTALS_COUNT_MAX, per account.
pub(super) const PORTALS_COUNT_MAX: usize = 10;
/// Items kept per portal: the document's ring buffer overwrites the oldest.
pub(super) const RING: usize = 100;
/// ITEM_AGE_MAX (1 h): older items are never delivered.
const ITEM_AGE_MAX_MS: u64 = 3_600_000;

struct Item {
    payload: String,
    ts: u64,
}

#[derive(Default)]
struct Store {
    /// account -> portal -> items, oldest first.
    portals: HashMap<String, BTreeMap<String, VecDeque<Item>>>,
    /// session -> portal -> timestamp of the newest item it has read.
    cursors: HashMap<String, HashMap<String, u64>>,
    /// Server timestamps are strictly increasing, so a cursor never skips an
    /// item stored in the same millisecond as the last one it read.
    last_ts: u64,
}

pub(super) struct Portals {
    store: Mutex<Store>,
    /// Bumped on every set: watch and stream readers wait on it. One channel
    /// for all accounts: a reader woken by another account's set just finds
    /// nothing new and waits again.
    changed: watch::Sender<u64>,
    get_item_timeout: Duration,
    /// PAYLOAD_SIZE_MAX also bounds each answer (see `fit`).
    payload_max: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Probe,
    Watch,
    Stream,
}

struct Query {
    /// (portal id, reference timestamp given in the request, if any).
    portals: Vec<(String, Option<u64>)>,
    mode: Mode,
    fifo: bool,
    /// Maximum age in ms; `None` for the default -1.
    cutoff: Option<u64>,
}

fn bad_args(message: &str) -> Response<Body> {
    let message = format!("INVALID_ARGUMENTS: {message}");
    xerr(StatusCode::BAD_REQUEST, 6, 30, &message)
}

fn valid_portal(p: &str) -> bool {
    (1..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn item_json(portal: &str, payload: &str, ts: u64) -> Value {
    j!({ "portalid": portal, "payload": payload, "servertimestamp": ts })
}

/// `{"items":[…]}`, or `{}` when there is nothing.
fn answer(items: Vec<Value>) -> String {
    if items.is_empty() {
        "{}".into()
    } else {
        j!({ "items": items }).to_string()
    }
}

fn parse_query(body: &Value) -> Result<Query, &'static str> {
    let portals = match &body["portals"] {
        Value::Null => Vec::new(),
        Value::Array(list) => {
            let mut v: Vec<(String, Option<u64>)> = Vec::new();
            for p in list {
                let Some(id) = p["portalid"].as_str().filter(|id| valid_portal(id)) else {
                    return Err("portalid must be 1 to 32 ASCII letters or digits");
                };
                // The document's curl example sends a reference timestamp.
                let since = match &p["servertimestamp"] {
                    Value::Null => None,
                    t => Some(t.as_u64().ok_or("servertimestamp must be a number")?),
                };
                if !v.iter().any(|(seen, _)| seen == id) {
                    v.push((id.to_string(), since));
                }
            }
            v
        }
        _ => return Err("portals must be a list or null"),
    };
    let mode = match body["mode"].as_str() {
        None if body["mode"].is_null() => Mode::Probe,
        Some("probe") => Mode::Probe,
        Some("watch") => Mode::Watch,
        Some("stream") => Mode::Stream,
        _ => return Err("mode is probe, watch or stream"),
    };
    let fifo = match body["schedule"].as_str() {
        None if body["schedule"].is_null() => false,
        Some("LIFO") => false,
        Some("FIFO") => true,
        _ => return Err("schedule is LIFO or FIFO"),
    };
    let cutoff = match &body["cutoff"] {
        Value::Null => None,
        c => match c.as_i64() {
            Some(ms) if ms < 0 => None,
            Some(ms) => u64::try_from(ms).ok(),
            None => return Err("cutoff is a number of ms"),
        },
    };
    Ok(Query {
        portals,
        mode,
        fifo,
        cutoff,
    })
}

impl Portals {
    pub(super) fn new(get_item_timeout: Duration, payload_max: usize) -> Self {
        Portals {
            store: Mutex::new(Store::default()),
            changed: watch::channel(0).0,
            get_item_timeout,
            payload_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Every update leaves the store consistent, so a poisoned lock is usable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn forget_cursors(&self, sessions: &[String]) {
        let mut st = self.lock();
        for s in sessions {
            st.cursors.remove(s);
        }
    }

    pub(super) fn forget_all_cursors(&self) {
        self.lock().cursors.clear();
    }

    /// Stores every item or none: a bad item or one portal too many refuses all.
    pub(super) fn set(&self, account: &str, body: &Value) -> Response<Body> {
        let Some(items) = body["items"].as_array() else {
            return bad_args("items must be a list");
        };
        let mut parsed = Vec::with_capacity(items.len());
        for it in items {
            let (Some(p), Some(payload)) = (it["portalid"].as_str(), it["payload"].as_str()) else {
                return bad_args("each item needs portalid and payload strings");
            };
            if !valid_portal(p) {
                return bad_args("portalid must be 1 to 32 ASCII letters or digits");
            }
            parsed.push((p, payload));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let mine = st.portals.entry(account.to_string()).or_default();
        let mut new: Vec<&str> = parsed
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !mine.contains_key(*p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if mine.len() + new.len() > PORTALS_COUNT_MAX {
            return bad_args("PORTALS_COUNT_MAX (10) portals per account");
        }
        let first = now_ms().max(st.last_ts + 1);
        let mut ts = first;
        for (p, payload) in parsed {
            let ring = mine.entry(p.to_string()).or_default();
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Item {
                payload: payload.to_string(),
                ts,
            });
            st.last_ts = ts;
            ts += 1;
        }
        drop(guard);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        json(StatusCode::OK, format!("{{\"servertimestamp\":{first}}}"))
    }

    /// Keeps items, in the order given, while the answer stays within
    /// PAYLOAD_SIZE_MAX. At least one is kept, so an item near the limit
    /// cannot block a FIFO reader for good.
    fn fit(&self, items: impl Iterator<Item = Value>) -> Vec<Value> {
        let mut size = r#"{"items":[]}"#.len();
        let mut out = Vec::new();
        for v in items {
            let len = v.to_string().len() + usize::from(!out.is_empty());
            if !out.is_empty() && size + len > self.payload_max {
                break;
            }
            size += len;
            out.push(v);
        }
        out
    }

    /// Unread items of the asked portals, advancing this session's cursors.
    /// LIFO: newest first, and what does not fit is skipped for good. FIFO:
    /// oldest first, and what does not fit stays unread for the next get.
    fn take_new(&self, account: &str, session: &str, q: &Query) -> Vec<Value> {
        let now = now_ms();
        let mut guard = self.lock();
        let st = &mut *guard;
        let cursors = st.cursors.entry(session.to_string()).or_default();
        let Some(mine) = st.portals.get(account) else {
            return Vec::new();
        };
        let since = |p: &str, given: Option<u64>| given.or(cursors.get(p).copied()).unwrap_or(0);
        let mut fresh: Vec<(u64, &str, &str)> = Vec::new();
        for (p, given) in &q.portals {
            let Some(ring) = mine.get(p) else { continue };
            let since = since(p, *given);
            for it in ring.iter().filter(|it| it.ts > since) {
                let age = now.saturating_sub(it.ts);
                if age <= ITEM_AGE_MAX_MS && q.cutoff.is_none_or(|c| age <= c) {
                    fresh.push((it.ts, p, &it.payload));
                }
            }
        }
        fresh.sort_unstable_by_key(|f| f.0);
        if !q.fifo {
            fresh.reverse();
        }
        let out = self.fit(fresh.iter().map(|(ts, p, pl)| item_json(p, pl, *ts)));
        // FIFO stops before the first item left out; otherwise all is read.
        let limit = match fresh.get(out.len()) {
            Some((ts, _, _)) if q.fifo => *ts,
            _ => u64::MAX,
        };
        let mut moved = Vec::new();
        for (p, given) in &q.portals {
            let Some(ring) = mine.get(p) else { continue };
            let newest = ring.iter().rev().map(|it| it.ts).find(|t| *t < limit);
            if let Some(t) = newest.filter(|t| *t > since(p, *given)) {
                moved.push((p.clone(), t));
            }
        }
        cursors.extend(moved);
        out
    }

    /// The latest item of every portal of the account, newest first.
    fn latest_of_all(&self, account: &str) -> Vec<Value> {
        let now = now_ms();
        let st = self.lock();
        let mut latest: Vec<(u64, &str, &str)> = st
            .portals
            .get(account)
            .into_iter()
            .flatten()
            .filter_map(|(p, ring)| ring.back().map(|it| (it.ts, p.as_str(), it.payload.as_str())))
            .filter(|(ts, _, _)| now.saturating_sub(*ts) <= ITEM_AGE_MAX_MS)
            .collect();
        latest.sort_unstable_by_key(|l| std::cmp::Reverse(l.0));
        self.fit(latest.into_iter().map(|(ts, p, pl)| item_json(p, pl, ts)))
    }

    pub(super) async fn get(
        self: &Arc<Self>,
        account: &str,
        session: &str,
        body: &Value,
    ) -> Response<Body> {
        let q = match parse_query(body) {
            Ok(q) => q,
            Err(message) => return bad_args(message),
        };
        // Without named portals, the document says mode, schedule and
        // cutoff have no effect.
        if q.portals.is_empty() {
            return json(StatusCode::OK, answer(self.latest_of_all(account)));
        }
        let deadline = Instant::now() + self.get_item_timeout;
        let mut rx = self.changed.subscribe();
        match q.mode {
            Mode::Probe => json(StatusCode::OK, answer(self.take_new(account, session, &q))),
            Mode::Watch => loop {
                // Marked seen before looking, so a set right after the look wakes us.
                rx.borrow_and_update();
                let items = self.take_new(account, session, &q);
                if !items.is_empty() || Instant::now() >= deadline {
                    return json(StatusCode::OK, answer(items));
                }
                // On timeout, loop once more: the look above returns.
                if let Ok(Err(_)) = timeout_at(deadline, rx.changed()).await {
                    // The sender lives in `self`: this cannot happen.
                    return json(StatusCode::OK, answer(Vec::new()));
                }
            },
            Mode::Stream => self.stream(account, session, q, deadline, rx),
        }
    }

    /// One JSON line per batch, each sent as its own frame as soon as it is
    /// ready, until GET_ITEM_TIMEOUT after the request began.
    fn stream(
        self: &Arc<Self>,
        account: &str,
        session: &str,
        q: Query,
        deadline: Instant,
        mut rx: watch::Receiver<u64>,
    ) -> Response<Body> {
        let (tx, chan) = mpsc::channel::<Bytes>(16);
        let me = Arc::clone(self);
        let (account, session) = (account.to_string(), session.to_string());
        // Ends by the deadline at the latest, also when the client stops reading.
        tokio::spawn(async move {
            while Instant::now() < deadline {
                rx.borrow_and_update();
                let items = me.take_new(&account, &session, &q);
                if !items.is_empty() {
                    let line = Bytes::from(format!("{}\n", answer(items)));
                    match timeout_at(deadline, tx.send(line)).await {
                        // Look again at once: a FIFO batch cut at
                        // PAYLOAD_SIZE_MAX leaves more to send.
                        Ok(Ok(())) => continue,
                        _ => return,
                    }
                }
                if !matches!(timeout_at(deadline, rx.changed()).await, Ok(Ok(()))) {
                    return;
                }
            }
        });
        let frames = futures_util::stream::unfold(chan, |mut chan| async move {
            let data = chan.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(data)), chan))
        });
        let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}

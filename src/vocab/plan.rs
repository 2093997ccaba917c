//! What a request needs before it can be forwarded, as a kind decides it.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

/// What a request needs before it can be forwarded.
pub enum Plan {
    /// countersign answers the caller itself (e.g. XRTC's own login call).
    /// (Boxed, as the other answers here: rare, and a plan is moved on
    /// every request.)
    Local(Box<Response<Full<Bytes>>>),
    /// countersign answers once a session is held ([`super::Kind::answer_with_session`]),
    /// e.g. a caller's own TTS login, which must never see the real session.
    LocalWithSession,
    Forward(Forward),
}

impl Plan {
    /// The common case: to the main upstream, nothing done with the answer.
    pub fn forward(session: bool, buffer_body: bool) -> Plan {
        Plan::Forward(Forward {
            session: if session {
                Need::Session
            } else {
                Need::Nothing
            },
            buffer_body,
            endpoint: 0,
            then: Then::Pass,
        })
    }
}

/// How a request is forwarded.
pub struct Forward {
    pub session: Need,
    /// Buffer the body (up to `max_body`): a signature covers it, or it may be replayed.
    pub buffer_body: bool,
    /// Where it goes: 0 is the route's upstream, `n` the kind's `n`th
    /// further endpoint ([`super::Kind::endpoints`]).
    pub endpoint: usize,
    pub then: Then,
}

/// What a request needs of the held session.
pub enum Need {
    Nothing,
    /// Carries the held session; log in first if there is none.
    Session,
    /// Carries the held session if there is one; otherwise this answer is
    /// given without sending anything (a logout with nothing to log out).
    SessionIfHeld(Box<Response<Full<Bytes>>>),
}

/// What happens after a successful (2xx) answer.
pub enum Then {
    Pass,
    /// The call ended the upstream session: drop the held one.
    ClearSession,
    /// The kind reads the whole answer and may act on it and rewrite it
    /// ([`super::Kind::inspect`]) before the caller sees it.
    Inspect,
}

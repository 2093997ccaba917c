use super::*;

fn settings() -> Settings {
    Settings {
        identifier: "www.example.com".into(),
        client_ver: "V4.21.04".into(),
        user_agent: "TTS-Utility-Client/505.EXAMPLE.PROD/V4.21.04".into(),
        access_key: Secret::new("AK-config-0001"),
        secret: Some(Secret::new("SK-config-0001")),
        email: "member@example.com".into(),
        password: Secret::new("pw-0001"),
        module: Some("SPIDER".into()),
        ip_address: "192.168.1.100".into(),
        mac_address: "-".into(),
        spider_upstream: None,
        force_login: true,
        access_key_fields: vec!["access_key".into()],
        secret_key_fields: vec!["secret_key".into()],
    }
}

#[test]
fn calls_by_path() {
    assert_eq!(
        call_of("/www.example.com/customers/member_login"),
        Call::Login
    );
    assert_eq!(call_of("/www.example.com/customers/get_users"), Call::Other);
    assert_eq!(call_of("/www.example.com"), Call::Other);
    assert_eq!(call_of("/https://www.example.com/products/1"), Call::Spider);
    assert_eq!(
        call_of("/www.example.com/customers/push_secret_key?x=1"),
        Call::PushSecretKey
    );
    // Spellings a lenient router takes for the same call.
    assert_eq!(
        call_of("/www.example.com/Customers/Rotate_Access_Key/"),
        Call::RotateAccessKey
    );
    assert_eq!(
        call_of("/www.example.com/customers/member_login/"),
        Call::Login
    );
    assert_eq!(call_of("/HTTPS://www.example.com/"), Call::Spider);
    assert_eq!(
        call_of("/www.example.com/customers/rotate_access_key2"),
        Call::Other
    );
}

#[test]
fn session_headers_only_with_a_session() {
    let tts = Tts::new(settings(), &Keyring::detached(), "tts-test".into());
    let mut out = Outgoing::post("/www.example.com/customers/get_users", HeaderMap::new(), "");
    tts.sign(&mut out, Some(&Secret::new("sess-1"))).unwrap();
    assert_eq!(out.headers["session-id"], "sess-1");
    assert_eq!(out.headers["member-email"], "member@example.com");
    assert_eq!(out.headers["x-tts-cc-access-key"], "AK-config-0001");
    assert_eq!(out.headers["client_ver"], "V4.21.04");
    assert_eq!(out.headers["x-tts-module"], "SPIDER");
    let mut out = Outgoing::post(
        "/www.example.com/customers/reset_password",
        HeaderMap::new(),
        "",
    );
    tts.sign(&mut out, None).unwrap();
    assert!(out.headers.get("session-id").is_none());
    let body: serde_json::Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["email_id"], "member@example.com");
    assert!(
        body.get("password").is_none(),
        "reset_password needs no password"
    );
}

#[test]
fn login_body_carries_the_member_and_a_checksum() {
    let tts = Tts::new(settings(), &Keyring::detached(), "tts-test".into());
    let login = tts.login_request().unwrap();
    assert_eq!(
        login.path_and_query,
        "/www.example.com/customers/member_login"
    );
    let body: serde_json::Value = serde_json::from_slice(login.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["email_id"], "member@example.com");
    assert_eq!(body["password"], "pw-0001");
    assert_eq!(body["secret"], "SK-config-0001");
    assert_eq!(body["identifire"], "www.example.com");
    assert_eq!(body["checksum"].as_str().unwrap().len(), 64);
}

#[test]
fn plans() {
    let mut with_spider = settings();
    with_spider.spider_upstream =
        Some(crate::config::parse_upstream("http://spider.example.com").unwrap());
    let tts = Tts::new(with_spider, &Keyring::detached(), "tts-test".into());
    let h = HeaderMap::new();
    let plan = |m: Method, p: &str| tts.plan(&m, p, &h).unwrap();
    assert!(matches!(
        plan(Method::POST, "/www.example.com/customers/member_login"),
        Plan::LocalWithSession
    ));
    assert!(matches!(
        plan(Method::HEAD, "/https://www.example.com/x"),
        Plan::Forward(Forward {
            endpoint: 1,
            session: Need::Nothing,
            ..
        })
    ));
    assert!(matches!(
        plan(Method::POST, "/https://www.example.com"),
        Plan::Forward(Forward {
            endpoint: 0,
            session: Need::Session,
            ..
        })
    ));
    assert!(matches!(
        plan(Method::POST, "/www.example.com/customers/member_logout"),
        Plan::Forward(Forward {
            session: Need::SessionIfHeld(_),
            then: Then::ClearSession,
            ..
        })
    ));
    assert!(matches!(
        plan(Method::POST, "/www.example.com/customers/rotate_access_key"),
        Plan::Forward(Forward {
            then: Then::Inspect,
            ..
        })
    ));
}

#[test]
fn expiry_is_401_or_the_message() {
    let tts = Tts::new(settings(), &Keyring::detached(), "tts-test".into());
    let h = HeaderMap::new();
    assert!(tts.session_expired(StatusCode::UNAUTHORIZED, &h, None));
    assert!(tts.session_expired(StatusCode::FORBIDDEN, &h, Some(b"Session expired")));
    assert!(!tts.session_expired(StatusCode::BAD_REQUEST, &h, Some(b"Invalid checksum")));
}

#[test]
fn identity_holds_no_secret_and_no_email() {
    let tts = Tts::new(settings(), &Keyring::detached(), "tts-test".into());
    let id = tts.credential_id();
    assert!(id.starts_with("tts-") && id.len() == 4 + 24, "{id}");
    assert!(!id.contains("member") && !id.contains("example"));
    assert!(!id.contains("AK-config"));
    // 0.1's, for the migration of its state.
    let legacy = tts.legacy_credential_id().unwrap();
    assert!(legacy.starts_with("tts-www_example_com-"), "{legacy}");
}

/// 0.1 mapped every character outside [A-Za-z0-9] to `_`: two sites were
/// one member, one session.
#[test]
fn identifiers_0_1_could_not_tell_apart_are_two_identities() {
    let tts = |identifier: &str| {
        let mut s = settings();
        s.identifier = identifier.into();
        Tts::new(s, &Keyring::detached(), "tts-test".into())
    };
    let (a, b) = (tts("www.example.com"), tts("www_example_com"));
    assert_eq!(a.legacy_credential_id(), b.legacy_credential_id());
    assert_ne!(a.credential_id(), b.credential_id());
}

#[tokio::test]
async fn a_rotated_key_that_cannot_be_sent_fails_the_rotation_and_keeps_the_old_key() {
    let store: std::sync::Arc<dyn crate::state::StateStore> =
        std::sync::Arc::new(crate::state::MemoryStore::default());
    let tts = Tts::new(
        settings(),
        &Keyring::new(store.clone(), None),
        "tts-test".into(),
    );
    let sent = Outgoing::post(
        "/www.example.com/customers/rotate_access_key",
        HeaderMap::new(),
        "",
    );
    let mut answer = Buffered {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: bytes::Bytes::from_static(br#"{"access_key":"AK-2\r\nX-Evil: 1"}"#),
    };
    let e = tts.inspect(&sent, &mut answer).await.unwrap_err();
    assert_eq!(e.code(), "key_rotation_failed");
    assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    let mut out = Outgoing::post("/www.example.com/customers/get_users", HeaderMap::new(), "");
    tts.sign(&mut out, Some(&Secret::new("sess-1"))).unwrap();
    assert_eq!(out.headers["x-tts-cc-access-key"], "AK-config-0001");
}

#[test]
fn a_pushed_key_that_cannot_be_sent_is_refused_before_the_push() {
    let tts = Tts::new(settings(), &Keyring::detached(), "tts-test".into());
    let push = |body: &str, ct: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        let mut out = Outgoing::post(
            "/www.example.com/customers/push_access_key",
            h,
            body.to_string(),
        );
        tts.sign(&mut out, Some(&Secret::new("sess-1")))
    };
    let long = format!(r#"{{"new_access_key":"{}"}}"#, "k".repeat(4097));
    for (body, ct) in [
        (r#"{"new_access_key":"AK-2\nX"}"#, "application/json"),
        (r#"{"new_access_key":"AK 2"}"#, "application/json"),
        (long.as_str(), "application/json"),
        (
            "new_access_key=AK-2%0D%0AX",
            "application/x-www-form-urlencoded",
        ),
        (r#"{"other":"x"}"#, "application/json"),
    ] {
        let e = push(body, ct).unwrap_err();
        assert_eq!(e.code(), "bad_request_body", "{body}");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
    push(r#"{"new_access_key":"AK-2-fine"}"#, "application/json").unwrap();
}

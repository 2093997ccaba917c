//! The teamdrive kind end to end: gateway -> strict fake Registration Server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod support;

use bytes::Bytes;
use countersign::fake::teamdrive::{Auth, Config, Fake};
use http_body_util::Full;
use support::*;

const KEY: &str = "service-key-for-tests";

fn route(addr: std::net::SocketAddr, auth: &str, extra: &str) -> String {
    format!("kind = \"teamdrive\"\nupstream = \"http://{addr}\"\nauth = \"{auth}\"\nkey = \"{KEY}\"\n{extra}")
}

fn fake(auth: Auth) -> Fake {
    Fake::new(Config {
        key: KEY.into(),
        auth,
        ..Config::default()
    })
}

async fn post_xml(gw: &Gw, path: &str, body: &str) -> Answer {
    send(
        http::Request::post(gw.url(path))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
    )
    .await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `<requesttime>` value in a body.
fn time_in(body: &str) -> u64 {
    let start = body.find("<requesttime>").unwrap() + "<requesttime>".len();
    body[start..start + body[start..].find('<').unwrap()]
        .parse()
        .unwrap()
}

#[tokio::test]
async fn md5_route_sets_requesttime_adds_distributor_and_keeps_every_other_byte() {
    let (addr, fake, _stop) = start_fake!(fake(Auth::Md5));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "md5", "distributor = \"ACME\""),
    ))
    .await;
    let body = "<?xml version='1.0' encoding='UTF-8' ?>\n<teamdrive>\n  <command>loginuser</command>\n  <requesttime>1</requesttime>\n  <username>YourUserName</username>\n  <password>Your Password &amp; more</password>\n</teamdrive>\n";
    let a = post_xml(&gw, "/r/yvva/api/api.xml?checksum=forged", body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(
        a.text().contains("<result>ok</result>")
            && a.text().contains("<distributor>ACME</distributor>"),
        "{}",
        a.text()
    );
    let st = fake.stats();
    assert_eq!(st.rejected, 0);
    let sent = &st.recent[0];
    let t = time_in(&sent.body);
    assert!(t.abs_diff(now()) < 10, "requesttime set to now: {t}");
    let expect = body.replace(
        "<requesttime>1</requesttime>",
        &format!("<requesttime>{t}</requesttime><distributor>ACME</distributor>"),
    );
    assert_eq!(sent.body, expect, "every other byte unchanged");
    // The caller's checksum was replaced, not added to.
    assert_eq!(
        sent.path_and_query.matches("checksum=").count(),
        1,
        "{}",
        sent.path_and_query
    );
    assert!(!sent.path_and_query.contains("forged"));
}

#[tokio::test]
async fn hmac_sha1_route_inserts_a_missing_requesttime_after_the_command() {
    let (addr, fake, _stop) = start_fake!(fake(Auth::HmacSha1));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, "hmac-sha1", ""))).await;
    let body = "<teamdrive><!-- <requesttime>0</requesttime> --><command>getuserdata</command>\r\n\t<username><![CDATA[a<b>]]></username></teamdrive>";
    let a = post_xml(&gw, "/r/yvva/api/api.xml", body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let sent = fake.stats().recent[0].body.clone();
    let t = time_in(&sent.replace("<!-- <requesttime>0</requesttime> -->", ""));
    assert_eq!(
        sent,
        body.replace(
            "</command>",
            &format!("</command><requesttime>{t}</requesttime>")
        )
    );
    assert_eq!(fake.stats().rejected, 0);
}

#[tokio::test]
async fn only_post_and_only_understood_xml() {
    let (addr, fake, _stop) = start_fake!(fake(Auth::Md5));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, "md5", ""))).await;
    let a = send(
        http::Request::get(gw.url("/r/yvva/api/api.xml"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status.as_u16(), a.error_code()),
        (405, Some("method_not_allowed"))
    );
    for bad in [
        "not xml",
        "<teamdrive><command>a</command>",
        "<teamdrive><username>u</username></teamdrive>",
    ] {
        let a = post_xml(&gw, "/r/yvva/api/api.xml", bad).await;
        assert_eq!(
            (a.status.as_u16(), a.error_code()),
            (400, Some("bad_request_body")),
            "{bad}"
        );
        assert!(a.text().contains("XML body"), "{}", a.text());
    }
    assert_eq!(fake.stats().requests, 0, "nothing mangled was sent");
}

#[tokio::test]
async fn a_wrong_key_gets_the_upstreams_exception_unchanged() {
    let (addr, fake, _stop) = start_fake!(Fake::new(Config {
        key: "the-real-key".into(),
        ..Config::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(dir.path(), &route(addr, "md5", ""))).await;
    let a = post_xml(
        &gw,
        "/r/yvva/api/api.xml",
        "<teamdrive><command>loginuser</command></teamdrive>",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.error_code(), None);
    assert!(
        a.text().contains("<primarycode>-30000</primarycode>")
            && a.text().contains("Access denied"),
        "{}",
        a.text()
    );
    assert_eq!(fake.stats().rejected, 1);
}

#[tokio::test]
async fn requesttime_keep_leaves_the_callers_value() {
    let (addr, fake, _stop) = start_fake!(fake(Auth::Md5));
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&route_toml(
        dir.path(),
        &route(addr, "md5", "requesttime = \"keep\""),
    ))
    .await;
    let stale =
        "<teamdrive><command>loginuser</command><requesttime>1000</requesttime></teamdrive>";
    let a = post_xml(&gw, "/r/yvva/api/api.xml", stale).await;
    assert!(
        a.text().contains("<primarycode>-30002</primarycode>"),
        "{}",
        a.text()
    );
    assert_eq!(fake.stats().recent[0].body, stale);
    let fresh = format!(
        "<teamdrive><command>loginuser</command><requesttime>{}</requesttime></teamdrive>",
        now()
    );
    let a = post_xml(&gw, "/r/yvva/api/api.xml", &fresh).await;
    assert!(a.text().contains("<result>ok</result>"), "{}", a.text());
}

//! The two-step e-mail registration. No mail is sent: the code is always
//! [`EMAIL_CODE`], so tests and demos can finish a registration.

use http::{Response, StatusCode};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;

use super::{json, lenient, parse_fail, xerr, Body, Fake};

/// The code "sent by e-mail" for every registration.
pub const EMAIL_CODE: &str = "123456";

/// Wrong codes allowed before MAX_CODE_RETRY (the document: "up to 3 times").
const CODE_TRIES: u32 = 3;

fn reg_err(code: u32, message: &str) -> Response<Body> {
    xerr(StatusCode::BAD_REQUEST, 3, code, message)
}

/// Good enough to tell a typo from an address: `user@domain.tld`.
fn looks_like_email(email: &str) -> bool {
    email.split_once('@').is_some_and(|(user, domain)| {
        !user.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.contains('.')
            && !domain.contains('@')
            && !email.contains(char::is_whitespace)
    })
}

impl Fake {
    pub(super) fn registration_start(&self, text: &str) -> Response<Body> {
        let Some(v) = lenient::parse(text) else {
            return parse_fail(3, "cannot parse the request");
        };
        let Some(email) = v["email"].as_str() else {
            return reg_err(30, "INVALID_ARGUMENTS: email is required");
        };
        if !looks_like_email(email) {
            return reg_err(
                32,
                &format!("RegistrationStart.newRegistration: Invalid email address {email}"),
            );
        }
        let mut st = self.state();
        let token = match &v["registrationtoken"] {
            // A re-send: the token must be one the fake issued.
            serde_json::Value::String(t) if st.registrations.contains_key(t) => t.clone(),
            serde_json::Value::Null => {
                let mut rng = rand::rng();
                let t = format!(
                    "{}-{}",
                    Alphanumeric.sample_string(&mut rng, 20).to_lowercase(),
                    rng.random_range(1_000_000_000u64..10_000_000_000)
                );
                st.registrations.insert(t.clone(), 0);
                t
            }
            _ => return reg_err(33, "INVALID_TOKEN"),
        };
        json(
            StatusCode::OK,
            serde_json::json!({ "registrationtoken": token }).to_string(),
        )
    }

    pub(super) fn registration_code(&self, text: &str) -> Response<Body> {
        let Some(v) = lenient::parse(text) else {
            return parse_fail(3, "cannot parse the request");
        };
        let (Some(token), Some(code)) = (v["registrationtoken"].as_str(), v["emailcode"].as_str())
        else {
            return reg_err(
                30,
                "INVALID_ARGUMENTS: registrationtoken and emailcode strings are required",
            );
        };
        let mut st = self.state();
        let Some(tries) = st.registrations.get_mut(token) else {
            return reg_err(33, "INVALID_TOKEN");
        };
        if code != EMAIL_CODE {
            *tries += 1;
            if *tries >= CODE_TRIES {
                st.registrations.remove(token);
                return reg_err(42, "MAX_CODE_RETRY");
            }
            return reg_err(34, "INVALID_CODE");
        }
        st.registrations.remove(token);
        let mut rng = rand::rng();
        // "AC followed by a long number": 16 digits, as in the example.
        let account = format!(
            "AC{}",
            rng.random_range(1_000_000_000_000_000u64..10_000_000_000_000_000)
        );
        let key = Alphanumeric.sample_string(&mut rng, 32);
        st.accounts.push((account.clone(), key.clone()));
        json(
            StatusCode::OK,
            serde_json::json!({ "accountid": account, "apikey": key, "apikeyname": "fake" })
                .to_string(),
        )
    }
}

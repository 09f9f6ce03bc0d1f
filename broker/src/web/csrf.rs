//! The console's secrets: session ids, CSRF tokens and the login form's token.
//!
//! Every state-changing request (POST) must carry a token a cross-site page cannot know: the
//! session's own (random, made at login) for a browser logged in through the form, and for an
//! HTTP Basic client a token bound to its user, an HMAC under a key made when the console starts
//! (browsers replay Basic credentials on cross-site requests as they do cookies, so Basic needs
//! the protection too; the client fetches its token from `GET /api/csrf`). The login form has
//! no session yet: its token is a signed double-submit one, a random nonce with its HMAC, set as
//! a `SameSite=Strict` cookie and repeated in the form, so a cross-site page can neither send
//! the cookie nor forge a pair the key did not sign (login CSRF would log the victim in as the
//! attacker). Tokens are compared in constant time.

use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The system's random number generator failed: no token can be made safely.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomUnavailable;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key the console signs with, and its source of randomness.
pub(crate) struct Secrets {
    rng: SystemRandom,
    key: hmac::Key,
}

impl Secrets {
    pub(crate) fn new() -> Result<Secrets, RandomUnavailable> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| RandomUnavailable)?;
        Ok(Secrets { rng, key })
    }

    /// 128 random bits, URL- and cookie-safe: session ids and session tokens.
    pub(crate) fn random_token(&self) -> Result<String, RandomUnavailable> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).map_err(|_| RandomUnavailable)?;
        Ok(B64.encode(bytes))
    }

    /// The CSRF token of an HTTP Basic client: the same for a user until the broker restarts.
    pub(crate) fn basic_token(&self, user: &str) -> String {
        B64.encode(hmac::sign(&self.key, format!("basic:{user}").as_bytes()))
    }

    /// A fresh login-form token, `nonce.signature`.
    pub(crate) fn login_token(&self) -> Result<String, RandomUnavailable> {
        let nonce = self.random_token()?;
        let tag = hmac::sign(&self.key, format!("login:{nonce}").as_bytes());
        Ok(format!("{nonce}.{}", B64.encode(tag)))
    }

    /// The login form's token matches its cookie and was signed by this console.
    pub(crate) fn login_token_valid(&self, cookie: &str, form: &str) -> bool {
        if !tokens_equal(cookie, form) {
            return false;
        }
        let Some((nonce, tag)) = form.split_once('.') else {
            return false;
        };
        let Ok(tag) = B64.decode(tag) else {
            return false;
        };
        // ring's verify compares in constant time.
        hmac::verify(&self.key, format!("login:{nonce}").as_bytes(), &tag).is_ok()
    }
}

/// Compares two tokens without a timing difference that would reveal how many leading bytes of
/// a guess are right (only the length shows, and every token of a kind has the same length).
pub(crate) fn tokens_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_cookie_safe() {
        let s = Secrets::new().unwrap();
        let (a, b) = (s.random_token().unwrap(), s.random_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn basic_tokens_are_per_user_and_per_key() {
        let s = Secrets::new().unwrap();
        assert_eq!(s.basic_token("admin"), s.basic_token("admin"));
        assert_ne!(s.basic_token("admin"), s.basic_token("app"));
        let other = Secrets::new().unwrap();
        assert_ne!(s.basic_token("admin"), other.basic_token("admin"));
    }

    #[test]
    fn a_login_token_needs_its_cookie_and_this_key() {
        let s = Secrets::new().unwrap();
        let t = s.login_token().unwrap();
        assert!(s.login_token_valid(&t, &t));
        let other = s.login_token().unwrap();
        assert!(!s.login_token_valid(&other, &t), "another form's cookie");
        let forged = format!("{}.{}", "A".repeat(22), "A".repeat(43));
        assert!(!s.login_token_valid(&forged, &forged), "not signed");
        let foreign = Secrets::new().unwrap().login_token().unwrap();
        assert!(
            !s.login_token_valid(&foreign, &foreign),
            "signed by another key"
        );
        assert!(!s.login_token_valid("", ""));
    }

    #[test]
    fn equal_means_equal() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
        assert!(!tokens_equal("", "a"));
    }
}

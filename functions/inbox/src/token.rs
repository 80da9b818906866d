//! User tokens: JWTs the team's backend signs with HS256 under the stack's inbox token
//! key (`sub` the person's recipient id, `exp` required). Only HS256 is accepted: a token
//! naming another algorithm (`none`, RS256...) is refused before any key is used.

use chrono::{DateTime, Utc};
use herald::domain::RecipientId;
use herald::domain::inbox::{ClaimsError, UserClaims};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// The longest token read (a user token is a few hundred bytes).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The HMAC key user tokens are signed with: the secret's string, as its UTF-8 bytes.
/// Neither its `Debug` nor any error shows it.
pub struct InboxKey(Vec<u8>);

impl std::fmt::Debug for InboxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboxKey(..)")
    }
}

impl InboxKey {
    /// At least 32 bytes (the stack generates 64 characters). The error quotes nothing of it.
    pub fn new(raw: &str) -> Result<Self, String> {
        if raw.len() < 32 {
            return Err("the inbox token key must be 32 bytes or more".into());
        }
        Ok(Self(raw.as_bytes().to_vec()))
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT this API reads")]
    Malformed,
    #[error("only HS256 tokens are accepted")]
    Algorithm,
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token lacks a required claim (sub, exp)")]
    MissingClaim,
    #[error("{0}")]
    Claims(ClaimsError),
}

/// The person a token speaks for, if it is signed with `key` and valid at `now`.
pub fn verify(token: &str, key: &InboxKey, now: DateTime<Utc>) -> Result<RecipientId, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    // Times are checked by `UserClaims::check`, against the request's own clock.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<UserClaims>(token, &DecodingKey::from_secret(&key.0), &validation).map_err(
        |e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::InvalidKeyFormat => {
                TokenError::Algorithm
            }
            ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            _ => TokenError::Malformed,
        },
    )?;
    data.claims.check(now).map_err(TokenError::Claims)
}

/// A token for `claims`, signed with `key` (`herald inbox token`, tests; a team's backend
/// uses its own JWT library: docs/inbox.md).
pub fn mint(key: &InboxKey, claims: &UserClaims) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(&key.0))
        .map_err(|e| format!("the token could not be signed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::TimeDelta;
    use hmac::{KeyInit, Mac};

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key() -> InboxKey {
        InboxKey::new(KEY).unwrap()
    }

    /// A JWT made by hand from its parts, as any library would (so the test does not trust `mint`).
    fn jwt(header: &str, claims: &str, secret: &[u8]) -> String {
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_token_signed_with_the_key_names_its_person() {
        let now = Utc::now();
        let exp = now.timestamp() + 600;
        let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
        let token = jwt(hs256, &format!(r#"{{"sub":"user-42","exp":{exp},"iat":1,"role":"x"}}"#), KEY.as_bytes());
        assert_eq!(verify(&token, &key(), now), Ok(RecipientId::new("user-42").unwrap()));
        let minted =
            mint(&key(), &UserClaims::for_recipient(&RecipientId::new("bo").unwrap(), now, TimeDelta::hours(1)));
        assert_eq!(verify(&minted.unwrap(), &key(), now), Ok(RecipientId::new("bo").unwrap()));
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let now = Utc::now();
        let exp = now.timestamp() + 600;
        let hs256 = r#"{"alg":"HS256","typ":"JWT"}"#;
        let claims = format!(r#"{{"sub":"user-42","exp":{exp}}}"#);
        let good = jwt(hs256, &claims, KEY.as_bytes());
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_person =
            format!("{head}.{}.{signature}", URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"user-43","exp":{exp}}}"#)));
        let cases = [
            (jwt(hs256, &claims, b"another key, forty bytes long........."), TokenError::Signature),
            (other_person, TokenError::Signature),
            (jwt(r#"{"alg":"HS384","typ":"JWT"}"#, &claims, KEY.as_bytes()), TokenError::Algorithm),
            (
                format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(&claims)),
                TokenError::Malformed,
            ),
            (jwt(hs256, r#"{"sub":"user-42","exp":1}"#, KEY.as_bytes()), TokenError::Claims(ClaimsError::Expired)),
            (jwt(hs256, &format!(r#"{{"exp":{exp}}}"#), KEY.as_bytes()), TokenError::MissingClaim),
            (jwt(hs256, r#"{"sub":"user-42"}"#, KEY.as_bytes()), TokenError::MissingClaim),
            (
                jwt(hs256, &format!(r#"{{"sub":"no#pe","exp":{exp}}}"#), KEY.as_bytes()),
                TokenError::Claims(ClaimsError::BadSubject),
            ),
            ("not.a.token".to_owned(), TokenError::Malformed),
            (String::new(), TokenError::Malformed),
            ("x".repeat(MAX_TOKEN_BYTES + 1), TokenError::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(verify(&token, &key(), now), Err(expected), "{token}");
        }
    }

    #[test]
    fn keys_are_long_and_never_printed() {
        assert!(InboxKey::new("short").is_err());
        assert!(!InboxKey::new("short").unwrap_err().contains("short"));
        assert_eq!(format!("{:?}", key()), "InboxKey(..)");
    }
}

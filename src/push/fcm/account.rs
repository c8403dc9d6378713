//! The operator's Google service account (the JSON key file Firebase hands out): which project the
//! messages are sent for, who signs the OAuth assertion, and the RSA key it is signed with.
//!
//! The file is read and its key tried once at start, so a wrong path, a truncated file or a key
//! that is not RSA stops the node with a message naming the setting, rather than failing every push
//! later.

use std::path::{Path, PathBuf};

use jsonwebtoken::EncodingKey;
use serde::Deserialize;

/// Where Google's service account keys say to ask for access tokens.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The fields of the key file this node uses (the file has more: `private_key_id`, `client_id`,
/// the certificate URLs; they are not needed to sign).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    project_id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A service account that can sign assertions.
#[derive(Clone)]
pub struct ServiceAccount {
    /// The Firebase (Google Cloud) project the app's tokens belong to.
    pub project_id: String,
    /// The account's address: the assertion's issuer.
    pub client_email: String,
    /// Where to ask for access tokens (the file's `token_uri`, else Google's).
    pub token_uri: String,
    /// The RSA private key (from the file's PKCS#8 PEM).
    pub(crate) key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Why a service account file can't be used; the text names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The file could not be read.
    #[error("push.fcm_service_account_file: reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("push.fcm_service_account_file: {path} is not a JSON key file: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A field is missing or wrong.
    #[error("push.fcm_service_account_file: {path}: {field} {rule}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The JSON field.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
    /// `private_key` is not a usable RSA key.
    #[error(
        "push.fcm_service_account_file: {path}: private_key must be the RSA key in PEM \
         (\"-----BEGIN PRIVATE KEY-----\"), as Google's key file has it: {source}"
    )]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
}

impl ServiceAccount {
    /// Reads and checks the key file at `path` (see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, AccountError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccountError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks the key file's `text`; `path` is for the messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AccountError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|source| AccountError::Json {
            path: path.to_owned(),
            source,
        })?;
        let field = |field: &'static str, rule: &str| AccountError::Field {
            path: path.to_owned(),
            field,
            rule: rule.to_owned(),
        };
        if let Some(kind) = &file.kind
            && kind != "service_account"
        {
            return Err(field(
                "type",
                "must be \"service_account\" (a service account key, not an OAuth client)",
            ));
        }
        // Google's project ids are lowercase letters, digits and hyphens; the id goes into the
        // send URL's path, so nothing else is let through.
        let project_ok = !file.project_id.is_empty()
            && file
                .project_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !project_ok {
            return Err(field(
                "project_id",
                "is required: the Firebase project id (letters, digits and '-')",
            ));
        }
        if file.client_email.is_empty() {
            return Err(field("client_email", "is required"));
        }
        if file.private_key.is_empty() {
            return Err(field("private_key", "is required"));
        }
        let token_uri = file
            .token_uri
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        crate::push::config::base_url(&token_uri).map_err(|rule| field("token_uri", &rule))?;
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes()).map_err(|source| {
            AccountError::Key {
                path: path.to_owned(),
                source,
            }
        })?;
        let account = Self {
            project_id: file.project_id,
            client_email: file.client_email,
            token_uri,
            key,
        };
        // The PEM parses lazily into ring's key at the first signature: sign once now.
        let probe = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({}),
            &account.key,
        );
        probe.map_err(|source| AccountError::Key {
            path: path.to_owned(),
            source,
        })?;
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../tests/fixtures/fcm/service_account_key.pem");

    fn file(fields: serde_json::Value) -> String {
        fields.to_string()
    }

    fn parse(text: &str) -> Result<ServiceAccount, AccountError> {
        ServiceAccount::parse(Path::new("sa.json"), text)
    }

    #[test]
    fn a_google_key_file_loads() {
        let account = parse(&file(serde_json::json!({
            "type": "service_account",
            "project_id": "guildhall-test",
            "private_key_id": "abc",
            "private_key": KEY,
            "client_email": "push@guildhall-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        })))
        .expect("loads");
        assert_eq!(account.project_id, "guildhall-test");
        assert_eq!(account.token_uri, GOOGLE_TOKEN_URI);
        assert!(
            !format!("{account:?}").contains("PRIVATE"),
            "the key never shows"
        );
        let no_uri = parse(&file(serde_json::json!({
            "project_id": "p", "private_key": KEY, "client_email": "a@b",
        })))
        .expect("token_uri defaults");
        assert_eq!(no_uri.token_uri, GOOGLE_TOKEN_URI);
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                serde_json::json!({"type": "authorized_user", "project_id": "p", "private_key": KEY, "client_email": "a@b"}),
                "type must be",
            ),
            (
                serde_json::json!({"private_key": KEY, "client_email": "a@b"}),
                "project_id is required",
            ),
            (
                serde_json::json!({"project_id": "p/../x", "private_key": KEY, "client_email": "a@b"}),
                "project_id is required",
            ),
            (
                serde_json::json!({"project_id": "p", "private_key": KEY}),
                "client_email is required",
            ),
            (
                serde_json::json!({"project_id": "p", "client_email": "a@b"}),
                "private_key is required",
            ),
            (
                serde_json::json!({"project_id": "p", "private_key": "not a key", "client_email": "a@b"}),
                "private_key must be the RSA key",
            ),
            (
                serde_json::json!({"project_id": "p", "private_key": KEY, "client_email": "a@b", "token_uri": "oauth"}),
                "token_uri must be an absolute",
            ),
        ];
        for (fields, expected) in cases {
            let e = parse(&file(fields)).expect_err(expected).to_string();
            assert!(
                e.starts_with("push.fcm_service_account_file: sa.json"),
                "{e}"
            );
            assert!(e.contains(expected), "{e} should say {expected}");
        }
        assert!(
            parse("{")
                .expect_err("json")
                .to_string()
                .contains("not a JSON key file")
        );
    }
}

//! Identity: keys, device certificates, the clock window, and the one module that builds signing
//! bytes. Nothing outside this module constructs bytes to be signed.

pub mod cert;
pub mod freshness;
pub mod key_file;
pub mod keys;
pub mod signing;

pub use cert::{CertError, DeviceCert};
pub use keys::{KeyError, PublicKey, SecretKey, ServerId, Signature};
pub use signing::{BadSignature, Signable, Verified};

//! A certificate authority made in the test, and certificates it issues for nodes on loopback.

use std::path::{Path, PathBuf};

use guildhall::config::Config;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A test CA with its files in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate (PEM): what clients and other nodes trust.
    pub ca_file: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        Self {
            dir,
            cert,
            key,
            ca_file,
        }
    }

    /// Issues a certificate for `names` (DNS names or IP addresses); returns (cert, key) files.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let cert_file = self.dir.path().join(format!("{file_stem}.crt"));
        let key_file = self.dir.path().join(format!("{file_stem}.key"));
        write_atomically(&cert_file, &cert.pem());
        write_atomically(&key_file, &key.serialize_pem());
        (cert_file, key_file)
    }

    /// Makes `config` serve TLS with a certificate for 127.0.0.1 and localhost, and trust this CA
    /// for its outgoing connections.
    pub fn serve(&self, config: &mut Config, file_stem: &str) {
        let (cert, key) = self.issue(file_stem, &["127.0.0.1", "localhost"]);
        config.tls.cert_file = cert;
        config.tls.key_file = key;
        config.tls.extra_ca_file = self.ca_file.clone();
    }
}

/// Replaces a file in one step, so a node reloading it never reads half of it.
pub fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

//! TLS server configuration (rustls with aws-lc-rs) and a local development CA.
//!
//! [`load_server_config`] reads a PEM certificate chain and key. [`write_self_signed`] creates
//! (or reuses) a private CA plus a server certificate signed by it; users hand the CA file to
//! clients (`SSL_CERT_FILE`, flytekit's `caCertFilePath`) so that certificate verification stays
//! on instead of being disabled.
//!
//! The crypto provider is always passed explicitly: test builds also link `ring` (through the
//! test crates' HTTP client), and with two providers compiled in, rustls cannot pick a process
//! default on its own.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::ServerConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// ALPN protocols offered by the server, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// File name of the CA certificate inside the self-signed directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the self-signed directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the server certificate inside the self-signed directory.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the server private key inside the self-signed directory.
pub const SERVER_KEY_FILE: &str = "server.key";

const CA_LIFETIME: Duration = Duration::days(3650);
const SERVER_LIFETIME: Duration = Duration::days(365);
// Reissue ahead of expiry so a long-running dev server does not start failing mid-session.
const RENEW_BEFORE: Duration = Duration::days(30);
const CA_COMMON_NAME: &str = "flyteauth local development CA";

/// Errors of TLS setup; every file-related variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{} contains no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key block (PKCS#1, PKCS#8 or SEC1).
    #[error("{} contains no PEM private key", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls rejected the certificate/key pair (unsupported key, key not matching the certificate…).
    #[error("invalid TLS certificate {} / key {}: {source}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
    /// A host name cannot go into a certificate.
    #[error("invalid host {host:?} for a TLS certificate: expected a DNS name or an IP address")]
    InvalidHost {
        /// The rejected host.
        host: String,
    },
    /// Certificate generation failed.
    #[error("generating a certificate failed: {0}")]
    Generate(String),
    /// A certificate is not a well-formed DER X.509 certificate.
    #[error("malformed certificate: {reason}")]
    MalformedCertificate {
        /// What the parser reported.
        reason: String,
    },
}

/// The aws-lc-rs crypto provider used for every TLS configuration built here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Hosts a self-signed server certificate covers when none are given.
pub fn default_hosts() -> Vec<String> {
    vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]
}

/// Builds the server configuration from PEM files: the chain (leaf first) and its private key.
/// ALPN offers `h2` then `http/1.1`.
pub fn load_server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    server_config(chain, key).map_err(|source| TlsError::Config {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}

/// Builds the server configuration from DER values (chain leaf first).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#1, PKCS#8 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            message: other.to_string(),
        },
    })
}

/// Files written by [`write_self_signed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSignedPaths {
    /// The CA certificate: give it to clients as their trust root.
    pub ca_cert: PathBuf,
    /// The server certificate, signed by the CA.
    pub server_cert: PathBuf,
    /// The server private key (PKCS#8 PEM).
    pub server_key: PathBuf,
}

impl SelfSignedPaths {
    /// The file locations inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join(CA_CERT_FILE),
            server_cert: dir.join(SERVER_CERT_FILE),
            server_key: dir.join(SERVER_KEY_FILE),
        }
    }
}

/// Ensures `dir` (mode 0700) holds a local CA and a server certificate for `hosts` (files 0600).
///
/// `hosts` are DNS names or IP addresses; empty means [`default_hosts`]. Existing files are
/// kept while the server certificate chains to the CA, matches its key, covers every host and
/// has more than 30 days left. Otherwise a new server certificate is issued, by the existing CA
/// when that is still valid (so clients keep trusting it), else by a new CA.
pub fn write_self_signed(dir: &Path, hosts: &[String]) -> Result<SelfSignedPaths, TlsError> {
    let hosts = if hosts.is_empty() {
        default_hosts()
    } else {
        hosts.to_vec()
    };
    let names = server_names(&hosts)?;
    prepare_dir(dir)?;
    let paths = SelfSignedPaths::in_dir(dir);
    let ca_key_path = dir.join(CA_KEY_FILE);
    let now = OffsetDateTime::now_utc();

    if is_valid(&paths, &names, now) {
        return Ok(paths);
    }
    if let Some((ca_params, ca_key)) = load_ca(&paths.ca_cert, &ca_key_path, now) {
        issue_server(&paths, &hosts, &Issuer::new(ca_params, ca_key), now)?;
        if is_valid(&paths, &names, now) {
            return Ok(paths);
        }
        tracing::info!(dir = %dir.display(), "existing CA cannot sign a usable certificate; replacing it");
    }

    let ca_key = generate_key()?;
    let params = ca_params(now);
    let ca_cert = params
        .self_signed(&ca_key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(
        &ca_key_path,
        Zeroizing::new(ca_key.serialize_pem()).as_bytes(),
    )?;
    write_private(&paths.ca_cert, ca_cert.pem().as_bytes())?;
    issue_server(&paths, &hosts, &Issuer::new(params, ca_key), now)?;
    if is_valid(&paths, &names, now) {
        Ok(paths)
    } else {
        Err(TlsError::Generate(
            "the generated server certificate does not verify against the generated CA".to_owned(),
        ))
    }
}

fn server_names(hosts: &[String]) -> Result<Vec<ServerName<'static>>, TlsError> {
    hosts
        .iter()
        .map(|host| {
            ServerName::try_from(host.as_str())
                .map(|n| n.to_owned())
                .map_err(|_| TlsError::InvalidHost { host: host.clone() })
        })
        .collect()
}

fn prepare_dir(dir: &Path) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(write_err)?;
    }
    Ok(())
}

/// Writes through a temporary file created 0600, so no reader ever sees a partial or
/// world-readable file.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)
}

fn generate_key() -> Result<KeyPair, TlsError> {
    KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive INTEGER, and never a leading zero octet that DER would strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The CA parameters. They are fixed (apart from dates and serial) so that a reloaded CA key
/// re-creates the same issuer name and key identifier for new server certificates.
fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "flyteauth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(random_serial());
    params
}

fn issue_server(
    paths: &SelfSignedPaths,
    hosts: &[String],
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
) -> Result<(), TlsError> {
    let mut params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // OpenSSL's strict mode (Python 3.13+ default) requires the authority key identifier.
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + SERVER_LIFETIME;
    params.serial_number = Some(random_serial());
    let key = generate_key()?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(
        &paths.server_key,
        Zeroizing::new(key.serialize_pem()).as_bytes(),
    )?;
    write_private(&paths.server_cert, cert.pem().as_bytes())
}

/// The stored CA as an issuer, if its files load and it stays valid beyond the renewal window.
fn load_ca(
    cert_path: &Path,
    key_path: &Path,
    now: OffsetDateTime,
) -> Option<(CertificateParams, KeyPair)> {
    let cert = read_certs(cert_path).ok()?.into_iter().next()?;
    let expires = not_after(&cert).ok()?;
    if expires <= now + RENEW_BEFORE {
        return None;
    }
    let key_pem = Zeroizing::new(fs::read_to_string(key_path).ok()?);
    let key = KeyPair::from_pem(&key_pem).ok()?;
    Some((ca_params(now), key))
}

/// Whether the stored server certificate verifies against the stored CA for every host, with
/// the renewal window already elapsed, and matches the stored key.
fn is_valid(paths: &SelfSignedPaths, names: &[ServerName<'static>], now: OffsetDateTime) -> bool {
    let check = || -> Option<bool> {
        let ca = read_certs(&paths.ca_cert).ok()?.into_iter().next()?;
        if not_after(&ca).ok()? <= now + RENEW_BEFORE {
            return Some(false);
        }
        let chain = read_certs(&paths.server_cert).ok()?;
        load_server_config(&paths.server_cert, &paths.server_key).ok()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).ok()?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .ok()?;
        let later = u64::try_from((now + RENEW_BEFORE).unix_timestamp()).ok()?;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(later));
        let (leaf, intermediates) = chain.split_first()?;
        Some(names.iter().all(|name| {
            verifier
                .verify_server_cert(leaf, intermediates, name, &[], at)
                .is_ok()
        }))
    };
    check().unwrap_or(false)
}

/// The `notAfter` of a DER certificate, which webpki does not check for trust anchors and does
/// not expose. Bytes after the certificate make it malformed: a `CertificateDer` holds exactly one.
fn not_after(cert: &[u8]) -> Result<OffsetDateTime, TlsError> {
    use x509_parser::nom::Err;
    let malformed = |reason: String| TlsError::MalformedCertificate { reason };
    match x509_parser::parse_x509_certificate(cert) {
        Ok(([], parsed)) => Ok(parsed.validity().not_after.to_datetime()),
        Ok((rest, _)) => Err(malformed(format!(
            "{} bytes follow the certificate",
            rest.len()
        ))),
        Err(Err::Error(e) | Err::Failure(e)) => Err(malformed(e.to_string())),
        Err(Err::Incomplete(_)) => Err(malformed("truncated".to_owned())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flyteauth-tls-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn verify(paths: &SelfSignedPaths, host: &str) -> Result<(), rustls::Error> {
        let ca = read_certs(&paths.ca_cert).unwrap().remove(0);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let chain = read_certs(&paths.server_cert).unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn self_signed_covers_default_hosts_and_is_private() {
        let dir = tempdir("defaults");
        let paths = write_self_signed(&dir, &[]).unwrap();
        for host in ["localhost", "127.0.0.1", "::1"] {
            verify(&paths, host).unwrap();
        }
        assert!(verify(&paths, "example.com").is_err());
        load_server_config(&paths.server_cert, &paths.server_key).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            for file in [&paths.ca_cert, &paths.server_cert, &paths.server_key] {
                assert_eq!(mode(file), 0o600, "{}", file.display());
            }
            assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        }
        let ca = read_certs(&paths.ca_cert).unwrap().remove(0);
        let expires = not_after(&ca).unwrap();
        assert!(expires > OffsetDateTime::now_utc() + Duration::days(3000));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn existing_files_are_reused_and_reissued_for_new_hosts() {
        let dir = tempdir("reuse");
        let first = write_self_signed(&dir, &[]).unwrap();
        let ca_before = fs::read(&first.ca_cert).unwrap();
        let leaf_before = fs::read(&first.server_cert).unwrap();

        let again = write_self_signed(&dir, &["localhost".to_owned()]).unwrap();
        assert_eq!(again, first);
        assert_eq!(fs::read(&again.server_cert).unwrap(), leaf_before);

        // A host the leaf does not cover: new leaf, same CA (clients keep trusting it).
        let hosts = vec!["flyte.local".to_owned(), "10.1.2.3".to_owned()];
        let widened = write_self_signed(&dir, &hosts).unwrap();
        assert_eq!(fs::read(&widened.ca_cert).unwrap(), ca_before);
        assert_ne!(fs::read(&widened.server_cert).unwrap(), leaf_before);
        verify(&widened, "flyte.local").unwrap();
        verify(&widened, "10.1.2.3").unwrap();

        // A server key that no longer matches: reissued.
        fs::write(
            &widened.server_key,
            fs::read(dir.join(CA_KEY_FILE)).unwrap(),
        )
        .unwrap();
        let repaired = write_self_signed(&dir, &hosts).unwrap();
        load_server_config(&repaired.server_cert, &repaired.server_key).unwrap();
        assert_eq!(fs::read(&repaired.ca_cert).unwrap(), ca_before);

        // A broken CA: everything regenerated.
        fs::write(&repaired.ca_cert, b"garbage").unwrap();
        let fresh = write_self_signed(&dir, &hosts).unwrap();
        assert_ne!(fs::read(&fresh.ca_cert).unwrap(), ca_before);
        verify(&fresh, "flyte.local").unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    fn self_signed_until(not_after: OffsetDateTime) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = not_after - Duration::days(1);
        params.not_after = not_after;
        params
            .self_signed(&generate_key().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn not_after_reads_utc_and_generalized_times() {
        // RFC 5280: UTCTime up to 2049 (two-digit years 50-99 are 19xx), GeneralizedTime from 2050.
        for stamp in [
            time::macros::datetime!(2049-12-31 23:59:59 UTC),
            time::macros::datetime!(2050-01-01 00:00:00 UTC),
            time::macros::datetime!(2124-02-29 12:00:00 UTC),
        ] {
            assert_eq!(not_after(&self_signed_until(stamp)).unwrap(), stamp);
        }
    }

    #[test]
    fn not_after_of_a_malformed_certificate_is_an_error_not_a_panic() {
        let good = self_signed_until(OffsetDateTime::now_utc() + Duration::days(10));
        let mut trailing = good.to_vec();
        trailing.push(0);
        let inputs: [&[u8]; 6] = [
            &[],
            b"garbage",
            &[0x30, 0x02, 0x30, 0x00],
            &[0x30, 0x85, 0, 0, 0, 0, 1],
            &good[..good.len() / 2],
            &trailing,
        ];
        for input in inputs {
            let err = not_after(input).unwrap_err();
            assert!(
                matches!(err, TlsError::MalformedCertificate { .. }),
                "{input:?}: {err}"
            );
            assert!(
                err.to_string().starts_with("malformed certificate: "),
                "{err}"
            );
        }
        assert!(not_after(&good).is_ok());
    }

    #[test]
    fn invalid_host_is_rejected() {
        let dir = tempdir("badhost");
        let err = write_self_signed(&dir, &["not a host".to_owned()]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidHost { .. }), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempdir("errors");
        fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = load_server_config(&missing, &missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }));
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.join("empty.pem");
        fs::write(&empty, b"no pem here\n").unwrap();
        let err = load_server_config(&empty, &empty).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

        let paths = write_self_signed(&dir.join("tls"), &[]).unwrap();
        let err = load_server_config(&paths.server_cert, &paths.server_cert).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains(SERVER_CERT_FILE));

        let err =
            load_server_config(&paths.server_cert, &dir.join("tls").join(CA_KEY_FILE)).unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");

        let config = load_server_config(&paths.server_cert, &paths.server_key).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

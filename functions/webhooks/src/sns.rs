//! SNS message signatures: the signing certificate (fetched from an SNS host only,
//! and kept between invocations) and the RSA check (SignatureVersion 1 is
//! SHA1withRSA, 2 is SHA256withRSA), on ring and rustls-webpki, which the SDK's
//! TLS stack already links.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald::domain::webhook::{SnsMessage, SnsMessageError, SnsSignatureVersion};
use herald::ports::{CertFetcher, PortError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A signing certificate is a couple of KB; anything much larger is not one.
const MAX_CERT_BYTES: usize = 16 * 1024;
/// Certificates kept in memory: SNS uses a handful per region at a time.
const MAX_CACHED: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Unsigned, an unknown version, or a certificate URL off the SNS hosts.
    #[error(transparent)]
    Message(#[from] SnsMessageError),
    /// The signature does not verify (forged or altered), or is not base64.
    #[error("the signature does not match the message")]
    BadSignature,
    /// What was fetched is not a certificate.
    #[error("the signing certificate is not a valid certificate")]
    BadCertificate,
    /// The certificate could not be fetched.
    #[error("the signing certificate could not be fetched: {0}")]
    Fetch(PortError),
}

/// Checks SNS signatures, caching certificates by URL (successful fetches only).
pub struct SnsVerifier<F> {
    fetcher: F,
    certs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl<F: CertFetcher> SnsVerifier<F> {
    pub fn new(fetcher: F) -> Self {
        Self { fetcher, certs: Mutex::new(HashMap::new()) }
    }

    /// The fetcher, for subscription confirmations (same hosts, same client).
    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    /// Verifies `message`; the certificate URL is checked against the SNS host
    /// pattern before anything is fetched.
    pub async fn verify(&self, message: &SnsMessage) -> Result<(), VerifyError> {
        let (version, url, signature) = message.signature_parts()?;
        let text = message.string_to_sign()?;
        let signature = STANDARD.decode(signature).map_err(|_| VerifyError::BadSignature)?;
        let der = self.certificate(url).await?;
        let der = CertificateDer::from(der.as_slice());
        let cert = webpki::EndEntityCert::try_from(&der).map_err(|_| VerifyError::BadCertificate)?;
        let algorithm: &dyn SignatureVerificationAlgorithm = match version {
            SnsSignatureVersion::V1 => &RSA_PKCS1_SHA1,
            SnsSignatureVersion::V2 => &RSA_PKCS1_SHA256,
        };
        cert.verify_signature(algorithm, text.as_bytes(), &signature).map_err(|_| VerifyError::BadSignature)
    }

    async fn certificate(&self, url: &str) -> Result<Arc<Vec<u8>>, VerifyError> {
        if let Some(der) = self.certs.lock().ok().and_then(|c| c.get(url).cloned()) {
            return Ok(der);
        }
        let pem = self.fetcher.get(url, MAX_CERT_BYTES).await.map_err(VerifyError::Fetch)?;
        let der = CertificateDer::from_pem_slice(&pem).map_err(|_| VerifyError::BadCertificate)?;
        webpki::EndEntityCert::try_from(&der).map_err(|_| VerifyError::BadCertificate)?;
        let der = Arc::new(der.to_vec());
        if let Ok(mut cache) = self.certs.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(url.to_owned(), der.clone());
        }
        Ok(der)
    }
}

/// RSA PKCS#1 v1.5 with the digest SNS names, on ring. webpki offers no SHA-1
/// algorithm (it is retired for certificate chains), but SNS still signs version 1
/// messages with it; only the message signature is checked with it here.
#[derive(Debug)]
struct RingRsa(&'static ring::signature::RsaParameters);

static RSA_PKCS1_SHA1: RingRsa = RingRsa(&ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY);
static RSA_PKCS1_SHA256: RingRsa = RingRsa(&ring::signature::RSA_PKCS1_2048_8192_SHA256);

impl SignatureVerificationAlgorithm for RingRsa {
    fn verify_signature(&self, public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(self.0, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    /// Not consulted for a message signature (only for certificate chains).
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_PKCS1_SHA256
    }
}

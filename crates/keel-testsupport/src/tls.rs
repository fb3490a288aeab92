//! Throw-away certificate authorities (feature `tls`): the token issuer's `x5c` chain of the
//! registry support and the serving certificate of the Kubernetes API server both come from a
//! [`TestCa`].

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A self-signed certificate authority with a fresh key, which signs certificates for fresh
/// keys.
#[derive(derive_more::Debug)]
pub struct TestCa {
    #[debug(skip)]
    cert: Certificate,
    #[debug(skip)]
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`TestCa`] and the key it certifies.
#[derive(Debug)]
pub struct Leaf {
    /// The certificate.
    pub cert: Certificate,
    /// Its key.
    pub key: KeyPair,
}

impl TestCa {
    /// A CA named `common_name` that may sign certificates and CRLs.
    pub fn generate(common_name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate named `common_name` for a fresh key, only for digital signatures (e.g. of
    /// JWTs).
    pub fn signing_leaf(&self, common_name: &str) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// A TLS server certificate named `common_name` for 127.0.0.1 and localhost, for a fresh
    /// key.
    pub fn serving_leaf(&self, common_name: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("serving params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // rustls refuses a CA certificate as an end-entity certificate.
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A certificate with `params` for a fresh key, signed by this CA.
    pub fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a certificate with the CA");
        Leaf { cert, key }
    }
}

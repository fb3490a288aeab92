//! The certificates and keys of a throw-away API server: a self-signed CA, a serving leaf for
//! 127.0.0.1 signed by it, and the service-account signing key.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM and DER material written to the server's directory.
pub(crate) struct ServerPki {
    /// The CA certificate clients trust, DER.
    pub(crate) ca_der: Vec<u8>,
    /// The CA certificate, PEM.
    pub(crate) ca_pem: String,
    /// The serving certificate (`CA:FALSE`, SAN 127.0.0.1 and localhost), PEM.
    pub(crate) serving_cert_pem: String,
    /// The serving key, PKCS#8 PEM.
    pub(crate) serving_key_pem: String,
    /// The service-account signing key, PKCS#8 PEM.
    pub(crate) sa_key_pem: String,
    /// Its public half, PEM.
    pub(crate) sa_public_pem: String,
}

impl ServerPki {
    /// Generates fresh keys and certificates.
    pub(crate) fn generate() -> ServerPki {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "keel-k8s test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().expect("generate the serving key");
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("serving params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        // rustls refuses a CA certificate as an end-entity certificate.
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params
            .signed_by(&serving_key, &issuer)
            .expect("sign the serving certificate");

        let sa_key = KeyPair::generate().expect("generate the service-account key");
        ServerPki {
            ca_der: ca_cert.der().to_vec(),
            ca_pem: ca_cert.pem(),
            serving_cert_pem: leaf.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            sa_public_pem: sa_key.public_key_pem(),
            sa_key_pem: sa_key.serialize_pem(),
        }
    }
}

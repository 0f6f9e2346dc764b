//! A certificate authority made by the test, and a server certificate for 127.0.0.1 signed by
//! it: libcurl is told to trust that CA (`CURLOPT_CAINFO`), and verifies the server as it
//! would any other (peer and host name).

use std::path::PathBuf;
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

/// The test's CA (its PEM file) and the TLS side of a server whose certificate it signed.
pub struct TestTls {
    /// The CA certificate, for `CURLOPT_CAINFO`.
    pub ca_file: PathBuf,
    /// The server's TLS configuration.
    pub acceptor: Arc<SslAcceptor>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("key")
}

fn name(common_name: &str) -> X509Name {
    let mut name = X509Name::builder().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .expect("CN");
    name.build()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut serial = BigNum::new().expect("bignum");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("random serial");
    serial.to_asn1_integer().expect("serial")
}

/// Makes a CA and a server certificate for `127.0.0.1` (and `localhost`), valid for a day;
/// writes the CA's PEM to a file named after `tag`.
pub fn make(tag: &str) -> TestTls {
    let ca_key = key();
    let ca_name = name("anyloop-curl test CA");
    let mut ca = X509::builder().expect("builder");
    ca.set_version(2).expect("v3");
    ca.set_serial_number(&serial()).expect("serial");
    ca.set_subject_name(&ca_name).expect("subject");
    ca.set_issuer_name(&ca_name).expect("issuer");
    ca.set_pubkey(&ca_key).expect("pubkey");
    ca.set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("not before");
    ca.set_not_after(&Asn1Time::days_from_now(1).expect("tomorrow"))
        .expect("not after");
    ca.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("bc");
    ca.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    let ski = SubjectKeyIdentifier::new()
        .build(&ca.x509v3_context(None, None))
        .expect("ski");
    ca.append_extension(ski).expect("ski");
    ca.sign(&ca_key, MessageDigest::sha256()).expect("sign CA");
    let ca = ca.build();

    let server_key = key();
    let mut cert = X509::builder().expect("builder");
    cert.set_version(2).expect("v3");
    cert.set_serial_number(&serial()).expect("serial");
    cert.set_subject_name(&name("127.0.0.1")).expect("subject");
    cert.set_issuer_name(ca.subject_name()).expect("issuer");
    cert.set_pubkey(&server_key).expect("pubkey");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(1).expect("tomorrow"))
        .expect("not after");
    cert.append_extension(BasicConstraints::new().build().expect("bc"))
        .expect("bc");
    cert.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_agreement()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
        .expect("eku");
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .dns("localhost")
        .build(&cert.x509v3_context(Some(&ca), None))
        .expect("san");
    cert.append_extension(san).expect("san");
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&cert.x509v3_context(Some(&ca), None))
        .expect("aki");
    cert.append_extension(aki).expect("aki");
    cert.sign(&ca_key, MessageDigest::sha256())
        .expect("sign server certificate");
    let cert = cert.build();

    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
    acceptor.set_private_key(&server_key).expect("key");
    acceptor.set_certificate(&cert).expect("certificate");
    acceptor.check_private_key().expect("key matches");
    let ca_file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("anyloop-curl-ca-{}-{tag}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.to_pem().expect("CA PEM")).expect("write the CA file");
    TestTls {
        ca_file,
        acceptor: Arc::new(acceptor.build()),
    }
}

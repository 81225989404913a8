//! A TLS front for the simulator, so that the gateway's `https://` and
//! `wss://` paths (certificate verification included) run end to end on
//! loopback, as they do against the real Feishu.
//!
//! At start a private CA and a server certificate for `127.0.0.1` and
//! `localhost` are made; each front accepts TLS on its own port and pumps
//! the bytes to one of the simulator's plain listeners. A client trusts the
//! simulator when given the CA (`SSL_CERT_FILE` for OpenSSL-based clients).

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// A CA and a server identity signed by it.
pub struct Certs {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server's certificate and PKCS#8 key, PEM (for a TLS redis-server).
    pub server_pem: String,
    pub server_key_pem: String,
    /// TLS 1.2 and 1.3, as Feishu's servers speak (native-tls's acceptor
    /// turns TLS 1.3 off).
    acceptor: SslAcceptor,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("pkey")
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    match issuer {
        None => {
            b.set_issuer_name(&name)?;
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
            b.sign(key, MessageDigest::sha256())?;
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name())?;
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&b.x509v3_context(Some(ca), None))?;
            b.append_extension(san)?;
            b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
            b.sign(ca_key, MessageDigest::sha256())?;
        }
    }
    Ok(b.build())
}

impl Certs {
    pub fn generate() -> Certs {
        let (ca_key, leaf_key) = (key(), key());
        let ca = cert("feishu-sim test CA", &ca_key, None).expect("CA certificate");
        let leaf = cert("127.0.0.1", &leaf_key, Some((&ca, &ca_key))).expect("server certificate");
        let pem = |c: &X509| String::from_utf8(c.to_pem().expect("PEM")).expect("ASCII");
        let key_pem = leaf_key.private_key_to_pem_pkcs8().expect("key PEM");
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("TLS acceptor");
        acceptor.set_private_key(&leaf_key).expect("server key");
        acceptor.set_certificate(&leaf).expect("server certificate");
        acceptor.check_private_key().expect("key matches certificate");
        let acceptor = acceptor.build();
        Certs {
            ca_pem: pem(&ca),
            server_pem: pem(&leaf),
            server_key_pem: String::from_utf8(key_pem).expect("ASCII"),
            acceptor,
        }
    }
}

/// One TLS port forwarding to a plain one. Stops when dropped.
pub struct Front {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Front {
    pub fn start(certs: &Certs, target: SocketAddr) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS front");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (acceptor, halt) = (certs.acceptor.clone(), stop.clone());
        thread::Builder::new()
            .name("sim-tls-accept".into())
            .spawn(move || {
                while !halt.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let (acceptor, halt) = (acceptor.clone(), halt.clone());
                            let _ = thread::Builder::new()
                                .name("sim-tls-conn".into())
                                .spawn(move || pump(&acceptor, tcp, target, &halt));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
            .expect("spawn");
        Front { addr, stop }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn idle(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Terminates TLS on `tcp` and moves bytes both ways until either side
/// closes. One thread per connection: a TLS stream cannot be split, so
/// both directions are polled with short read timeouts.
fn pump(acceptor: &SslAcceptor, tcp: TcpStream, target: SocketAddr, stop: &AtomicBool) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut tls) = acceptor.accept(tcp) else { return }; // a client that refused our certificate
    let Ok(mut plain) = TcpStream::connect(target) else { return };
    let poll = Some(Duration::from_millis(1));
    let _ = tls.get_ref().set_read_timeout(poll);
    let _ = plain.set_read_timeout(poll);
    let _ = plain.set_nodelay(true);
    let _ = tls.get_ref().set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if plain.write_all(&buf[..n]).is_err() => break,
            Ok(_) => continue, // more may be buffered in the TLS layer
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
        match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if tls.write_all(&buf[..n]).is_err() => break,
            Ok(_) => {}
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
    }
    let _ = tls.shutdown();
}

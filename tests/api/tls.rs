//! TLS on the listener: a client that trusts the test CA connects, plain HTTP to the
//! TLS port gets no answer, and a renewed certificate is served after SIGHUP.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use reqwest::StatusCode;

use crate::helpers::*;

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .https_only(true)
        .build()
        .unwrap()
}

async fn catalog_over_tls(
    client: &reqwest::Client,
    port: u16,
) -> Result<StatusCode, reqwest::Error> {
    client
        .get(format!("https://127.0.0.1:{port}/v2/catalog"))
        .basic_auth(USER, Some(PASSWORD))
        .header("X-Broker-API-Version", "2.13")
        .send()
        .await
        .map(|r| r.status())
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_plain_http_is_refused_and_a_new_certificate_is_picked_up()
 {
    let dir = std::env::temp_dir().join(format!("bindery-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let first = pki();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let app = TestApp::spawn_with(Spawn {
        env: vec![
            ("BINDERY_TLS_CERT_FILE".into(), cert.display().to_string()),
            ("BINDERY_TLS_KEY_FILE".into(), key.display().to_string()),
        ],
        ..Spawn::default()
    })
    .await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();

    assert_eq!(
        catalog_over_tls(&client_trusting(&first.ca_pem), port)
            .await
            .unwrap(),
        StatusCode::OK
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v2/catalog"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS port must not be served: {plain:?}"
    );

    // Renew with a certificate from another CA, then SIGHUP.
    let second = pki();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    let hup = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let renewed = client_trusting(&second.ca_pem);
    let mut served = false;
    for _ in 0..50 {
        if catalog_over_tls(&renewed, port)
            .await
            .is_ok_and(|s| s == StatusCode::OK)
        {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the renewed certificate is served without a restart"
    );
    assert!(
        catalog_over_tls(&client_trusting(&first.ca_pem), port)
            .await
            .is_err(),
        "the old certificate is gone"
    );
}

//! The shipped `catalog.yaml` as platforms see it, with every built-in backend
//! configured (the backends connect lazily, so no managed server is needed to serve it).

use reqwest::StatusCode;

use crate::helpers::*;

/// A broker on the shipped catalog with all four built-in kinds configured.
pub async fn spawn_shipped() -> TestApp {
    let env = [
        (
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306"),
        ("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:6379"),
        ("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672"),
    ];
    spawn_shipped_with(&env).await
}

#[tokio::test]
async fn the_shipped_catalog_advertises_fetching_instances_and_bindings_to_2_14_clients() {
    let mut app = spawn_shipped().await;
    app.version = "2.14".into();
    let r = app.catalog().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let services = r.body["services"].as_array().unwrap();
    assert_eq!(services.len(), 4, "all four services are served");
    for service in services {
        assert_eq!(
            service["instances_retrievable"], true,
            "{}: GET instance is implemented",
            service["name"]
        );
        assert_eq!(
            service["bindings_retrievable"], true,
            "{}: GET binding is implemented",
            service["name"]
        );
    }
    // 2.13 does not define the fields: a 2.13 client never sees them.
    app.version = "2.13".into();
    let r = app.catalog().await;
    for service in r.body["services"].as_array().unwrap() {
        assert!(service.get("instances_retrievable").is_none(), "{service}");
        assert!(service.get("bindings_retrievable").is_none(), "{service}");
    }
}

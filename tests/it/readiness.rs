//! `/readyz` follows the store and short-lived state: 503 with the reason while one
//! is unreachable, 200 again when it is back, without a restart.

use std::time::Duration;

use serde_json::Value;

use crate::support::{self, Proxy, TestServer, secret, wait_for_status};

async fn host_port(url: &str, default_port: u16) -> String {
    let u = url::Url::parse(url).expect("url");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port().unwrap_or(default_port)
    )
}

async fn outage_and_recovery(s: &TestServer, proxy: &Proxy, reason: &str) {
    assert_eq!(s.get("/readyz").await.status(), 200);
    proxy.cut();
    let r = s.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reason"].as_str().expect("reason").contains(reason),
        "{body}"
    );
    assert_eq!(
        s.get("/healthz").await.status(),
        200,
        "alive while not ready"
    );
    assert_eq!(
        s.get("/.well-known/jwks.json").await.status(),
        200,
        "documents still served"
    );
    proxy.restore();
    assert!(
        wait_for_status(&format!("{}/readyz", s.base), 200, Duration::from_secs(15)).await,
        "ready again after the outage"
    );
}

#[tokio::test]
async fn redis_outage_makes_the_node_unready_until_it_returns() {
    let Some(redis) = support::redis_url() else {
        return;
    };
    let proxy = Proxy::start(host_port(&redis, 6379).await).await;
    let url = format!("redis://{}/", proxy.addr);
    let s = TestServer::start_with(|c| c.redis_url = secret(&url)).await;
    outage_and_recovery(&s, &proxy, "short-lived state (redis)").await;
    s.stop().await;
}

#[tokio::test]
async fn postgres_outage_makes_the_node_unready_until_it_returns() {
    let Some(base) = support::backend("GATEHOUSE_TEST_DATABASE_URL") else {
        return;
    };
    let proxy = Proxy::start(host_port(&base, 5432).await).await;
    let mut via = url::Url::parse(&base).expect("url");
    via.set_host(Some("127.0.0.1")).expect("host");
    via.set_port(Some(proxy.addr.port())).expect("port");
    let url = support::fresh_schema(via.as_str()).await;
    let s = TestServer::start_with(|c| c.database_url = secret(&url)).await;
    assert_eq!(
        s.state.store.kind(),
        &gatehouse::config::DatabaseKind::Postgres
    );
    outage_and_recovery(&s, &proxy, "store").await;
    s.stop().await;
}
